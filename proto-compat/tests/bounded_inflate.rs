//! Reading the records of a batch that inflates to 64 MiB allocates a few MiB at most, for
//! every codec: measured with a counting global allocator.

mod common;

use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};
use proto_compat::batch::{crc32c, validate_batches, RecordBatch, RECORD_BATCH_OVERHEAD};
use proto_compat::records::{find_record, validate_records};

use common::{peak_of, serial, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most that reading records may allocate on top of the batch: the scratch buffer and the
/// codecs' state (for snappy, one block). Inflating into memory would take `VALUE` at least.
/// zstd and lz4 allocate their state in C, unseen here; records.rs tests their bounds.
const BOUND: usize = 4 << 20;

const MIB: usize = 1 << 20;

/// Record 0's value: 64 MiB of zeros, in `MIB` pieces (16 times `BOUND`, and quick to inflate
/// even in a debug build).
const VALUE: usize = 64 * MIB;

/// Far above `VALUE`: here every record is read.
const LIMIT: u64 = 1 << 30;

fn put_varint(buf: &mut Vec<u8>, v: i32) {
    let mut v = ((v << 1) ^ (v >> 31)) as u32;
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Record `offset_delta`, with timestamp delta 20 times that, up to its value of `value_len`
/// bytes; the value and a 0 (no headers) must follow.
fn record_start(offset_delta: i32, value_len: usize) -> Vec<u8> {
    let mut fields = vec![0]; // attributes
    put_varint(&mut fields, offset_delta * 20); // a varlong: the same bytes for small values
    put_varint(&mut fields, offset_delta);
    put_varint(&mut fields, -1); // null key
    put_varint(&mut fields, value_len as i32);
    let mut record = Vec::new();
    put_varint(&mut record, (fields.len() + value_len + 1) as i32);
    record.extend_from_slice(&fields);
    record
}

/// The bytes of two records: `head`, `VALUE / MIB` times `zeros`, then `tail`. Record 0
/// (timestamp 1000) has a `VALUE`-byte value of zeros, record 1 (timestamp 1020) is small.
struct Records {
    head: Vec<u8>,
    zeros: Vec<u8>,
    tail: Vec<u8>,
}

impl Records {
    fn new() -> Self {
        let mut tail = vec![0]; // record 0 has no headers
        tail.extend_from_slice(&record_start(1, 5));
        tail.extend_from_slice(b"small\0");
        Records {
            head: record_start(0, VALUE),
            zeros: vec![0; MIB],
            tail,
        }
    }

    /// Streams the records through a compressor.
    fn write_to(&self, encoder: &mut impl Write) {
        encoder.write_all(&self.head).unwrap();
        for _ in 0..VALUE / MIB {
            encoder.write_all(&self.zeros).unwrap();
        }
        encoder.write_all(&self.tail).unwrap();
    }

    /// For codecs whose streams concatenate (gzip members, snappy blocks): compresses each
    /// piece once, which is much faster in a debug build than compressing them all.
    fn concatenated(&self, compress: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let mut out = compress(&self.head);
        out.extend_from_slice(&compress(&self.zeros).repeat(VALUE / MIB));
        out.extend_from_slice(&compress(&self.tail));
        out
    }
}

/// A batch of those two records, compressed with `codec` (Kafka's attribute bits).
fn batch(codec: i16) -> RecordBatch {
    let records = Records::new();
    let payload = match codec {
        1 => records.concatenated(|piece| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(piece).unwrap();
            e.finish().unwrap()
        }),
        2 => {
            // xerial's stream header, then [u32 BE length][raw snappy] blocks.
            let mut stream = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            stream.extend_from_slice(&records.concatenated(|piece| {
                let block = snap::raw::Encoder::new().compress_vec(piece).unwrap();
                let mut framed = (block.len() as u32).to_be_bytes().to_vec();
                framed.extend_from_slice(&block);
                framed
            }));
            stream
        }
        3 => {
            let mut e = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            records.write_to(&mut e);
            let (payload, finished) = e.finish();
            finished.unwrap();
            payload
        }
        4 => {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            records.write_to(&mut e);
            e.finish().unwrap()
        }
        _ => unreachable!("compressed codecs only"),
    };
    let mut b = BytesMut::new();
    b.put_i64(0); // base offset
    b.put_i32((RECORD_BATCH_OVERHEAD - 12 + payload.len()) as i32);
    b.put_i32(0); // partition leader epoch
    b.put_i8(2); // magic
    b.put_u32(0); // CRC, below
    b.put_i16(codec);
    b.put_i32(1); // last offset delta
    b.put_i64(1000); // base timestamp
    b.put_i64(1020); // max timestamp
    b.put_i64(-1); // producer id
    b.put_i16(-1); // producer epoch
    b.put_i32(-1); // base sequence
    b.put_i32(2); // records
    b.put_slice(&payload);
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let mut batches = validate_batches(&Bytes::from(b)).unwrap();
    batches.pop().unwrap()
}

fn reads_in_bounded_memory(codec: i16) {
    let _serial = serial();
    let batch = batch(codec);
    assert!(
        batch.len() < 16 * MIB,
        "codec {codec}: {} bytes",
        batch.len()
    );

    let (result, peak) = peak_of(|| validate_records(&batch, LIMIT, None, false));
    result.unwrap();
    assert!(
        peak < BOUND,
        "codec {codec}: validating allocated {peak} bytes"
    );

    // The second record: find_record skips the big value to reach it.
    let (found, peak) = peak_of(|| find_record(&batch, 1, |_| true, LIMIT));
    assert_eq!(found, Ok(Some((1, 1020))));
    assert!(
        peak < BOUND,
        "codec {codec}: finding allocated {peak} bytes"
    );
}

#[test]
fn gzip_reads_in_bounded_memory() {
    reads_in_bounded_memory(1);
}

#[test]
fn snappy_reads_in_bounded_memory() {
    reads_in_bounded_memory(2);
}

#[test]
fn lz4_reads_in_bounded_memory() {
    reads_in_bounded_memory(3);
}

#[test]
fn zstd_reads_in_bounded_memory() {
    reads_in_bounded_memory(4);
}
