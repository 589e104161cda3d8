//! Bytes through the sandbox arrive exactly: large stdin, larger stdout.

use virt_sandbox_tests::*;

on_each_backend!(
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

fn stdin_eof_reaches_the_command(b: Backend) {
    // `cat` only exits when its stdin closes.
    let r = b.run_with_stdin(&["--", "sh", "-c", "cat; echo done"], b"abc");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout_str(), "abcdone\n");
}
