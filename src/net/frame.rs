//! Kafka framing: a 4-byte big-endian length, then that many bytes.
//!
//! A [`FrameReader`] holds only the 4-byte length while a connection is
//! idle. Once a length has arrived and been checked against the limit, it
//! takes a buffer of exactly that frame's size; the finished frame leaves
//! with its buffer, so nothing stays allocated between requests. An
//! incomplete frame is not an error, just "read more".

use bytes::{Bytes, BytesMut};

pub const LENGTH_PREFIX_BYTES: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    NegativeLength(i32),
    #[error("frame length {length} exceeds the limit of {limit} bytes (socket.request.max.bytes)")]
    TooLarge { length: usize, limit: usize },
}

/// Checks a frame's length prefix against `limit`.
pub fn frame_length(prefix: [u8; LENGTH_PREFIX_BYTES], limit: usize) -> Result<usize, FrameError> {
    let length = i32::from_be_bytes(prefix);
    let length = usize::try_from(length).map_err(|_| FrameError::NegativeLength(length))?;
    if length > limit {
        return Err(FrameError::TooLarge { length, limit });
    }
    Ok(length)
}

/// Reassembles frames from whatever pieces the socket delivers: the caller
/// reads into [`FrameReader::unfilled`] and reports how much arrived with
/// [`FrameReader::filled`].
#[derive(Debug)]
pub struct FrameReader {
    limit: usize,
    prefix: [u8; LENGTH_PREFIX_BYTES],
    prefix_filled: usize,
    /// The frame being read, sized exactly to its length, and how much of it arrived.
    body: Option<(BytesMut, usize)>,
}

impl FrameReader {
    /// A reader of frames of at most `limit` bytes (without the prefix).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            prefix: [0; LENGTH_PREFIX_BYTES],
            prefix_filled: 0,
            body: None,
        }
    }

    /// Frames whose length arrives from now on may be at most `limit` bytes.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Where the next bytes from the socket go; never empty, and never
    /// beyond the current frame, so no byte of the next request is read early.
    pub fn unfilled(&mut self) -> &mut [u8] {
        match &mut self.body {
            Some((body, arrived)) => &mut body[*arrived..],
            None => &mut self.prefix[self.prefix_filled..],
        }
    }

    /// Records that `n` bytes were written into [`Self::unfilled`]; returns
    /// the frame (without its prefix) when it is complete.
    pub fn filled(&mut self, n: usize) -> Result<Option<Bytes>, FrameError> {
        debug_assert!(n <= self.unfilled().len(), "more bytes than were asked for");
        if let Some((body, arrived)) = &mut self.body {
            *arrived += n;
            if *arrived < body.len() {
                return Ok(None);
            }
            let (body, _) = self.body.take().expect("the body was just matched");
            return Ok(Some(body.freeze()));
        }
        self.prefix_filled += n;
        if self.prefix_filled < LENGTH_PREFIX_BYTES {
            return Ok(None);
        }
        self.prefix_filled = 0;
        let length = frame_length(self.prefix, self.limit)?;
        if length == 0 {
            return Ok(Some(Bytes::new()));
        }
        self.body = Some((BytesMut::zeroed(length), 0));
        Ok(None)
    }

    /// Bytes of a started frame that have arrived (0 between frames).
    pub fn pending(&self) -> usize {
        match &self.body {
            Some((_, arrived)) => LENGTH_PREFIX_BYTES + arrived,
            None => self.prefix_filled,
        }
    }

    /// Bytes still missing from the frame being read.
    pub fn wanted(&self) -> usize {
        match &self.body {
            Some((body, arrived)) => body.len() - arrived,
            None => LENGTH_PREFIX_BYTES - self.prefix_filled,
        }
    }

    /// Bytes this reader holds allocated (0 while idle).
    pub fn buffered_capacity(&self) -> usize {
        self.body.as_ref().map_or(0, |(body, _)| body.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `stream` in pieces of at most `piece` bytes; returns the frames.
    fn feed(
        reader: &mut FrameReader,
        mut stream: &[u8],
        piece: usize,
    ) -> Result<Vec<Bytes>, FrameError> {
        let mut frames = Vec::new();
        while !stream.is_empty() {
            let into = reader.unfilled();
            let n = into.len().min(piece).min(stream.len());
            into[..n].copy_from_slice(&stream[..n]);
            stream = &stream[n..];
            if let Some(frame) = reader.filled(n)? {
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    #[test]
    fn frames_are_reassembled_and_the_rest_waits() {
        let mut reader = FrameReader::new(100);
        let frames = feed(&mut reader, &[0, 0, 0, 2, 7, 8, 0, 0, 0, 0], 3).unwrap();
        assert_eq!(frames, vec![Bytes::from_static(&[7, 8]), Bytes::new()]);
        let frames = feed(&mut reader, &[0, 0, 0, 3, 1], 100).unwrap();
        assert!(frames.is_empty());
        assert_eq!((reader.pending(), reader.wanted()), (5, 2));
    }

    #[test]
    fn an_idle_reader_holds_no_buffer() {
        let mut reader = FrameReader::new(1 << 20);
        assert_eq!(reader.buffered_capacity(), 0);
        feed(&mut reader, &[0, 0, 0x10, 0, 1, 2], 100).unwrap();
        assert_eq!(
            reader.buffered_capacity(),
            0x1000,
            "exactly the frame's size"
        );
        let frame = [0u8; 0x1000 - 2];
        assert_eq!(feed(&mut reader, &frame, 100).unwrap().len(), 1);
        assert_eq!(reader.buffered_capacity(), 0);
    }

    #[test]
    fn oversized_and_negative_lengths_are_refused_before_buffering() {
        let mut reader = FrameReader::new(1024);
        assert!(matches!(
            feed(&mut reader, &[0x7f, 0xff, 0xff, 0xff], 4),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(reader.buffered_capacity(), 0);
        let mut reader = FrameReader::new(1024);
        assert_eq!(
            feed(&mut reader, &[0xff, 0xff, 0xff, 0xfe], 1),
            Err(FrameError::NegativeLength(-2))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            piece in 1usize..8,
        ) {
            let mut reader = FrameReader::new(16);
            let _ = feed(&mut reader, &bytes, piece);
        }
    }
}
