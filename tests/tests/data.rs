//! Bytes through the sandbox arrive exactly: large stdin, larger stdout. Every case runs
//! over both of a VM's transports too.

use virt_sandbox_tests::*;

on_each_backend!(
    a_command_that_leaves_its_stdin_unread_keeps_its_exit_status,
    sixty_four_mib_of_stdin_arrive_byte_exact,
    two_hundred_fifty_six_mib_of_stdout_arrive_byte_exact,
    stdin_eof_reaches_the_command,
);
also_over_vsock!(
    a_command_that_leaves_its_stdin_unread_keeps_its_exit_status,
    sixty_four_mib_of_stdin_arrive_byte_exact,
    two_hundred_fifty_six_mib_of_stdout_arrive_byte_exact,
    stdin_eof_reaches_the_command,
);

fn sixty_four_mib_of_stdin_arrive_byte_exact(b: Backend) {
    let data = pseudo_random(64 << 20, 0x5eed_0001);
    let r = b.run_with_stdin(&["--", "sha256sum"], &data);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str().split_whitespace().next(), Some(sha256(&data).as_str()), "{r:?}");
}

fn two_hundred_fifty_six_mib_of_stdout_arrive_byte_exact(b: Backend) {
    let dir = Scratch::new(&format!("stdout-{b:?}"));
    let file = dir.path().join("data");
    let data = pseudo_random(256 << 20, 0x5eed_0002);
    std::fs::write(&file, &data).unwrap();
    let r = b.run(&["--", "cat", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.len(), data.len());
    assert_eq!(sha256(&r.stdout), sha256(&data));
    eprintln!("{b:?}: 256 MiB of stdout in {:?}", r.elapsed);
}

fn a_command_that_leaves_its_stdin_unread_keeps_its_exit_status(b: Backend) {
    // The sandbox is torn down with our stdin still in flight (`yes | virt-sandbox --
    // head -1`): that cut is ours, not a protocol error.
    let data = pseudo_random(8 << 20, 0x5eed_0003);
    let r = b.run_with_stdin(&["--", "sh", "-c", "head -c 6 >/dev/null; exit 3"], &data);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
}

fn stdin_eof_reaches_the_command(b: Backend) {
    // `cat` only exits when its stdin closes.
    let r = b.run_with_stdin(&["--", "sh", "-c", "cat; echo done"], b"abc");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "abcdone\n");
}

/// Slow consumers: every byte arrives whatever the reader's pace (issue 16). Each
/// reader is slower than the sandbox writes, so the whole path is back-pressured.
mod slow_readers {
    use std::time::Duration;
    use virt_sandbox_tests::*;

    on_each_backend!(
        late_readers_of_stdout_and_stderr_get_every_byte,
        a_paced_reader_of_sixty_four_mib_of_stdout_gets_every_byte,
        a_late_reader_of_sixteen_mib_of_stderr_gets_every_byte,
        what_the_command_wrote_before_the_timeout_arrives_whole,
    );
    also_over_vsock!(
        late_readers_of_stdout_and_stderr_get_every_byte,
        a_paced_reader_of_sixty_four_mib_of_stdout_gets_every_byte,
        a_late_reader_of_sixteen_mib_of_stderr_gets_every_byte,
        what_the_command_wrote_before_the_timeout_arrives_whole,
    );

