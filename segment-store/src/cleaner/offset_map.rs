//! Kafka's SkimpyOffsetMap: key hash → offset of the key's latest record, in a fixed amount
//! of memory (`log.cleaner.dedupe.buffer.size`). A key is stored as its 16-byte MD5 hash,
//! as Kafka does, with linear probing in one open-addressed table; the table counts as full
//! at 90% of its slots (Kafka's `log.cleaner.io.buffer.load.factor`), so probes stay short.
//! Two keys with the same MD5 would share an entry; Kafka accepts that risk too.

use md5::{Digest, Md5};

const HASH_BYTES: usize = 16;
/// A slot: the hash and the offset.
pub const BYTES_PER_ENTRY: usize = HASH_BYTES + 8;

/// A slot's words: the hash's two halves, then the offset + 1 (0: a free slot, so a zeroed
/// table is an empty one). Hash and offset side by side: a lookup touches one place.
const WORDS: usize = 3;

#[derive(Debug)]
pub struct OffsetMap {
    slots: Vec<u64>,
    entries: usize,
    max_entries: usize,
    latest_offset: Option<i64>,
}

impl OffsetMap {
    /// A map in about `memory` bytes (at least two slots).
    pub fn new(memory: usize) -> Self {
        let slots = (memory / BYTES_PER_ENTRY).max(2);
        Self {
            // A zeroed allocation: pages are touched only as keys land in them.
            slots: vec![0; slots * WORDS],
            entries: 0,
            // 90%, and always one free slot.
            max_entries: (slots * 9 / 10).max(1),
            latest_offset: None,
        }
    }

    /// Records `offset` as the latest of `key`. False, changing nothing, when the key is new
    /// and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = hash(key);
        let at = self.slot_of(hash) * WORDS;
        if self.slots[at + 2] == 0 {
            if self.is_full() {
                return false;
            }
            self.slots[at..at + 2].copy_from_slice(&hash);
            self.entries += 1;
        }
        self.slots[at + 2] = offset as u64 + 1;
        self.latest_offset = Some(self.latest_offset.map_or(offset, |o| o.max(offset)));
        true
    }

    /// The offset of the latest record of `key` seen, if any.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let at = self.slot_of(hash(key)) * WORDS;
        match self.slots[at + 2] {
            0 => None,
            stored => Some((stored - 1) as i64),
        }
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// No new key fits.
    pub fn is_full(&self) -> bool {
        self.entries >= self.max_entries
    }

    /// The highest offset put in the map.
    pub fn latest_offset(&self) -> Option<i64> {
        self.latest_offset
    }

    /// The slot holding `hash`, or the free slot where it would go. The table is never
    /// entirely full (at most 90% of it, and one slot always stays free), so this ends.
    fn slot_of(&self, hash: [u64; 2]) -> usize {
        let slots = self.slots.len() / WORDS;
        let mut slot = (hash[0] % slots as u64) as usize;
        loop {
            let at = slot * WORDS;
            if self.slots[at + 2] == 0 || self.slots[at..at + 2] == hash {
                return slot;
            }
            slot = (slot + 1) % slots;
        }
    }
}

/// The key's MD5, as two words.
fn hash(key: &[u8]) -> [u64; 2] {
    let digest: [u8; HASH_BYTES] = Md5::digest(key).into();
    let word = |i: usize| u64::from_le_bytes(digest[i..i + 8].try_into().expect("8 bytes"));
    [word(0), word(8)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_offset_of_each_key_wins() {
        let mut map = OffsetMap::new(1024);
        assert!(map.is_empty());
        assert!(map.put(b"a", 0));
        assert!(map.put(b"b", 1));
        assert!(map.put(b"a", 5));
        assert!(map.put(b"", 7), "an empty key is a key");
        assert_eq!(map.get(b"a"), Some(5));
        assert_eq!(map.get(b"b"), Some(1));
        assert_eq!(map.get(b""), Some(7));
        assert_eq!(map.get(b"c"), None);
        assert_eq!(map.len(), 3);
        assert_eq!(map.latest_offset(), Some(7));
    }

    #[test]
    fn a_full_map_refuses_new_keys_but_updates_known_ones() {
        // 10 slots: full at 9 keys.
        let mut map = OffsetMap::new(10 * BYTES_PER_ENTRY);
        for i in 0..9u32 {
            assert!(map.put(&i.to_be_bytes(), i64::from(i)), "key {i}");
        }
        assert!(map.is_full());
        assert!(!map.put(b"new", 100));
        assert_eq!(map.get(b"new"), None);
        assert!(map.put(&3u32.to_be_bytes(), 50));
        assert_eq!(map.get(&3u32.to_be_bytes()), Some(50));
        for i in (0..9u32).filter(|&i| i != 3) {
            assert_eq!(map.get(&i.to_be_bytes()), Some(i64::from(i)));
        }
    }

    #[test]
    fn many_keys_in_a_large_map_are_all_found() {
        let mut map = OffsetMap::new(1 << 20);
        let keys = (1 << 20) / BYTES_PER_ENTRY * 9 / 10;
        for i in 0..keys {
            assert!(map.put(format!("key-{i}").as_bytes(), i as i64));
        }
        assert!(map.is_full());
        for i in (0..keys).step_by(97) {
            assert_eq!(map.get(format!("key-{i}").as_bytes()), Some(i as i64));
        }
        assert_eq!(map.get(b"absent"), None);
    }
}
