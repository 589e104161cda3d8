//! Length-prefixed framing: `[len: u32 LE][postcard payload of len bytes]`.
//!
//! The peer is untrusted: the length is checked against [`MAX_FRAME`] before the payload
//! buffer is allocated, and a short read is an error, never a hang on garbage.

use serde::{de::DeserializeOwned, Serialize};
use std::io::{self, Read, Write};

/// Upper bound on one frame's payload. A run spec with a large environment fits easily;
/// anything bigger is a protocol violation.
pub const MAX_FRAME: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("channel closed in the middle of a frame")]
    Truncated,
    #[error("channel i/o: {0}")]
    Io(#[from] io::Error),
}

/// Encodes one message as a complete frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = postcard::to_extend(msg, vec![0u8; 4])?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// The longest header [`output_frame_header`] makes: the length prefix, the variant and a
/// five-byte varint.
pub const OUTPUT_HEADER_MAX: usize = 4 + 1 + 5;

/// The frame header for a `GuestMsg::Stdout`/`Stderr` (`stderr` false/true) carrying
/// `len` bytes: exactly what [`encode`] puts before those bytes, so that a sender can
/// write header and data from its own buffer without copying them into a message.
/// Returns the header buffer and how many of its bytes are the header.
pub fn output_frame_header(stderr: bool, len: usize) -> ([u8; OUTPUT_HEADER_MAX], usize) {
    // postcard: the variant index and the byte string's length as varints, then bytes.
    let variant: u8 = if stderr { 2 } else { 1 };
    let mut h = [0u8; OUTPUT_HEADER_MAX];
    let mut n = 4;
    h[n] = variant;
    n += 1;
    let mut v = len as u32;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            h[n] = byte;
            n += 1;
            break;
        }
        h[n] = byte | 0x80;
        n += 1;
    }
    let frame_len = (n - 4 + len) as u32;
    h[..4].copy_from_slice(&frame_len.to_le_bytes());
    (h, n)
}

/// Writes one message as a frame in a single `write_all`.
pub fn write_frame<T: Serialize, W: Write>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    Ok(())
}

/// Decodes one complete frame held in `bytes`. Returns the message and the bytes used, or
/// `None` when `bytes` does not yet hold a whole frame.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<(T, usize)>, FrameError> {
    if bytes.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if bytes.len() < 4 + len {
        return Ok(None);
    }
    let msg = postcard::from_bytes(&bytes[4..4 + len])?;
    Ok(Some((msg, 4 + len)))
}

/// Reads frames from a blocking reader.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader { inner, buf: Vec::new() }
    }

    /// The next message, or `Ok(None)` on a clean end of stream between frames.
    pub fn read_msg<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let mut len = [0u8; 4];
        match read_full(&mut self.inner, &mut len)? {
            0 => return Ok(None),
            4 => {}
            _ => return Err(FrameError::Truncated),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        self.buf.resize(len, 0);
        if read_full(&mut self.inner, &mut self.buf)? != len {
            return Err(FrameError::Truncated);
        }
        Ok(Some(postcard::from_bytes(&self.buf)?))
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

/// Fills `buf` unless the stream ends first; returns how much was read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExitStatus, GuestMsg, HostMsg};
    use serde_bytes::ByteBuf;

    #[test]
    fn round_trip_through_reader() {
        let msgs = vec![
            GuestMsg::Hello { version: 1 },
            GuestMsg::Stdout(ByteBuf::from(vec![7u8; 100_000])),
            GuestMsg::Exit(ExitStatus::Signal(9)),
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            write_frame(&mut wire, m).unwrap();
        }
        let mut r = FrameReader::new(&wire[..]);
        for m in &msgs {
            assert_eq!(&r.read_msg::<GuestMsg>().unwrap().unwrap(), m);
        }
        assert!(r.read_msg::<GuestMsg>().unwrap().is_none());
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        let mut wire = (u32::MAX).to_le_bytes().to_vec();
        wire.extend_from_slice(&[0; 16]);
        let err = FrameReader::new(&wire[..]).read_msg::<GuestMsg>().unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(n) if n == u32::MAX as usize));
        assert!(matches!(decode::<GuestMsg>(&wire), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn frame_at_the_limit_is_accepted_and_one_past_is_not() {
        let exact = MAX_FRAME as u32;
        let mut wire = exact.to_le_bytes().to_vec();
        wire.resize(4 + MAX_FRAME, 0);
        // Length passes; the payload (zeros) decodes as the first variant's garbage or
        // fails to decode, but never as TooLarge.
        assert!(!matches!(decode::<HostMsg>(&wire), Err(FrameError::TooLarge(_))));
        let past = (exact + 1).to_le_bytes();
        assert!(matches!(decode::<HostMsg>(&past), Ok(None) | Err(FrameError::TooLarge(_))));
        let mut wire = past.to_vec();
        wire.resize(8, 0);
        assert!(matches!(decode::<HostMsg>(&wire), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn encoding_an_oversized_message_fails() {
        let big = HostMsg::Stdin(ByteBuf::from(vec![0u8; MAX_FRAME + 1]));
        assert!(matches!(encode(&big), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn truncated_frame_is_an_error_not_a_hang() {
        let mut wire = encode(&GuestMsg::Hello { version: 1 }).unwrap();
        wire.pop();
        assert!(matches!(FrameReader::new(&wire[..]).read_msg::<GuestMsg>(), Err(FrameError::Truncated)));
        assert!(decode::<GuestMsg>(&wire).unwrap().is_none());
    }

    #[test]
    fn the_output_header_matches_postcard() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 131_072] {
            for stderr in [false, true] {
                let data = vec![9u8; len];
                let msg = if stderr {
                    GuestMsg::Stderr(ByteBuf::from(data.clone()))
                } else {
                    GuestMsg::Stdout(ByteBuf::from(data.clone()))
                };
                let whole = encode(&msg).unwrap();
                let (h, hl) = output_frame_header(stderr, len);
                assert_eq!(&whole[..hl], &h[..hl], "len {len}");
                assert_eq!(&whole[hl..], &data[..]);
            }
        }
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let wire = [3, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(matches!(decode::<GuestMsg>(&wire), Err(FrameError::Decode(_))));
    }
}
