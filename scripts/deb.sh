#!/usr/bin/env bash
# Builds the Debian package target/debian/virt-sandbox_VERSION_amd64.deb from the very
# layout scripts/install.sh makes (--prefix /usr into a staging directory), with the
# control file and copyright of packaging/debian/, and dpkg-deb: no cargo-deb to build
# on every machine, and one install layout for both. Prints the package's path.
# Usage: scripts/deb.sh [--no-build]    (--no-build: package what is built; see install.sh)
# The version is the workspace's (what `virt-sandbox --version` says); the maintainer is
# $DEBFULLNAME <$DEBEMAIL> when both are set.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022
say() { printf 'deb: %s\n' "$*" >&2; }

build_arg=()
case "${1:-}" in
    "") ;;
    --no-build) build_arg=(--no-build) ;;
    *) say "unknown argument: $1 (usage: scripts/deb.sh [--no-build])"; exit 2 ;;
esac

out=target/debian
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage"
scripts/install.sh --prefix /usr --destdir "$stage" "${build_arg[@]}"

version=$("$stage/usr/bin/virt-sandbox" --version | awk '{print $2}')
maintainer="virt-sandbox maintainers <maintainers@virt-sandbox.invalid>"
[ -n "${DEBFULLNAME:-}" ] && [ -n "${DEBEMAIL:-}" ] && maintainer="$DEBFULLNAME <$DEBEMAIL>"

# /usr/share/doc: the copyright every package carries, and a changelog naming the commit.
doc=$stage/usr/share/doc/virt-sandbox
install -D -m 0644 packaging/debian/copyright "$doc/copyright"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
when=$(git log -1 --format=%cD 2>/dev/null || date -R)
printf 'virt-sandbox (%s) unstable; urgency=medium\n\n  * Built from the source tree at %s.\n\n -- %s  %s\n' \
    "$version" "$commit" "$maintainer" "$when" | gzip -9 -n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@MAINTAINER@/$maintainer/" -e "s/@INSTALLED_SIZE@/$size/" \
    packaging/debian/control > "$stage/DEBIAN/control"

deb=$out/virt-sandbox_${version}_amd64.deb
# --root-owner-group: every file root's in the package without fakeroot (dpkg >= 1.19).
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
say "built $deb"
echo "$deb"
