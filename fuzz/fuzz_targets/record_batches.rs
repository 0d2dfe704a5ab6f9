//! Any Produce `records` blob must validate or be refused, and whatever read_batches
//! yields must be safe to read, without panicking; so must the records inside valid batches.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use proto_compat::batch::{read_batches, validate_batches, RecordBatch};
use proto_compat::records::validate_records;

/// Small, so a bomb in the input costs each run little.
const MAX_INFLATED_BYTES: u64 = 1 << 20;

fn read_every_field(batch: &RecordBatch) {
    let _ = (
        batch.base_offset(),
        batch.batch_length(),
        batch.partition_leader_epoch(),
        batch.magic(),
        batch.crc(),
        batch.compression(),
        batch.timestamp_type(),
        batch.is_transactional(),
        batch.is_control(),
        batch.last_offset(),
        batch.base_timestamp(),
        batch.max_timestamp(),
        batch.producer_id(),
        batch.producer_epoch(),
        batch.last_sequence(),
        batch.record_count(),
    );
}

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    let read: Vec<RecordBatch> = read_batches(&bytes).collect();
    read.iter().for_each(read_every_field);
    assert!(read.iter().map(RecordBatch::len).sum::<usize>() <= bytes.len());

    if let Ok(valid) = validate_batches(&bytes) {
        valid.iter().for_each(read_every_field);
        // Valid input is read back as exactly the same batches.
        assert_eq!(read, valid);
        for batch in &valid {
            let _ = validate_records(batch, MAX_INFLATED_BYTES, None, false);
        }
    }
});
