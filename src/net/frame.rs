//! Kafka framing: a 4-byte big-endian length, then that many bytes.
//!
//! The length is checked against the limit before a byte of the frame is
//! buffered; an incomplete frame is not an error, just "read more".

use bytes::{Buf, Bytes, BytesMut};

/// Bytes asked of the socket per read when no larger frame is pending.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
pub const LENGTH_PREFIX_BYTES: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    NegativeLength(i32),
    #[error("frame length {length} exceeds the limit of {limit} bytes (socket.request.max.bytes)")]
    TooLarge { length: usize, limit: usize },
}

/// Splits one complete frame (without its length prefix) off `buffer`, or
/// says how many more bytes are needed.
pub fn take_frame(buffer: &mut BytesMut, limit: usize) -> Result<Result<Bytes, usize>, FrameError> {
    if buffer.len() < LENGTH_PREFIX_BYTES {
        return Ok(Err(LENGTH_PREFIX_BYTES - buffer.len()));
    }
    let length = i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
    let length = usize::try_from(length).map_err(|_| FrameError::NegativeLength(length))?;
    if length > limit {
        return Err(FrameError::TooLarge { length, limit });
    }
    let total = LENGTH_PREFIX_BYTES + length;
    if buffer.len() < total {
        return Ok(Err(total - buffer.len()));
    }
    let mut frame = buffer.split_to(total);
    frame.advance(LENGTH_PREFIX_BYTES);
    Ok(Ok(frame.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_complete_frame_is_split_off_and_the_rest_kept() {
        let mut buffer = BytesMut::from(&[0, 0, 0, 2, 7, 8, 0, 0][..]);
        assert_eq!(
            take_frame(&mut buffer, 100).unwrap().unwrap(),
            Bytes::from_static(&[7, 8])
        );
        assert_eq!(&buffer[..], &[0, 0]);
        assert_eq!(take_frame(&mut buffer, 100).unwrap(), Err(2));
    }

    #[test]
    fn oversized_and_negative_lengths_are_refused_before_buffering() {
        let mut buffer = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            take_frame(&mut buffer, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buffer = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(
            take_frame(&mut buffer, 1024),
            Err(FrameError::NegativeLength(-2))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buffer = BytesMut::from(&bytes[..]);
            while let Ok(Ok(_)) = take_frame(&mut buffer, 16) {}
        }
    }
}
