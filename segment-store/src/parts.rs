//! Bytes held as consecutive buffers (the read cache's blocks), read as one run of bytes
//! without joining them: a slice within one buffer shares it, and only a slice across
//! buffers is copied.

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

    /// The bytes of `range`, which lies within `0..len()`.
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "range {range:?} is outside {} bytes",
            self.len()
        );
        if range.is_empty() {
            return Bytes::new();
        }
        let first = self.ends.partition_point(|&end| end <= range.start);
        let start_of = |index: usize| if index == 0 { 0 } else { self.ends[index - 1] };
        if range.end <= self.ends[first] {
            let offset = start_of(first);
            return self.parts[first].slice(range.start - offset..range.end - offset);
        }
        let mut joined = BytesMut::with_capacity(range.len());
        for (index, part) in self.parts.iter().enumerate().skip(first) {
            let offset = start_of(index);
            if offset >= range.end {
                break;
            }
            let from = range.start.saturating_sub(offset);
            let to = (range.end - offset).min(part.len());
            joined.extend_from_slice(&part[from..to]);
        }
        joined.freeze()
    }

    /// All the bytes as one buffer (copied only if there are several parts).
    pub fn join(mut self) -> Bytes {
        if self.parts.len() == 1 {
            return self.parts.pop().expect("one part");
        }
        self.slice(0..self.len())
    }
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