    /// Runs `sh -c SCRIPT` with files of these sizes as `$1`, `$2`..., and checks the
    /// exit status and both streams against the files the script names.
    fn check(b: Backend, sizes: &[usize], script: &str, want: (&[usize], &[usize]), readers: (Reader, Reader)) {
        let dir = Scratch::new(&format!("slow-{b:?}-{}", sizes.iter().sum::<usize>()));
        let mut args: Vec<String> = ["--", "sh", "-c", script, "sh"].map(String::from).to_vec();
        let mut data = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let path = dir.path().join(format!("f{i}"));
            data.push(pseudo_random(size, 0x5eed_1600 + i as u64));
            std::fs::write(&path, &data[i]).unwrap();
            args.push(path.to_str().unwrap().into());
        }
        let concat = |idx: &[usize]| idx.iter().flat_map(|&i| data[i].iter().copied()).collect::<Vec<u8>>();
        let r = run_with_readers(b.command(&args), readers.0, readers.1);
        // stderr is data here: show only its end, where the launcher's word would be.
        let tail: String = r.stderr.chars().rev().take(200).collect::<Vec<_>>().into_iter().rev().collect();
        assert_eq!(r.code, 0, "{b:?}: exit {}; stderr ends {tail:?}", r.code);
        let (out, err) = (concat(want.0), concat(want.1));
        assert_eq!((r.stdout.len(), sha256(&r.stdout)), (out.len(), sha256(&out)), "{b:?}: stdout");
        assert_eq!((r.stderr_raw.len(), sha256(&r.stderr_raw)), (err.len(), sha256(&err)), "{b:?}: stderr");
        eprintln!("{b:?}: {sizes:?} with {readers:?} in {:?}", r.elapsed);
    }

    const LATE: Reader = Reader::Late(Duration::from_secs(3));

    fn late_readers_of_stdout_and_stderr_get_every_byte(b: Backend) {
        // The issue's pipeline: `virt-sandbox -- cat 2m.bin | (sleep 3; sha256sum)`.
        check(b, &[2_000_000, 64 << 10], r#"cat "$1"; cat "$2" >&2"#, (&[0], &[1]), (LATE, LATE));
    }

    fn a_paced_reader_of_sixty_four_mib_of_stdout_gets_every_byte(b: Backend) {
        // 64 KiB every 2 ms: ~30 MB/s, below what either backend writes.
        let paced = Reader::Paced { piece: 64 << 10, pause: Duration::from_millis(2) };
        let small = Reader::Paced { piece: 4 << 10, pause: Duration::from_millis(20) };
        check(b, &[64 << 10, 64 << 20], r#"cat "$1" >&2; cat "$2""#, (&[1], &[0]), (paced, small));
    }

    fn a_late_reader_of_sixteen_mib_of_stderr_gets_every_byte(b: Backend) {
        let small = Reader::Paced { piece: 4 << 10, pause: Duration::from_millis(20) };
        check(b, &[16 << 20, 64 << 10], r#"cat "$1" >&2; cat "$2""#, (&[1], &[0]), (small, LATE));
    }

    fn what_the_command_wrote_before_the_timeout_arrives_whole(b: Backend) {
        // The command writes, then outlives --timeout; its reader starts after the
        // deadline. A VM holds a MiB in transit (guest pipe, relay, virtqueue, QEMU,
        // socket); a container's command writes straight into our pipe, so there only
        // what the pipe holds is written before the deadline.
        let size = if b.is_vm() { 1 << 20 } else { 32 << 10 };
        let dir = Scratch::new(&format!("slow-timeout-{b:?}"));
        let path = dir.path().join("data");
        let data = pseudo_random(size, 0x5eed_1601);
        std::fs::write(&path, &data).unwrap();
        let script = format!("cat {}; echo wrote >&2; sleep 60", path.display());
        let cmd = b.command(["--timeout", "2s", "--", "sh", "-c", &script]);
        let r = run_with_readers(cmd, Reader::Late(Duration::from_secs(5)), Reader::Late(Duration::from_secs(5)));
        assert_eq!(r.code, 124, "{b:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("wrote\n") && r.stderr.contains("timed out"), "{b:?}: {}", r.stderr);
        assert_eq!((r.stdout.len(), sha256(&r.stdout)), (data.len(), sha256(&data)), "{b:?}");
        assert!(r.elapsed < Duration::from_secs(30), "{b:?}: {:?}", r.elapsed);
    }
}
