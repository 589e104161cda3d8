//! The launcher's side: a stream of bytes from a hostile guest, read frame by frame as
//! the session's reader does. It may fail; it must not panic, hang or allocate beyond
//! the frame bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_sandbox_protocol::{FrameReader, GuestMsg, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let mut reader = FrameReader::new(data);
    // At most one frame per 4 bytes of input: the loop always ends.
    for _ in 0..=data.len() / 4 {
        match reader.read_msg::<GuestMsg>() {
            Ok(Some(GuestMsg::Stdout(b) | GuestMsg::Stderr(b))) => assert!(b.len() <= MAX_FRAME),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
