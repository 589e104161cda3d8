//! Init's side: bytes arriving in arbitrary pieces, decoded incrementally from a buffer
//! as guest-init's channel does (`decode` on what has arrived so far).
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_sandbox_protocol::{decode, HostMsg};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses how the stream is cut into reads.
    let Some((&step, rest)) = data.split_first() else { return };
    let step = (step as usize % 64) + 1;
    let mut buf: Vec<u8> = Vec::new();
    for piece in rest.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decode::<HostMsg>(&buf) {
                Ok(Some((_msg, used))) => {
                    assert!(used > 0 && used <= buf.len());
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
