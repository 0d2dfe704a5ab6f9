//! The bytes of one PUT as a list of parts written back to back, so that an object made
//! of buffers already in memory (a flush object's batches, a segment's chunks) is stored
//! without first being copied into one contiguous buffer.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    parts: Vec<Bytes>,
    len: usize,
}

impl Payload {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, part: Bytes) {
        self.len += part.len();
        if !part.is_empty() {
            self.parts.push(part);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The bytes in one buffer: free for a single part, a copy otherwise (for backends
    /// that need one buffer).
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [part] => part.clone(),
            parts => {
                let mut joined = BytesMut::with_capacity(self.len);
                for part in parts {
                    joined.extend_from_slice(part);
                }
                joined.freeze()
            }
        }
    }

    /// The bytes in `range` (clipped to the payload), sharing the parts' buffers.
    pub fn slice(&self, range: Range<usize>) -> Payload {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        let mut sliced = Payload::new();
        let mut part_start = 0;
        for part in &self.parts {
            let part_end = part_start + part.len();
            if part_end > start && part_start < end {
                let from = start.saturating_sub(part_start);
                let to = end.min(part_end) - part_start;
                sliced.push(part.slice(from..to));
            }
            part_start = part_end;
        }
        sliced
    }
}

impl From<Bytes> for Payload {
    fn from(part: Bytes) -> Self {
        let mut payload = Payload::new();
        payload.push(part);
        payload
    }
}

impl FromIterator<Bytes> for Payload {
    fn from_iter<I: IntoIterator<Item = Bytes>>(parts: I) -> Self {
        let mut payload = Payload::new();
        for part in parts {
            payload.push(part);
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(parts: &[&'static [u8]]) -> Payload {
        parts.iter().map(|p| Bytes::from_static(p)).collect()
    }

    #[test]
    fn parts_join_in_order_and_empty_parts_are_dropped() {
        let p = payload(&[b"ab", b"", b"cde"]);
        assert_eq!(p.len(), 5);
        assert_eq!(p.parts().len(), 2);
        assert_eq!(p.to_bytes(), "abcde");
        assert_eq!(Payload::new().to_bytes(), "");
    }

    #[test]
    fn slices_cross_part_boundaries_and_clip_to_the_end() {
        let p = payload(&[b"ab", b"cde", b"f"]);
        assert_eq!(p.slice(0..6).to_bytes(), "abcdef");
        assert_eq!(p.slice(1..4).to_bytes(), "bcd");
        assert_eq!(p.slice(2..5).parts().len(), 1);
        assert_eq!(p.slice(4..100).to_bytes(), "ef");
        assert_eq!(p.slice(3..3).len(), 0);
        assert_eq!(p.slice(50..60).len(), 0);
        assert_eq!(p.slice(0..3).len(), 3);
    }
}
