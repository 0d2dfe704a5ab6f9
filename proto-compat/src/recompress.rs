//! Recompression on the broker, for topics whose `compression.type` names a codec: the
//! records of a producer's batch are inflated (within the same bound as validation) into an
//! uncompressed batch, which the broker validates, then compressed again with the topic's
//! codec and level, in the framings Kafka's own broker writes (xerial's stream for snappy,
//! an LZ4 frame, one zstd frame, one gzip member).

use std::io::Write;

use crate::batch::{with_records, BatchError, Compression, RecordBatch, RECORD_BATCH_OVERHEAD};
use crate::records::inflate_records;

/// Uncompressed bytes per xerial snappy block, as Kafka's snappy stream writes them.
const SNAPPY_BLOCK: usize = 32 * 1024;
/// xerial's stream header: magic, version 1, compatible version 1.
const SNAPPY_HEADER: [u8; 16] = *b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// The codec levels of Kafka's `compression.gzip.level` (-1: the codec's default),
/// `compression.lz4.level` and `compression.zstd.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub gzip: i32,
    pub lz4: i32,
    pub zstd: i32,
}

/// `batch` with its records uncompressed (inflating at most `max_inflated_bytes`); the batch
/// itself when they are.
pub fn inflate(batch: RecordBatch, max_inflated_bytes: u64) -> Result<RecordBatch, BatchError> {
    if batch.compression() == Compression::None {
        return Ok(batch);
    }
    let records = inflate_records(&batch, max_inflated_bytes)?;
    Ok(with_records(&batch, Compression::None, &records))
}

/// The uncompressed `batch` with its records compressed with `codec`.
pub fn compress(
    batch: &RecordBatch,
    codec: Compression,
    levels: Levels,
) -> Result<RecordBatch, BatchError> {
    let records = &batch.as_bytes()[RECORD_BATCH_OVERHEAD..];
    let compressed = encode(codec, levels, records)
        .map_err(|e| BatchError::InvalidRecord(format!("cannot compress with {codec:?}: {e}")))?;
    Ok(with_records(batch, codec, &compressed))
}

fn encode(codec: Compression, levels: Levels, records: &[u8]) -> std::io::Result<Vec<u8>> {
    Ok(match codec {
        Compression::None => records.to_vec(),
        Compression::Gzip => {
            let level = match u32::try_from(levels.gzip) {
                Ok(level) => flate2::Compression::new(level),
                Err(_) => flate2::Compression::default(),
            };
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            encoder.write_all(records)?;
            encoder.finish()?
        }
        Compression::Snappy => {
            let mut out = SNAPPY_HEADER.to_vec();
            let mut encoder = snap::raw::Encoder::new();
            for block in records.chunks(SNAPPY_BLOCK) {
                let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            out
        }
        Compression::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .level(levels.lz4.max(0) as u32)
                .build(Vec::new())?;
            encoder.write_all(records)?;
            let (out, finished) = encoder.finish();
            finished?;
            out
        }
        Compression::Zstd => zstd::stream::encode_all(records, levels.zstd)?,
    })
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes, BytesMut};

    use super::*;
    use crate::batch::validate_batches;
    use crate::records::validate_records;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    const LEVELS: Levels = Levels {
        gzip: -1,
        lz4: 9,
        zstd: 3,
    };

    /// An uncompressed batch of `n` records with values of `size` bytes, built by hand.
    fn batch(n: i32, size: usize) -> RecordBatch {
        let mut records = BytesMut::new();
        for i in 0..n {
            let mut body = BytesMut::new();
            body.put_u8(0); // attributes
            put_varint(&mut body, i64::from(i) * 10); // timestamp delta
            put_varint(&mut body, i64::from(i)); // offset delta
            put_varint(&mut body, -1); // no key
            put_varint(&mut body, size as i64);
            body.put_slice(&vec![b'a' + (i % 26) as u8; size]);
            put_varint(&mut body, 0); // no headers
            put_varint(&mut records, body.len() as i64);
            records.put_slice(&body);
        }
        let mut b = BytesMut::new();
        b.put_i64(0);
        b.put_i32((49 + records.len()) as i32);
        b.put_i32(-1);
        b.put_i8(2);
        b.put_u32(0); // CRC, set below
        b.put_i16(0);
        b.put_i32(n - 1);
        b.put_i64(1_000);
        b.put_i64(1_000 + 10 * i64::from(n - 1));
        b.put_i64(7); // producer id
        b.put_i16(1);
        b.put_i32(0);
        b.put_i32(n);
        b.put_slice(&records);
        let mut bytes = b.to_vec();
        let crc = crate::batch::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        validate_batches(&Bytes::from(bytes)).unwrap().remove(0)
    }

    fn recompress(batch: &RecordBatch, codec: Compression) -> RecordBatch {
        compress(&inflate(batch.clone(), u64::MAX).unwrap(), codec, LEVELS).unwrap()
    }

    fn put_varint(b: &mut BytesMut, n: i64) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            b.put_u8((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
        b.put_u8(z as u8);
    }

    #[test]
    fn every_codec_round_trips_and_keeps_the_header() {
        // More than one snappy block.
        let original = batch(40, 2_000);
        for from in CODECS {
            let source = recompress(&original, from);
            for to in CODECS {
                let out = recompress(&source, to);
                assert_eq!(out.compression(), to, "{from:?} -> {to:?}");
                out.verify_crc().unwrap();
                validate_records(&out, u64::MAX, None, false)
                    .unwrap_or_else(|e| panic!("{from:?} -> {to:?}: {e}"));
                assert_eq!(
                    inflate_records(&out, u64::MAX).unwrap(),
                    inflate_records(&original, u64::MAX).unwrap()
                );
                assert_eq!(
                    (
                        out.base_offset(),
                        out.record_count(),
                        out.producer_id(),
                        out.max_timestamp()
                    ),
                    (0, 40, 7, original.max_timestamp())
                );
            }
        }
        // Compressing repetitive values makes the batch smaller.
        let zstd = recompress(&original, Compression::Zstd);
        assert!(
            zstd.len() < original.len() / 10,
            "{} of {}",
            zstd.len(),
            original.len()
        );
    }

    #[test]
    fn inflating_stays_within_the_bound() {
        let compressed = recompress(&batch(40, 2_000), Compression::Gzip);
        let refused = inflate(compressed, 10_000);
        assert!(
            matches!(refused, Err(BatchError::InvalidRecord(_))),
            "{refused:?}"
        );
    }
}
