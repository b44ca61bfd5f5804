//! Checks a request body's lengths before kafka-protocol decodes it.
//!
//! kafka-protocol 0.18 sizes memory from lengths read off the wire before it
//! reads what they describe: arrays `Vec::with_capacity(len)`, compact
//! strings `vec![0; len]`. A 10-byte request claiming 2^31 elements would
//! reserve gigabytes. The walkers in `request_shapes` read the same fields in
//! the same order as the crate's decoders, allocate nothing, and refuse any
//! length that the bytes left in the frame cannot hold (every array element
//! takes at least one byte), so the decoder only ever sizes what is there.

use kafka_protocol::messages::ApiKey;

use super::request_shapes;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("{what} of length {length} in {remaining} remaining bytes")]
    LengthBeyondFrame {
        what: &'static str,
        length: u64,
        remaining: usize,
    },
    #[error("{what} length {length} is negative")]
    NegativeLength { what: &'static str, length: i64 },
    #[error("the body ends early")]
    Truncated,
    #[error("version {0} is not supported by this message type")]
    Version(i16),
    #[error("tag {tag} is not valid for version {version}")]
    TagVersion { tag: u32, version: i16 },
}

/// Walks the body of a `key` request at `version` and returns how many bytes
/// follow it (the decoder leaves them unread too); `Ok(0)` for APIs whose
/// bodies the broker does not decode.
pub fn check_body(key: ApiKey, version: i16, body: &[u8]) -> Result<usize, ShapeError> {
    let mut walker = Walker { bytes: body };
    match request_shapes::walk(key, &mut walker, version) {
        Some(walked) => walked.map(|()| walker.bytes.len()),
        None => Ok(0),
    }
}

/// A cursor over the bytes of a body that only skips and checks.
pub struct Walker<'a> {
    bytes: &'a [u8],
}

/// The tag handler of a struct without known tagged fields.
pub(super) fn no_known_tags(_: &mut Walker, _: i16, _: u32) -> Result<bool, ShapeError> {
    Ok(false)
}

