#!/usr/bin/env bash
# Soak: many runs, sequential and in parallel, each printing random bytes and exiting
# with a random status; every byte and every status must come back exact.
# Usage: scripts/soak.sh [RUNS=200] [PARALLEL=8] [BACKEND=vm|container|both] [READER=fast|slow]
# VIRT_SANDBOX_BIN picks the launcher (default: this tree's release build).
# READER=slow takes stdout and stderr the way slow consumers do: each starts 0-3 s late,
# then reads 4-64 KiB pieces with pauses of up to 5 ms (a lagging reader once lost a
# VM's output: issue 16). (CI runs a 20-run version as tests/tests/soak.rs.)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}; par=${2:-8}; which=${3:-both}; reader=${4:-fast}
case $reader in fast|slow) ;; *) echo "soak: READER must be fast or slow, not $reader" >&2; exit 2 ;; esac
vs=${VIRT_SANDBOX_BIN:-$PWD/target/x86_64-unknown-linux-gnu/release/virt-sandbox}
cloud=$(ls /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -1)
work=$(mktemp -d /var/cache/virt-sandbox-soak.XXXXXX)   # visible inside (not a tmpfs there)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
backends=(); [ "$which" != container ] && backends+=(vm); [ "$which" != vm ] && backends+=(container)

# slow_reader DELAY PIECE PAUSE: copies stdin to stdout, starting late, in small pieces.
slow_reader() {
    python3 -c '
import os, sys, time
delay, piece, pause = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
time.sleep(delay)
while True:
    b = os.read(0, piece)
    if not b:
        break
    while b:
        b = b[os.write(1, b):]
    time.sleep(pause)
' "$@"
}
random_reader() { slow_reader "$((RANDOM % 3001))e-3" "$(( (RANDOM % 16 + 1) * 4096 ))" "$((RANDOM % 6))e-3"; }

one() {  # one BACKEND INDEX -> prints "ok" or a failure line
    local b=$1 i=$2 size code file opts
    size=$(( (RANDOM * 32768 + RANDOM) % (4 << 20) ))
    code=$(( RANDOM % 256 ))
    file=$work/$b-$i.in
    head -c "$size" /dev/urandom > "$file"
    if [ "$b" = vm ]; then opts=(--kernel "$cloud"); else opts=(-c lxc:///); fi
    set +e
    local got
    if [ "$reader" = slow ]; then
        mkfifo "$file.errpipe"
        random_reader < "$file.errpipe" > "$file.err" &
        local errpid=$!
        "$vs" "${opts[@]}" -- sh -c "cat $file; cat $file >&2; exit $code" 2> "$file.errpipe" | random_reader > "$file.out"
        got=${PIPESTATUS[0]}
        wait $errpid
        rm -f "$file.errpipe"
    else
        "$vs" "${opts[@]}" -- sh -c "cat $file; cat $file >&2; exit $code" > "$file.out" 2> "$file.err"
        got=$?
    fi
    set -e
    if [ "$got" != "$code" ]; then echo "FAIL $b #$i: exit $got, expected $code: $(head -c 300 "$file.err")"; return; fi
    if ! cmp -s "$file" "$file.out" || ! cmp -s "$file" "$file.err"; then echo "FAIL $b #$i: output differs ($size bytes)"; return; fi
    echo ok
    rm -f "$file" "$file.out" "$file.err"
}
export -f one slow_reader random_reader; export vs cloud work reader

fails=0; total=0
for b in "${backends[@]}"; do
    start=$(date +%s)
    for i in $(seq "$runs"); do
        r=$(one "$b" "s$i"); total=$((total + 1)); [ "$r" = ok ] || { echo "$r"; fails=$((fails + 1)); }
    done
    echo "$b: $runs sequential runs in $(( $(date +%s) - start )) s"
    start=$(date +%s)
    out=$(seq "$runs" | xargs -P "$par" -I{} bash -c "one $b p{}")
    n_ok=$(grep -ac '^ok$' <<< "$out" || true)
    grep -av '^ok$' <<< "$out" || true
    total=$((total + runs)); fails=$((fails + runs - n_ok))
    echo "$b: $runs runs $par at a time in $(( $(date +%s) - start )) s"
done
echo "soak: $total runs ($reader readers), $fails failures"
[ "$fails" = 0 ]
