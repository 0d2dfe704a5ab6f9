//! Bytes held as consecutive buffers (the read cache's blocks), read as one run of bytes
//! without joining them: a slice within one buffer shares it, and only a slice across
//! buffers is copied, unless it is taken as the buffers that hold it.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, Default)]
pub struct Parts {
    parts: Vec<Bytes>,
    /// Where each part ends, counted from the start of the first.
    ends: Vec<usize>,
}

impl Parts {
    pub fn new(parts: Vec<Bytes>) -> Self {
        let ends = parts
            .iter()
            .scan(0, |end, part| {
                *end += part.len();
                Some(*end)
            })
            .collect();
        Self { parts, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of `range`, which lies within `0..len()`, as one buffer: shared when the
    /// range lies within one part, copied when it lies across several.
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        joined(self.pieces(range.clone()), range.len())
    }

    /// The bytes of `range`, which lies within `0..len()`, as the parts that hold them,
    /// each shared, none copied.
    pub fn slice_parts(&self, range: Range<usize>) -> Parts {
        Parts::new(self.pieces(range).collect())
    }

    /// The non-empty slices of the parts that `range` covers, in order. Allocates nothing,
    /// so a slice within one part (a batch header, on every read) costs no more than that.
    fn pieces(&self, range: Range<usize>) -> impl Iterator<Item = Bytes> + '_ {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "range {range:?} is outside {} bytes",
            self.len()
        );
        let first = self.ends.partition_point(|&end| end <= range.start);
        self.parts[first..]
            .iter()
            .zip(&self.ends[first..])
            .map(|(part, end)| (part, end - part.len()))
            .take_while(move |(_, offset)| *offset < range.end)
            .filter_map(move |(part, offset)| {
                let from = range.start.saturating_sub(offset);
                let to = (range.end - offset).min(part.len());
                (from < to).then(|| part.slice(from..to))
            })
    }

    /// `other`'s bytes after these.
    pub fn append(&mut self, other: Parts) {
        let len = self.len();
        self.ends.extend(other.ends.iter().map(|end| len + end));
        self.parts.extend(other.parts);
    }

    /// All the bytes as one buffer (copied only if there are several non-empty parts).
    pub fn join(self) -> Bytes {
        let len = self.len();
        joined(self.parts.into_iter().filter(|part| !part.is_empty()), len)
    }

    /// The parts, in order.
    pub fn into_vec(self) -> Vec<Bytes> {
        self.parts
    }
}

/// `pieces`, `len` bytes in all, as one buffer: the piece itself when there is one.
fn joined(mut pieces: impl Iterator<Item = Bytes>, len: usize) -> Bytes {
    let Some(first) = pieces.next() else {
        return Bytes::new();
    };
    let Some(second) = pieces.next() else {
        return first;
    };
    let mut joined = BytesMut::with_capacity(len);
    for piece in [first, second].into_iter().chain(pieces) {
        joined.extend_from_slice(&piece);
    }
    joined.freeze()
}

impl From<Bytes> for Parts {
    fn from(bytes: Bytes) -> Self {
        Self::new(vec![bytes])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Parts {
        Parts::new(vec![
            Bytes::from_static(b"abcd"),
            Bytes::new(),
            Bytes::from_static(b"efg"),
            Bytes::from_static(b"hijkl"),
        ])
    }

    #[test]
    fn slices_read_across_parts_as_one_run_of_bytes() {
        let parts = parts();
        let whole = b"abcdefghijkl";
        assert_eq!(parts.len(), whole.len());
        for start in 0..=whole.len() {
            for end in start..=whole.len() {
                assert_eq!(parts.slice(start..end), whole[start..end], "{start}..{end}");
            }
        }
        assert_eq!(parts.join(), &whole[..]);
    }

    #[test]
    fn a_slice_within_one_part_shares_its_buffer() {
        let parts = parts();
        let inside = parts.slice(4..6);
        assert_eq!(inside, "ef");
        assert_eq!(inside.as_ptr(), parts.parts[2].as_ptr());
    }

    #[test]
    fn parts_of_a_slice_share_the_buffers_and_hold_its_bytes() {
        let parts = parts();
        let whole = b"abcdefghijkl";
        let within = |piece: &Bytes| {
            parts.parts.iter().any(|part| {
                let start = part.as_ptr() as usize;
                let at = piece.as_ptr() as usize;
                at >= start && at + piece.len() <= start + part.len()
            })
        };
        for start in 0..=whole.len() {
            for end in start..=whole.len() {
                let sliced = parts.slice_parts(start..end);
                assert_eq!(sliced.len(), end - start, "{start}..{end}");
                let pieces = sliced.into_vec();
                assert!(pieces.iter().all(|p| !p.is_empty() && within(p)));
                assert_eq!(pieces.concat(), whole[start..end], "{start}..{end}");
            }
        }
    }

    #[test]
    fn appended_parts_read_after_the_others() {
        let mut parts = parts();
        parts.append(Parts::new(vec![Bytes::from_static(b"mn"), Bytes::new()]));
        parts.append(Parts::from(Bytes::from_static(b"o")));
        assert_eq!(parts.len(), 15);
        assert_eq!(parts.slice(10..15), "klmno");
        assert_eq!(parts.join(), "abcdefghijklmno");
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn a_slice_past_the_end_is_refused() {
        parts().slice(10..13);
    }

    #[test]
    fn no_parts_are_empty() {
        let parts = Parts::new(Vec::new());
        assert!(parts.is_empty());
        assert_eq!(parts.slice(0..0), Bytes::new());
        assert_eq!(parts.join(), Bytes::new());
    }
}