impl Walker<'_> {
    pub(super) fn fixed(&mut self, count: usize) -> Result<(), ShapeError> {
        self.bytes = self.bytes.get(count..).ok_or(ShapeError::Truncated)?;
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ShapeError> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(ShapeError::Truncated)?;
        self.bytes = rest;
        Ok(*head)
    }

    /// kafka-protocol's `UnsignedVarInt`: at most five bytes, high bits dropped.
    fn unsigned_varint(&mut self) -> Result<u32, ShapeError> {
        let mut value = 0u32;
        for i in 0..5 {
            let [byte] = self.take::<1>()?;
            value |= u32::from(byte & 0x7f) << (i * 7);
            if byte < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// Skips `length` bytes, refusing a length beyond the frame.
    fn skip_length(&mut self, what: &'static str, length: u64) -> Result<(), ShapeError> {
        let remaining = self.bytes.len();
        match usize::try_from(length) {
            Ok(length) if length <= remaining => self.fixed(length),
            _ => Err(ShapeError::LengthBeyondFrame {
                what,
                length,
                remaining,
            }),
        }
    }

    /// A non-negative signed length, `None` for null (-1).
    fn signed_length(what: &'static str, length: i64) -> Result<Option<u64>, ShapeError> {
        match length {
            -1 => Ok(None),
            length if length >= 0 => Ok(Some(length as u64)),
            length => Err(ShapeError::NegativeLength { what, length }),
        }
    }

    pub(super) fn string(&mut self) -> Result<(), ShapeError> {
        let length = i16::from_be_bytes(self.take::<2>()?);
        match Self::signed_length("string", length.into())? {
            Some(length) => self.skip_length("string", length),
            None => Ok(()),
        }
    }

    pub(super) fn compact_string(&mut self) -> Result<(), ShapeError> {
        match self.unsigned_varint()? {
            0 => Ok(()),
            length => self.skip_length("compact string", u64::from(length) - 1),
        }
    }

    pub(super) fn bytes(&mut self) -> Result<(), ShapeError> {
        let length = i32::from_be_bytes(self.take::<4>()?);
        match Self::signed_length("bytes", length.into())? {
            Some(length) => self.skip_length("bytes", length),
            None => Ok(()),
        }
    }

    pub(super) fn compact_bytes(&mut self) -> Result<(), ShapeError> {
        match self.unsigned_varint()? {
            0 => Ok(()),
            length => self.skip_length("compact bytes", u64::from(length) - 1),
        }
    }

    /// Walks `count` elements after checking that the frame can hold them.
    fn elements(
        &mut self,
        what: &'static str,
        count: u64,
        mut element: impl FnMut(&mut Self) -> Result<(), ShapeError>,
    ) -> Result<(), ShapeError> {
        let remaining = self.bytes.len();
        if count > remaining as u64 {
            return Err(ShapeError::LengthBeyondFrame {
                what,
                length: count,
                remaining,
            });
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }

    pub(super) fn array(
        &mut self,
        element: impl FnMut(&mut Self) -> Result<(), ShapeError>,
    ) -> Result<(), ShapeError> {
        let length = i32::from_be_bytes(self.take::<4>()?);
        match Self::signed_length("array", length.into())? {
            Some(count) => self.elements("array", count, element),
            None => Ok(()),
        }
    }

    pub(super) fn compact_array(
        &mut self,
        element: impl FnMut(&mut Self) -> Result<(), ShapeError>,
    ) -> Result<(), ShapeError> {
        match self.unsigned_varint()? {
            0 => Ok(()),
            length => self.elements("compact array", u64::from(length) - 1, element),
        }
    }

    /// KIP-482 tagged fields: a count, then (tag, size, value) each. A known
    /// tag is read as its type (the crate ignores `size` for those); an
    /// unknown one is skipped by `size`.
    pub(super) fn tagged_fields(
        &mut self,
        version: i16,
        known: fn(&mut Self, i16, u32) -> Result<bool, ShapeError>,
    ) -> Result<(), ShapeError> {
        let count = self.unsigned_varint()?;
        // Each tagged field takes at least two bytes (tag and size).
        let remaining = self.bytes.len();
        if u64::from(count) > remaining as u64 {
            return Err(ShapeError::LengthBeyondFrame {
                what: "tagged fields",
                length: count.into(),
                remaining,
            });
        }
        for _ in 0..count {
            let tag = self.unsigned_varint()?;
            let size = self.unsigned_varint()?;
            if !known(self, version, tag)? {
                self.skip_length("tagged field", size.into())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_as_beyond_frame(key: ApiKey, version: i16, body: &[u8]) -> bool {
        matches!(
            check_body(key, version, body),
            Err(ShapeError::LengthBeyondFrame { .. })
        )
    }

    #[test]
    fn every_api_whose_body_is_decoded_has_a_walk() {
        for (key, versions) in crate::kafka::SUPPORTED_APIS {
            // ApiVersions' body is informational and never decoded.
            if *key == ApiKey::ApiVersions {
                continue;
            }
            for version in versions.clone() {
                let mut walker = Walker { bytes: &[] };
                assert!(
                    request_shapes::walk(*key, &mut walker, version).is_some(),
                    "{key:?} v{version} is decoded without a length walk"
                );
            }
        }
    }

    #[test]
    fn a_top_level_array_longer_than_the_frame_is_refused() {
        let mut body = i32::MAX.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 1, b'a']);
        assert!(refused_as_beyond_frame(ApiKey::Metadata, 1, &body));
    }

    #[test]
    fn a_nested_array_longer_than_the_frame_is_refused() {
        // Produce v3: no transactional id, acks, timeout, one topic "a" whose
        // partition array claims 2^31-1 elements.
        let mut body = Vec::new();
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&1000i32.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&[0, 1, b'a']);
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(refused_as_beyond_frame(ApiKey::Produce, 3, &body));
    }

    #[test]
    fn a_compact_string_longer_than_the_frame_is_refused() {
        // CreateTopics v5: one topic whose name claims 2^32-2 bytes; the
        // decoder would zero that much memory before reading it.
        let body = [2, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a'];
        assert!(refused_as_beyond_frame(ApiKey::CreateTopics, 5, &body));
    }

    #[test]
    fn a_body_that_fits_is_walked_to_its_end() {
        // Metadata v1 with the topic "a" and two trailing bytes.
        let mut body = 1i32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 1, b'a', 9, 9]);
        assert_eq!(check_body(ApiKey::Metadata, 1, &body), Ok(2));
    }
}
