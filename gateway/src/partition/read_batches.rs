//! Committed batches as a read found them: what each batch's header says, and the bytes of
//! all of them, one batch after another, in the buffers that hold them (the read cache's
//! blocks, the in-memory tail's batches). A fetch sends them from those buffers, so a batch
//! that lies across two cache blocks, or several batches of one partition, are never copied
//! into one buffer on the way to the client.

use bytes::Bytes;
use proto_compat::batch::{read_batches, BatchHeader, RecordBatch};
use segment_store::parts::Parts;

#[derive(Debug, Default)]
pub struct ReadBatches {
    headers: Vec<BatchHeader>,
    bytes: Parts,
}

impl ReadBatches {
    /// `bytes` holds exactly the batches of `headers`, in order.
    pub fn new(headers: Vec<BatchHeader>, bytes: Parts) -> Self {
        debug_assert_eq!(
            headers.iter().map(|h| h.len).sum::<usize>(),
            bytes.len(),
            "the bytes are the batches'"
        );
        Self { headers, bytes }
    }

    /// Bytes of all the batches.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    pub fn headers(&self) -> &[BatchHeader] {
        &self.headers
    }

    pub fn last_offset(&self) -> Option<i64> {
        self.headers.last().map(|h| h.last_offset)
    }

    pub fn record_count(&self) -> u64 {
        self.headers
            .iter()
            .map(|h| h.record_count.max(0) as u64)
            .sum()
    }

    /// `other`'s batches after these.
    pub fn append(&mut self, other: ReadBatches) {
        self.headers.extend(other.headers);
        self.bytes.append(other.bytes);
    }

    /// Only the batches that start below `high_watermark` (the rest are not yet visible to
    /// consumers).
    pub fn below(self, high_watermark: i64) -> Self {
        let kept = self
            .headers
            .partition_point(|h| h.base_offset < high_watermark);
        if kept == self.headers.len() {
            return self;
        }
        let len = self.headers[..kept].iter().map(|h| h.len).sum();
        let mut headers = self.headers;
        headers.truncate(kept);
        Self::new(headers, self.bytes.slice_parts(0..len))
    }

    /// Each batch as one buffer: one that lies within a buffer shares it, one that lies
    /// across buffers is copied. For reading records, never for sending them.
    pub fn record_batches(&self) -> Vec<RecordBatch> {
        let mut start = 0;
        self.headers
            .iter()
            .map(|header| {
                let bytes = self.bytes.slice(start..start + header.len);
                start += header.len;
                let batch = read_batches(&bytes).next();
                batch.expect("a header's range holds its whole batch")
            })
            .collect()
    }

    /// The bytes, as the buffers that hold them.
    pub fn into_pieces(self) -> Vec<Bytes> {
        self.bytes.into_vec()
    }
}

impl From<Vec<RecordBatch>> for ReadBatches {
    fn from(batches: Vec<RecordBatch>) -> Self {
        let headers = batches
            .iter()
            .map(|b| BatchHeader::parse(b.as_bytes()).expect("a validated batch has a header"))
            .collect();
        let bytes = Parts::new(batches.into_iter().map(|b| b.as_bytes().clone()).collect());
        Self::new(headers, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::record_batch;

    /// Three batches of 2, 3 and 4 records at offsets 0, 2 and 5, the middle one lying
    /// across two buffers.
    fn three_batches() -> (Vec<RecordBatch>, ReadBatches) {
        let batches: Vec<RecordBatch> = [(0, 2), (2, 3), (5, 4)]
            .into_iter()
            .map(|(base, count)| {
                let mut bytes = record_batch(-1, -1, -1, count, 1_000).as_bytes().to_vec();
                proto_compat::batch::set_base_offset(&mut bytes, base);
                read_batches(&Bytes::from(bytes)).next().unwrap()
            })
            .collect();
        let all: Vec<u8> = batches.iter().flat_map(|b| b.as_bytes().to_vec()).collect();
        let cut = batches[0].len() + 20;
        let parts = Parts::new(vec![
            Bytes::copy_from_slice(&all[..cut]),
            Bytes::copy_from_slice(&all[cut..]),
        ]);
        let headers = batches
            .iter()
            .map(|b| BatchHeader::parse(b.as_bytes()).unwrap())
            .collect();
        (batches, ReadBatches::new(headers, parts))
    }

    #[test]
    fn batches_read_back_as_written_wherever_the_buffers_split_them() {
        let (written, read) = three_batches();
        assert_eq!(read.record_batches(), written);
        assert_eq!(
            read.len(),
            written.iter().map(RecordBatch::len).sum::<usize>()
        );
        assert_eq!((read.last_offset(), read.record_count()), (Some(8), 9));
        let pieces = read.into_pieces();
        assert_eq!(pieces.len(), 2, "sent from the two buffers as they are");
        let sent: Vec<u8> = pieces.concat();
        let expected: Vec<u8> = written.iter().flat_map(|b| b.as_bytes().to_vec()).collect();
        assert_eq!(sent, expected);
    }

    #[test]
    fn below_the_high_watermark_keeps_only_the_batches_that_start_under_it() {
        for (high_watermark, kept) in [(0, 0), (1, 1), (2, 1), (3, 2), (5, 2), (6, 3), (99, 3)] {
            let (written, read) = three_batches();
            let below = read.below(high_watermark);
            assert_eq!(below.record_batches(), written[..kept], "{high_watermark}");
            let len: usize = written[..kept].iter().map(RecordBatch::len).sum();
            assert_eq!(below.len(), len, "{high_watermark}");
        }
    }

    #[test]
    fn appended_reads_follow_and_tail_batches_keep_their_buffers() {
        let (written, mut read) = three_batches();
        let tail: Vec<RecordBatch> = written[..2].to_vec();
        read.append(ReadBatches::from(tail.clone()));
        assert_eq!(read.headers().len(), 5);
        assert_eq!(read.record_batches()[3..], tail[..]);
        let pieces = read.into_pieces();
        assert_eq!(pieces[2].as_ptr(), tail[0].as_bytes().as_ptr());
        assert_eq!(pieces[3].as_ptr(), tail[1].as_bytes().as_ptr());
    }
}
