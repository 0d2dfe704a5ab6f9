//! Streaming, memory-bounded reading of the records inside one v2 batch, for every codec
//! Kafka uses.
//!
//! Records are parsed one at a time from the decompressing reader, and keys, values and
//! headers are skipped through a fixed buffer instead of being allocated, so memory stays
//! bounded whatever a batch inflates to: `SCRATCH` plus the codec's own state, at most a
//! 16 MiB zstd window (`ZSTD_WINDOW_LOG_MAX`), a 16 MiB snappy block (`MAX_SNAPPY_BLOCK`) or
//! lz4's buffers for its largest (4 MiB) blocks. The caller's `max_inflated_bytes` bounds the CPU a batch
//! costs: reading stops as soon as the inflated bytes go past it.
//!
//! Record layout (v2): length varint, attributes i8, timestampDelta varlong, offsetDelta
//! varint, keyLength varint + key, valueLength varint + value, headerCount varint, then per
//! header keyLength varint + key, valueLength varint + value. Varints are zigzag; a negative
//! key or value length means null; `length` counts exactly the bytes of the fields after it.
//!
//! Every error is InvalidRecord, as Kafka's broker answers: the batch's CRC was right, so its
//! bytes arrived as the client sent them, and a retry would only send them again (clients
//! retry CORRUPT_MESSAGE). That covers bytes that do not decode (a bad compressed stream, a
//! malformed or truncated record, bytes after the last record or after the compressed
//! stream), well-formed records that disagree with the header (count, offset deltas), and our
//! limits.

use std::io::{self, BufRead, BufReader, Read};
use std::ops::RangeInclusive;

use flate2::bufread::MultiGzDecoder;

use crate::batch::{BatchError, Compression, RecordBatch, RECORD_BATCH_OVERHEAD};

/// Inflated records are read through a buffer this big; keys, values and headers are skipped
/// through it.
const SCRATCH: usize = 64 * 1024;

/// zstd frames may ask for a window of at most 2^24 = 16 MiB, not the library's 128 MiB
/// default. Clients' default level 3 uses 2 MiB; only levels 20 and up need more.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// The most one snappy block may inflate to: a block is decoded whole. Java clients write
/// 32 KiB blocks, but librdkafka and sarama write a whole batch as one raw block, so this
/// also caps their batches, at 16 times the default max.message.bytes.
const MAX_SNAPPY_BLOCK: usize = 16 << 20;

/// xerial's snappy stream header: this magic, then version and compatible version (i32s).
const SNAPPY_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const SNAPPY_HEADER_LEN: usize = 16;

/// zstd frames start with 0xFD2FB528, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A record's timestamp when its producer gave none.
const NO_TIMESTAMP: i64 = -1;

/// Checks the records of `batch` the way Kafka's broker does on produce: exactly
/// `record_count()` records, the i-th with offset delta i, each well-formed, nothing left
/// after the last one; inflating at most `max_inflated_bytes`. With `timestamps`, each
/// record's timestamp (unless it has none) must lie in it (Kafka's
/// `message.timestamp.before.max.ms` and `after.max.ms`). With `keys_required` (compacted
/// topics) every record must have a key.
pub fn validate_records(
    batch: &RecordBatch,
    max_inflated_bytes: u64,
    timestamps: Option<&RangeInclusive<i64>>,
    keys_required: bool,
) -> Result<(), BatchError> {
    let mut records = Records::open(batch, max_inflated_bytes)?;
    // Past the claimed count too: whole records there mean the count lies, anything else is
    // trailing garbage.
    let mut found = 0;
    while let Some(record) = records.next(found)? {
        if keys_required && !record.has_key {
            // Kafka's wording.
            return Err(BatchError::InvalidRecord(format!(
                "Compacted topic cannot accept message without key (record {found} of the batch)"
            )));
        }
        if let Some(window) = timestamps {
            let timestamp = batch.base_timestamp().wrapping_add(record.timestamp_delta);
            if timestamp != NO_TIMESTAMP && !window.contains(&timestamp) {
                return Err(BatchError::InvalidTimestamp(format!(
                    "timestamp {timestamp} of record {found} of the batch is out of range: it \
                     should be within [{}, {}]",
                    window.start(),
                    window.end()
                )));
            }
        }
        found += 1;
    }
    let claimed = batch.record_count();
    if found != i64::from(claimed) {
        return Err(BatchError::InvalidRecord(format!(
            "batch claims {claimed} records, found {found}"
        )));
    }
    Ok(())
}

/// The records section of `batch`, inflated (at most `max_inflated_bytes`).
pub(crate) fn inflate_records(
    batch: &RecordBatch,
    max_inflated_bytes: u64,
) -> Result<Vec<u8>, BatchError> {
    let records = Records::open(batch, max_inflated_bytes)?;
    match records.input {
        Input::Plain(payload) => Ok(payload.to_vec()),
        Input::Inflating(mut reader) => {
            let mut inflated = Vec::new();
            reader
                .read_to_end(&mut inflated)
                .map_err(|e| inflate_error(records.codec, e))?;
            Ok(inflated)
        }
    }
}

/// The first record at or after `from_offset` whose timestamp satisfies `matches`, as
/// (offset, timestamp), reading only as far as that record; `None` if no record qualifies.
///
/// A record's timestamp is base_timestamp + its delta. In a LogAppendTime batch that is not
/// the timestamp consumers see (every record has the batch's max timestamp): callers use
/// `max_timestamp()` for those batches instead of calling this.
///
/// The batch may come from the LogCleaner, whose batches skip the offsets of records it
/// removed: offset deltas need only increase.
pub fn find_record(
    batch: &RecordBatch,
    from_offset: i64,
    matches: impl Fn(i64) -> bool,
    max_inflated_bytes: u64,
) -> Result<Option<(i64, i64)>, BatchError> {
    if from_offset > batch.last_offset() {
        return Ok(None);
    }
    let mut records = Records::open(batch, max_inflated_bytes)?;
    records.offsets_may_skip = true;
    let claimed = batch.record_count();
    for index in 0..i64::from(claimed) {
        let Some(record) = records.next(index)? else {
            return Err(BatchError::InvalidRecord(format!(
                "batch claims {claimed} records, found {index}"
            )));
        };
        let offset = batch
            .base_offset()
            .wrapping_add(i64::from(record.offset_delta));
        let timestamp = batch.base_timestamp().wrapping_add(record.timestamp_delta);
        if offset >= from_offset && matches(timestamp) {
            return Ok(Some((offset, timestamp)));
        }
    }
    Ok(None)
}

/// What callers need of a record; the rest is checked and skipped.
struct Record {
    timestamp_delta: i64,
    offset_delta: i32,
    has_key: bool,
}

/// The inflated records of one batch, read one by one.
struct Records<'a> {
    input: Input<'a>,
    codec: Compression,
    /// Offset deltas need only increase up to the batch's last offset delta (a cleaned
    /// batch), rather than count from 0.
    offsets_may_skip: bool,
    previous_delta: i64,
    last_offset_delta: i64,
}

/// Where the records' bytes come from: the payload itself when it is not compressed (read in
/// place: nothing copied or allocated, which matters for the many small batches of a
/// producer spread over many partitions), else the inflating reader.
enum Input<'a> {
    Plain(&'a [u8]),
    Inflating(BufReader<Limited<Box<dyn Read + 'a>>>),
}

impl Input<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self {
            Input::Plain(rest) => Ok(rest),
            Input::Inflating(reader) => reader.fill_buf(),
        }
    }

    fn consume(&mut self, n: usize) {
        match self {
            Input::Plain(rest) => *rest = &rest[n..],
            Input::Inflating(reader) => reader.consume(n),
        }
    }
}

impl<'a> Records<'a> {
    fn open(batch: &'a RecordBatch, max_inflated_bytes: u64) -> Result<Self, BatchError> {
        let codec = batch.compression();
        let payload = &batch.as_bytes()[RECORD_BATCH_OVERHEAD..];
        let input = if codec == Compression::None {
            if payload.len() as u64 > max_inflated_bytes {
                return Err(BatchError::InvalidRecord(over_limit(max_inflated_bytes)));
            }
            Input::Plain(payload)
        } else {
            let inflated = decompressor(codec, payload).map_err(|e| inflate_error(codec, e))?;
            let limited = Limited {
                inner: inflated,
                read: 0,
                limit: max_inflated_bytes,
            };
            Input::Inflating(BufReader::with_capacity(SCRATCH, limited))
        };
        Ok(Self {
            input,
            codec,
            offsets_may_skip: false,
            previous_delta: -1,
            last_offset_delta: i64::from(batch.last_offset_delta()),
        })
    }

    /// Reads record `index` (counting from 0), or `None` at the clean end of the records.
    fn next(&mut self, index: i64) -> Result<Option<Record>, BatchError> {
        let record = self.at_end().and_then(|end| {
            if end {
                Ok(None)
            } else {
                self.record(index).map(Some)
            }
        });
        record.map_err(|e| match e {
            BatchError::Corrupt(m) | BatchError::InvalidRecord(m) => {
                BatchError::InvalidRecord(format!("record {index}: {m}"))
            }
            // Not made by reading a record.
            timestamp @ BatchError::InvalidTimestamp(_) => timestamp,
        })
    }

    fn record(&mut self, index: i64) -> Result<Record, BatchError> {
        let length = read_varint(|| self.byte())?;
        let Ok(left) = usize::try_from(length) else {
            return Err(BatchError::InvalidRecord(format!(
                "negative length {length}"
            )));
        };
        let mut body = Body {
            records: self,
            left,
            length,
        };
        let _attributes = body.byte()?;
        let timestamp_delta = read_varlong(|| body.byte())?;
        let offset_delta = read_varint(|| body.byte())?;
        let has_key = body.skip_field()? >= 0;
        body.skip_field()?; // value
        let headers = read_varint(|| body.byte())?;
        if headers < 0 {
            return Err(BatchError::InvalidRecord(format!(
                "negative header count {headers}"
            )));
        }
        for _ in 0..headers {
            let key_length = body.skip_field()?;
            if key_length < 0 {
                return Err(BatchError::InvalidRecord(format!(
                    "negative header key length {key_length}"
                )));
            }
            body.skip_field()?; // value
        }
        if body.left > 0 {
            return Err(BatchError::InvalidRecord(format!(
                "record length {length} is {} bytes more than its fields",
                body.left
            )));
        }
        let delta = i64::from(offset_delta);
        let expected = match self.offsets_may_skip {
            true => delta > self.previous_delta && delta <= self.last_offset_delta,
            false => delta == index,
        };
        if !expected {
            return Err(BatchError::InvalidRecord(format!(
                "offset delta {offset_delta}, expected {index}"
            )));
        }
        self.previous_delta = delta;
        Ok(Record {
            timestamp_delta,
            offset_delta,
            has_key,
        })
    }

    fn at_end(&mut self) -> Result<bool, BatchError> {
        let codec = self.codec;
        let buffered = self.input.fill_buf().map_err(|e| inflate_error(codec, e))?;
        Ok(buffered.is_empty())
    }

    fn byte(&mut self) -> Result<u8, BatchError> {
        let codec = self.codec;
        let buffered = self.input.fill_buf().map_err(|e| inflate_error(codec, e))?;
        let Some(&byte) = buffered.first() else {
            return Err(truncated());
        };
        self.input.consume(1);
        Ok(byte)
    }

    fn skip(&mut self, mut n: usize) -> Result<(), BatchError> {
        while n > 0 {
            let codec = self.codec;
            let buffered = self.input.fill_buf().map_err(|e| inflate_error(codec, e))?;
            if buffered.is_empty() {
                return Err(truncated());
            }
            let step = n.min(buffered.len());
            self.input.consume(step);
            n -= step;
        }
        Ok(())
    }
}

/// The fields of one record: reads may not go past its length.
struct Body<'r, 'a> {
    records: &'r mut Records<'a>,
    left: usize,
    length: i32,
}

impl Body<'_, '_> {
    fn byte(&mut self) -> Result<u8, BatchError> {
        self.take(1)?;
        self.records.byte()
    }

    /// Skips a length-prefixed key or value and returns its length (negative: null).
    fn skip_field(&mut self) -> Result<i32, BatchError> {
        let length = read_varint(|| self.byte())?;
        if let Ok(n) = usize::try_from(length) {
            // Checked before reading, so a claimed length costs nothing past the record's.
            self.take(n)?;
            self.records.skip(n)?;
        }
        Ok(length)
    }

    fn take(&mut self, n: usize) -> Result<(), BatchError> {
        self.left = self.left.checked_sub(n).ok_or_else(|| {
            BatchError::InvalidRecord(format!("fields run past the record length {}", self.length))
        })?;
        Ok(())
    }
}

fn truncated() -> BatchError {
    BatchError::InvalidRecord("truncated: the records end mid-record".to_owned())
}

/// Kafka's ByteUtils.readVarint: at most 5 bytes, zigzag; bits past 32 are dropped, as Java
/// does.
pub(crate) fn read_varint(next: impl FnMut() -> Result<u8, BatchError>) -> Result<i32, BatchError> {
    let raw = read_unsigned(next, 5)? as u32;
    Ok((raw >> 1) as i32 ^ -((raw & 1) as i32))
}

/// Kafka's ByteUtils.readVarlong: at most 10 bytes, zigzag.
pub(crate) fn read_varlong(
    next: impl FnMut() -> Result<u8, BatchError>,
) -> Result<i64, BatchError> {
    let raw = read_unsigned(next, 10)?;
    Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
}

fn read_unsigned(
    mut next: impl FnMut() -> Result<u8, BatchError>,
    max_bytes: u32,
) -> Result<u64, BatchError> {
    let mut raw = 0u64;
    for i in 0..max_bytes {
        let byte = next()?;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(raw);
        }
    }
    Err(BatchError::InvalidRecord(format!(
        "varint longer than {max_bytes} bytes"
    )))
}

/// A limit of ours, raised through `io::Read` and answered with InvalidRecord.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct OverLimit(String);

fn inflate_error(codec: Compression, e: io::Error) -> BatchError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<OverLimit>())
    {
        Some(over) => BatchError::InvalidRecord(over.to_string()),
        None => BatchError::InvalidRecord(format!("{codec:?} data does not decompress: {e}")),
    }
}

fn over_limit(limit: u64) -> String {
    format!("records inflate to more than the {limit}-byte limit")
}

/// Counts inflated bytes and fails as soon as they go past the limit.
struct Limited<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // At most one byte past the limit: enough to see it crossed, without inflating more.
        let room = self.limit.saturating_sub(self.read).saturating_add(1);
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(OverLimit(over_limit(self.limit))));
        }
        Ok(n)
    }
}

fn decompressor<'a>(codec: Compression, payload: &'a [u8]) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        // Read in place by `Input::Plain`.
        Compression::None => unreachable!("uncompressed payloads are not inflated"),
        // Several gzip members read as one stream, as Java's GZIPInputStream reads them.
        Compression::Gzip => Box::new(MultiGzDecoder::new(payload)),
        Compression::Snappy => Box::new(Snappy::new(payload)),
        Compression::Lz4 => Box::new(OneFrame(Some(lz4::Decoder::new(payload)?))),
        Compression::Zstd => {
            // Also keeps out legacy (pre-1.0) frames, which ignore the window bound.
            if !payload.starts_with(&ZSTD_MAGIC) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a zstd frame",
                ));
            }
            let mut decoder = zstd::stream::read::Decoder::with_buffer(payload)?.single_frame();
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(OneFrame(Some(decoder)))
        }
    })
}

/// Kafka's snappy: xerial's stream (a header, then blocks of [u32 BE length][raw snappy
/// block]) or, without the header, one raw snappy block, as Java's SnappyInputStream falls
/// back to. Decoded block by block.
struct Snappy<'a> {
    /// The compressed blocks not yet decoded.
    input: &'a [u8],
    framed: bool,
    block: Vec<u8>,
    /// How much of `block` has been read.
    pos: usize,
}

impl<'a> Snappy<'a> {
    fn new(payload: &'a [u8]) -> Self {
        let framed = payload.len() >= SNAPPY_HEADER_LEN && payload.starts_with(SNAPPY_MAGIC);
        Snappy {
            input: if framed {
                &payload[SNAPPY_HEADER_LEN..]
            } else {
                payload
            },
            framed,
            block: Vec::new(),
            pos: 0,
        }
    }

    fn next_block(&mut self) -> io::Result<()> {
        let compressed = if self.framed {
            let Some((length, rest)) = self.input.split_first_chunk::<4>() else {
                return Err(snappy_error("truncated block length"));
            };
            let length = u32::from_be_bytes(*length) as usize;
            if length > rest.len() {
                return Err(snappy_error("truncated block"));
            }
            let (block, rest) = rest.split_at(length);
            self.input = rest;
            block
        } else {
            std::mem::take(&mut self.input)
        };
        let length = snap::raw::decompress_len(compressed).map_err(io::Error::other)?;
        // Before allocating: the length is the block's claim, not yet checked.
        if length > MAX_SNAPPY_BLOCK {
            return Err(io::Error::other(OverLimit(format!(
                "a snappy block inflates to {length} bytes, more than the {MAX_SNAPPY_BLOCK}-byte limit"
            ))));
        }
        self.block.resize(length, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(io::Error::other)?;
        self.pos = 0;
        Ok(())
    }
}

fn snappy_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Read for Snappy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.block.len() {
            if self.input.is_empty() {
                return Ok(0);
            }
            self.next_block()?;
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A decoder of one frame whose end says whether the frame was whole and what input is left.
trait FrameDecoder<'a>: Read {
    fn into_rest(self) -> io::Result<&'a [u8]>;
}

impl<'a> FrameDecoder<'a> for lz4::Decoder<&'a [u8]> {
    fn into_rest(self) -> io::Result<&'a [u8]> {
        let (rest, whole) = self.finish();
        // lz4's reader ends a cut-short frame as if it were complete; only finish() tells.
        whole.map_err(|_| io::Error::new(io::ErrorKind::UnexpectedEof, "lz4 frame cut short"))?;
        Ok(rest)
    }
}

impl<'a> FrameDecoder<'a> for zstd::stream::read::Decoder<'static, &'a [u8]> {
    fn into_rest(self) -> io::Result<&'a [u8]> {
        // The decoder itself refuses a cut-short frame.
        Ok(self.finish())
    }
}

/// Exactly one frame: bytes after it are an error, since nothing here would check them while
/// some consumers (librdkafka) read on into a next frame.
struct OneFrame<D>(Option<D>);

impl<'a, D: FrameDecoder<'a>> Read for OneFrame<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(decoder) = &mut self.0 else {
            return Ok(0);
        };
        let n = decoder.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let rest = self.0.take().expect("decoder present").into_rest()?;
            if !rest.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} bytes after the end of the frame", rest.len()),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::compression::{self as kpc, Compressor};
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{self as kp, RecordBatchEncoder, RecordEncodeOptions};

    use super::*;
    use crate::batch::{crc32c, validate_batches};

    const CODECS: [kp::Compression; 5] = [
        kp::Compression::None,
        kp::Compression::Gzip,
        kp::Compression::Snappy,
        kp::Compression::Lz4,
        kp::Compression::Zstd,
    ];
    const COMPRESSED: [kp::Compression; 4] = [
        kp::Compression::Gzip,
        kp::Compression::Snappy,
        kp::Compression::Lz4,
        kp::Compression::Zstd,
    ];

    /// Far above what the small batches here inflate to.
    const NO_LIMIT: u64 = u64::MAX;

    const BASE_OFFSET: i64 = 100;
    const BASE_TIMESTAMP: i64 = 1_000_000;

    fn one(bytes: Bytes) -> RecordBatch {
        let mut batches = validate_batches(&bytes).unwrap();
        assert_eq!(batches.len(), 1);
        batches.pop().unwrap()
    }

    /// kafka-protocol's encoding of `records`: an independent implementation of the format.
    fn encode(records: &[kp::Record], compression: kp::Compression) -> RecordBatch {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records, &options).unwrap();
        one(buf.freeze())
    }

    /// `n` records at offsets 100.., timestamps 1_000_000 + 10 i, with null and empty keys and
    /// values, headers (one with a null value), and every 50th value bigger than `SCRATCH`.
    fn records(n: i64) -> Vec<kp::Record> {
        (0..n)
            .map(|i| {
                let mut headers = IndexMap::new();
                for h in 0..i % 3 {
                    let value = (h != 1).then(|| Bytes::from(format!("header value {h}")));
                    headers.insert(StrBytes::from_string(format!("h{h}")), value);
                }
                let value_len = if i % 50 == 7 {
                    3 * SCRATCH + 11
                } else {
                    i as usize
                };
                kp::Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: kp::TimestampType::Creation,
                    offset: BASE_OFFSET + i,
                    sequence: i as i32,
                    timestamp: BASE_TIMESTAMP + 10 * i,
                    key: (i % 4 != 0).then(|| Bytes::from(format!("key {i}"))),
                    value: (i % 5 != 0).then(|| Bytes::from(vec![(i % 251) as u8; value_len])),
                    headers,
                }
            })
            .collect()
    }

    fn compress(codec: kp::Compression, raw: &[u8]) -> Bytes {
        fn with<C: Compressor<BytesMut, BufMut = BytesMut>>(raw: &[u8]) -> Bytes {
            let mut out = BytesMut::new();
            C::compress(&mut out, |buf| {
                buf.put_slice(raw);
                Ok(())
            })
            .unwrap();
            out.freeze()
        }
        match codec {
            kp::Compression::None => Bytes::copy_from_slice(raw),
            kp::Compression::Gzip => with::<kpc::Gzip>(raw),
            kp::Compression::Snappy => with::<kpc::Snappy>(raw),
            kp::Compression::Lz4 => with::<kpc::Lz4>(raw),
            kp::Compression::Zstd => with::<kpc::Zstd>(raw),
        }
    }

    /// A batch around an already compressed `payload` whose header claims `count` records,
    /// consistently (last offset delta, CRC): only the records can tell a lie.
    fn frame(codec: kp::Compression, payload: &[u8], count: i32) -> RecordBatch {
        let mut b = BytesMut::new();
        b.put_i64(BASE_OFFSET);
        b.put_i32((RECORD_BATCH_OVERHEAD - 12 + payload.len()) as i32);
        b.put_i32(0); // partition leader epoch
        b.put_i8(2);
        b.put_u32(0); // CRC, below
        b.put_i16(codec as i16);
        b.put_i32(count - 1);
        b.put_i64(BASE_TIMESTAMP);
        b.put_i64(BASE_TIMESTAMP); // max timestamp
        b.put_i64(-1); // producer id
        b.put_i16(-1); // producer epoch
        b.put_i32(-1); // base sequence
        b.put_i32(count);
        b.put_slice(payload);
        let crc = crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        one(b.freeze())
    }

    /// `raw` records compressed with `codec`, framed with a header claiming `count`.
    fn craft(codec: kp::Compression, raw: &[u8], count: i32) -> RecordBatch {
        frame(codec, &compress(codec, raw), count)
    }

    fn put_varint(buf: &mut Vec<u8>, v: i32) {
        put_unsigned(buf, ((v << 1) ^ (v >> 31)) as u32 as u64);
    }

    fn put_varlong(buf: &mut Vec<u8>, v: i64) {
        put_unsigned(buf, ((v << 1) ^ (v >> 63)) as u64);
    }

    fn put_unsigned(buf: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    fn put_field(buf: &mut Vec<u8>, field: Option<&[u8]>) {
        match field {
            Some(bytes) => {
                put_varint(buf, bytes.len() as i32);
                buf.extend_from_slice(bytes);
            }
            None => put_varint(buf, -1),
        }
    }

    /// A record's fields, without the length in front.
    fn fields(offset_delta: i32, headers: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
        let mut f = vec![0]; // attributes
        put_varlong(&mut f, i64::from(offset_delta) * 10);
        put_varint(&mut f, offset_delta);
        put_field(&mut f, Some(b"key"));
        put_field(&mut f, Some(b"value"));
        put_varint(&mut f, headers.len() as i32);
        for (key, value) in headers {
            put_field(&mut f, Some(key));
            put_field(&mut f, *value);
        }
        f
    }

    fn with_length(length: i32, fields: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        put_varint(&mut r, length);
        r.extend_from_slice(fields);
        r
    }

    fn raw_record(offset_delta: i32) -> Vec<u8> {
        let f = fields(offset_delta, &[(b"h", Some(b"v"))]);
        with_length(f.len() as i32, &f)
    }

    /// Raw records with these offset deltas, one after another.
    fn raw_records(offset_deltas: impl IntoIterator<Item = i32>) -> Vec<u8> {
        offset_deltas.into_iter().flat_map(raw_record).collect()
    }

    fn invalid(result: Result<impl std::fmt::Debug, BatchError>) -> String {
        match result {
            Err(e @ BatchError::InvalidRecord(_)) => {
                assert_eq!(e.error_code(), 87);
                e.to_string()
            }
            other => panic!("expected InvalidRecord, got {other:?}"),
        }
    }

    fn at_least(timestamp: i64) -> impl Fn(i64) -> bool {
        move |t| t >= timestamp
    }

    #[test]
    fn kafka_protocol_batches_validate_for_every_codec() {
        for codec in CODECS {
            for n in [1, 2, 500] {
                let batch = encode(&records(n), codec);
                assert_eq!(batch.record_count() as i64, n);
                validate_records(&batch, NO_LIMIT, None, false)
                    .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            }
        }
    }

    #[test]
    fn a_compacted_topic_refuses_a_record_without_key_for_every_codec() {
        // records() gives every fourth record no key, starting with the first.
        for codec in CODECS {
            let keyless = encode(&records(5), codec);
            let message = invalid(validate_records(&keyless, NO_LIMIT, None, true));
            assert!(
                message.contains("Compacted topic cannot accept message without key"),
                "{message}"
            );
            validate_records(&keyless, NO_LIMIT, None, false).unwrap();
            let keyed = encode(&records(5)[1..4], codec);
            validate_records(&keyed, NO_LIMIT, None, true).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn every_record_timestamp_must_lie_in_the_window_for_every_codec() {
        // Timestamps 1_000_000, 1_000_010, ..., 1_000_040.
        let last = BASE_TIMESTAMP + 40;
        for codec in CODECS {
            let batch = encode(&records(5), codec);
            let check = |window: std::ops::RangeInclusive<i64>| {
                validate_records(&batch, NO_LIMIT, Some(&window), false)
            };
            check(BASE_TIMESTAMP..=last).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            // The last record too late, the first too early.
            for window in [BASE_TIMESTAMP..=last - 1, BASE_TIMESTAMP + 1..=last] {
                match check(window.clone()) {
                    Err(e @ BatchError::InvalidTimestamp(_)) => {
                        assert_eq!(e.error_code(), 32, "INVALID_TIMESTAMP");
                    }
                    other => panic!("{codec:?} {window:?}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn find_record_returns_offset_and_timestamp_for_every_codec() {
        for codec in CODECS {
            let batch = encode(&records(200), codec);
            let find = |from, matches| find_record(&batch, from, matches, NO_LIMIT).unwrap();
            let ts = |i: i64| BASE_TIMESTAMP + 10 * i;
            // From the start, by timestamp, including values bigger than the scratch buffer.
            assert_eq!(find(0, at_least(0)), Some((100, ts(0))), "{codec:?}");
            assert_eq!(find(0, at_least(ts(7))), Some((107, ts(7))));
            assert_eq!(find(0, at_least(ts(57) - 5)), Some((157, ts(57))));
            assert_eq!(find(0, at_least(ts(199))), Some((299, ts(199))));
            // From the middle: earlier matches do not count.
            assert_eq!(find(150, at_least(0)), Some((150, ts(50))));
            assert_eq!(find(150, at_least(ts(160))), Some((260, ts(160))));
            assert_eq!(find(299, at_least(0)), Some((299, ts(199))));
            // Any predicate, e.g. an exact timestamp.
            // Nothing matches, or nothing is at or after from_offset.
            assert_eq!(find(0, at_least(ts(199) + 1)), None);
            assert_eq!(find(300, at_least(0)), None);
            // Any predicate, e.g. an exact timestamp.
            let exact = find_record(&batch, 0, |t| t == ts(123), NO_LIMIT).unwrap();
            assert_eq!(exact, Some((223, ts(123))));
        }
    }

    #[test]
    fn find_record_past_the_batch_reads_nothing() {
        // Records that do not even decompress: find_record never looks at them.
        let batch = frame(kp::Compression::Zstd, b"garbage", 3);
        assert_eq!(
            find_record(&batch, BASE_OFFSET + 3, at_least(0), NO_LIMIT),
            Ok(None)
        );
        invalid(find_record(&batch, BASE_OFFSET + 2, at_least(0), NO_LIMIT));
    }

    #[test]
    fn find_record_reads_only_as_far_as_the_match() {
        // Garbage after the first record: found before it is read.
        let mut raw = raw_record(0);
        raw.extend_from_slice(&[0x80; 20]);
        for codec in CODECS {
            let batch = craft(codec, &raw, 2);
            assert_eq!(
                find_record(&batch, 0, at_least(0), NO_LIMIT),
                Ok(Some((BASE_OFFSET, BASE_TIMESTAMP))),
                "{codec:?}"
            );
            invalid(find_record(
                &batch,
                0,
                at_least(BASE_TIMESTAMP + 1),
                NO_LIMIT,
            ));
            invalid(validate_records(&batch, NO_LIMIT, None, false));
        }
    }

    #[test]
    fn crafted_records_validate_for_every_codec() {
        // The test encoder agrees with the reader, so the lies below are the only change.
        for codec in CODECS {
            let batch = craft(codec, &raw_records(0..10), 10);
            validate_records(&batch, NO_LIMIT, None, false)
                .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(
                find_record(&batch, 0, at_least(BASE_TIMESTAMP + 45), NO_LIMIT),
                Ok(Some((BASE_OFFSET + 5, BASE_TIMESTAMP + 50)))
            );
        }
    }

    #[test]
    fn a_count_above_the_records_is_invalid() {
        for codec in COMPRESSED {
            let batch = craft(codec, &raw_records(0..3), i32::MAX);
            let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
            assert!(
                msg.contains("batch claims 2147483647 records, found 3"),
                "{msg}"
            );
            let msg = invalid(find_record(&batch, 0, |_| false, NO_LIMIT));
            assert!(
                msg.contains("batch claims 2147483647 records, found 3"),
                "{msg}"
            );
        }
        // Uncompressed, only as many as the payload could hold get past validate_batches.
        let batch = craft(kp::Compression::None, &raw_records(0..3), 4);
        let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
        assert!(msg.contains("batch claims 4 records, found 3"), "{msg}");
    }

    #[test]
    fn a_count_below_the_records_is_invalid() {
        for codec in CODECS {
            let batch = craft(codec, &raw_records(0..5), 3);
            let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
            assert!(
                msg.contains("batch claims 3 records, found 5"),
                "{codec:?}: {msg}"
            );
            // Within the claimed records, find_record is content.
            assert_eq!(
                find_record(&batch, 0, at_least(BASE_TIMESTAMP + 20), NO_LIMIT),
                Ok(Some((BASE_OFFSET + 2, BASE_TIMESTAMP + 20)))
            );
        }
    }

    #[test]
    fn offset_deltas_out_of_sequence_are_invalid() {
        for codec in CODECS {
            for deltas in [[0, 2, 1], [1, 2, 3], [0, 0, 1], [0, 1, -1]] {
                let batch = craft(codec, &raw_records(deltas), 3);
                let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
                assert!(msg.contains("offset delta"), "{codec:?} {deltas:?}: {msg}");
                invalid(find_record(&batch, 0, |_| false, NO_LIMIT));
            }
            let batch = craft(codec, &raw_records([0, 2, 1]), 3);
            let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
            assert!(
                msg.contains("record 1: offset delta 2, expected 1"),
                "{msg}"
            );
        }
    }

    #[test]
    fn a_truncated_compressed_stream_is_invalid() {
        let raw = raw_records(0..50);
        for codec in COMPRESSED {
            let whole = compress(codec, &raw);
            validate_records(&frame(codec, &whole, 50), NO_LIMIT, None, false).unwrap();
            for cut in [1, 2, 4, 9, whole.len() / 2] {
                let batch = frame(codec, &whole[..whole.len() - cut], 50);
                invalid(validate_records(&batch, NO_LIMIT, None, false));
            }
        }
    }

    #[test]
    fn records_cut_mid_record_are_invalid() {
        let raw = raw_records(0..3);
        for codec in CODECS {
            // Uncompressed, validate_batches needs room for the 3 records the header claims.
            for len in [raw.len() - 1, raw.len() - 5, 23] {
                let batch = craft(codec, &raw[..len], 3);
                let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
                assert!(msg.contains("truncated"), "{codec:?} {len}: {msg}");
            }
        }
    }

    #[test]
    fn garbage_after_the_last_record_is_invalid() {
        for codec in CODECS {
            for garbage in [&[0x00][..], &[0x01], &[0x10, 0x00], &[0xff; 6]] {
                let mut raw = raw_records(0..3);
                raw.extend_from_slice(garbage);
                let batch = craft(codec, &raw, 3);
                let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
                assert!(msg.contains("record 3:"), "{codec:?} {garbage:?}: {msg}");
            }
        }
    }

    #[test]
    fn bytes_after_the_compressed_stream_are_invalid() {
        let raw = raw_records(0..3);
        for codec in COMPRESSED {
            let mut payload = compress(codec, &raw).to_vec();
            payload.extend_from_slice(b"\x00\x00\x00\x07 extra");
            invalid(validate_records(
                &frame(codec, &payload, 3),
                NO_LIMIT,
                None,
                false,
            ));
        }
        // A second zstd frame, valid but unread by validation, is refused too.
        let mut two = compress(kp::Compression::Zstd, &raw).to_vec();
        two.extend_from_slice(&compress(kp::Compression::Zstd, &raw_records(3..6)));
        let msg = invalid(validate_records(
            &frame(kp::Compression::Zstd, &two, 6),
            NO_LIMIT,
            None,
            false,
        ));
        assert!(msg.contains("after the end of the frame"), "{msg}");
    }

    #[test]
    fn a_record_length_must_match_its_fields() {
        let f = fields(0, &[(b"h", Some(b"v"))]);
        let len = f.len() as i32;
        for codec in CODECS {
            // One byte short: the last field runs past it.
            let batch = craft(codec, &with_length(len - 1, &f), 1);
            let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
            assert!(
                msg.contains("run past the record length"),
                "{codec:?}: {msg}"
            );
            // One byte long: a byte no field accounts for.
            let mut raw = with_length(len + 1, &f);
            raw.push(0);
            let batch = craft(codec, &raw, 1);
            let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
            assert!(
                msg.contains("1 bytes more than its fields"),
                "{codec:?}: {msg}"
            );
            // Negative.
            let batch = craft(codec, &with_length(-2, &f), 1);
            let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
            assert!(msg.contains("negative length -2"), "{codec:?}: {msg}");
        }
    }

    #[test]
    fn a_field_longer_than_its_record_is_refused_without_reading_it() {
        // A value claiming 2^31-1 bytes in a 10-byte record: refused at the claim, not after
        // skipping (which would read to the end and report truncation instead).
        let mut f = vec![0, 0, 0]; // attributes, timestamp delta, offset delta
        put_field(&mut f, None);
        put_varint(&mut f, i32::MAX);
        f.extend_from_slice(&[0; 4]);
        let batch = craft(kp::Compression::Zstd, &with_length(f.len() as i32, &f), 1);
        let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
        assert!(msg.contains("run past the record length"), "{msg}");
    }

    #[test]
    fn negative_header_key_length_and_count_are_invalid() {
        let mut f = vec![0, 0, 0];
        put_field(&mut f, None);
        put_field(&mut f, None);
        put_varint(&mut f, 1); // one header
        put_varint(&mut f, -1); // with a null key
        put_field(&mut f, None);
        for codec in CODECS {
            let batch = craft(codec, &with_length(f.len() as i32, &f), 1);
            let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
            assert!(msg.contains("negative header key length -1"), "{msg}");
        }

        let mut f = vec![0, 0, 0];
        put_field(&mut f, None);
        put_field(&mut f, None);
        put_varint(&mut f, -1);
        let batch = craft(kp::Compression::Lz4, &with_length(f.len() as i32, &f), 1);
        let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
        assert!(msg.contains("negative header count -1"), "{msg}");
    }

    #[test]
    fn any_negative_key_or_value_length_is_null_as_in_kafka() {
        let mut f = vec![0, 0, 0];
        put_varint(&mut f, -7);
        put_varint(&mut f, i32::MIN);
        put_varint(&mut f, 1);
        put_field(&mut f, Some(b"k"));
        put_varint(&mut f, -3);
        let batch = craft(kp::Compression::None, &with_length(f.len() as i32, &f), 1);
        validate_records(&batch, NO_LIMIT, None, false).unwrap();
    }

    #[test]
    fn varints_decode_as_kafka_writes_them() {
        let decode32 = |bytes: &[u8]| {
            let mut it = bytes.iter();
            read_varint(|| it.next().copied().ok_or_else(truncated))
        };
        let decode64 = |bytes: &[u8]| {
            let mut it = bytes.iter();
            read_varlong(|| it.next().copied().ok_or_else(truncated))
        };
        for v in [0, 1, -1, 63, -64, 64, 300, -300, i32::MAX, i32::MIN] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(decode32(&buf), Ok(v));
        }
        for v in [0, 1, -1, 1 << 40, i64::MAX, i64::MIN] {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            assert_eq!(decode64(&buf), Ok(v));
        }
        assert_eq!(decode32(&[0x01]), Ok(-1));
        assert_eq!(decode32(&[0xac, 0x02]), Ok(150));
        // Bits past 32 in the fifth byte are dropped, as Java drops them.
        assert_eq!(decode32(&[0xfe, 0xff, 0xff, 0xff, 0x7f]), Ok(i32::MAX));
        // Over-long: a sixth (or eleventh) byte is refused, even a zero one.
        let msg = invalid(decode32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]));
        assert!(msg.contains("longer than 5 bytes"), "{msg}");
        let msg = invalid(decode64(&[0x80; 11]));
        assert!(msg.contains("longer than 10 bytes"), "{msg}");
        assert!(invalid(decode32(&[0x80])).contains("truncated"));
    }

    #[test]
    fn an_overlong_record_length_is_invalid() {
        let batch = craft(
            kp::Compression::None,
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0],
            1,
        );
        let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
        assert!(msg.contains("longer than 5 bytes"), "{msg}");
    }

    #[test]
    fn the_inflated_limit_is_exact() {
        let raw = raw_records(0..20);
        let size = raw.len() as u64;
        for codec in CODECS {
            let batch = craft(codec, &raw, 20);
            validate_records(&batch, size, None, false)
                .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            let msg = invalid(validate_records(&batch, size - 1, None, false));
            assert!(
                msg.contains(&format!("more than the {}-byte limit", size - 1)),
                "{codec:?}: {msg}"
            );
            invalid(find_record(&batch, 0, |_| false, size - 1));
        }
    }

    #[test]
    fn snappy_without_the_xerial_header_is_one_raw_block() {
        // As librdkafka and sarama write it.
        let raw = raw_records(0..40);
        let block = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let batch = frame(kp::Compression::Snappy, &block, 40);
        validate_records(&batch, NO_LIMIT, None, false).unwrap();
        assert_eq!(
            find_record(&batch, 0, at_least(BASE_TIMESTAMP + 300), NO_LIMIT),
            Ok(Some((BASE_OFFSET + 30, BASE_TIMESTAMP + 300)))
        );
        invalid(validate_records(
            &frame(kp::Compression::Snappy, &block[..block.len() - 3], 40),
            NO_LIMIT,
            None,
            false,
        ));
    }

    #[test]
    fn xerial_snappy_is_read_block_by_block() {
        // kafka-protocol writes 32 KiB blocks: a batch of big values spans many.
        let batch = encode(&records(120), kp::Compression::Snappy);
        let mut blocks = &batch.as_bytes()[RECORD_BATCH_OVERHEAD + SNAPPY_HEADER_LEN..];
        let mut count = 0;
        while let Some((length, rest)) = blocks.split_first_chunk::<4>() {
            blocks = &rest[u32::from_be_bytes(*length) as usize..];
            count += 1;
        }
        assert!(count > 10, "{count} blocks");
        validate_records(&batch, NO_LIMIT, None, false).unwrap();
        // The header alone: no blocks, no records.
        let batch = frame(
            kp::Compression::Snappy,
            &compress(kp::Compression::Snappy, b""),
            1,
        );
        let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
        assert!(msg.contains("batch claims 1 records, found 0"), "{msg}");
    }

    #[test]
    fn a_snappy_block_claiming_too_much_is_refused_before_inflating() {
        // A raw block whose length preamble claims 1 GiB, and a framed one claiming 17 MiB.
        let mut raw = Vec::new();
        put_unsigned(&mut raw, 1 << 30);
        raw.extend_from_slice(&[0; 16]);
        let mut framed = compress(kp::Compression::Snappy, b"")[..16].to_vec();
        framed.extend_from_slice(&21u32.to_be_bytes());
        put_unsigned(&mut framed, 17 << 20);
        framed.extend_from_slice(&[0; 17]);
        for payload in [raw, framed] {
            let batch = frame(kp::Compression::Snappy, &payload, 1);
            let msg = invalid(validate_records(&batch, NO_LIMIT, None, false));
            assert!(msg.contains("more than the 16777216-byte limit"), "{msg}");
        }
    }

    #[test]
    fn a_zstd_window_above_the_bound_is_refused() {
        let raw = raw_records(0..3);
        let streamed = |window_log: u32| {
            // Streamed without a size, the frame declares the whole window.
            let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            encoder.window_log(window_log).unwrap();
            encoder.include_contentsize(false).unwrap();
            encoder.write_all(&raw).unwrap();
            frame(kp::Compression::Zstd, &encoder.finish().unwrap(), 3)
        };
        validate_records(&streamed(ZSTD_WINDOW_LOG_MAX), NO_LIMIT, None, false).unwrap();
        let msg = invalid(validate_records(
            &streamed(ZSTD_WINDOW_LOG_MAX + 1),
            NO_LIMIT,
            None,
            false,
        ));
        assert!(msg.contains("memory"), "{msg}");
    }

    #[test]
    fn zstd_payloads_must_be_a_zstd_frame() {
        // A legacy v0.7 magic, and a skippable frame.
        for magic in [[0x27, 0xb5, 0x2f, 0xfd], [0x50, 0x2a, 0x4d, 0x18]] {
            let mut payload = magic.to_vec();
            payload.extend_from_slice(&[0; 12]);
            let msg = invalid(validate_records(
                &frame(kp::Compression::Zstd, &payload, 1),
                NO_LIMIT,
                None,
                false,
            ));
            assert!(msg.contains("not a zstd frame"), "{msg}");
        }
    }

    /// The start of one record whose value is `value_len` zeros; `[0]` (no headers) ends it.
    fn bomb_prefix(value_len: i32) -> Vec<u8> {
        let mut f = vec![0, 0, 0]; // attributes, timestamp delta, offset delta
        put_varint(&mut f, -1); // null key
        put_varint(&mut f, value_len);
        let length = f.len() as i32 + value_len + 1;
        with_length(length, &f)
    }

    const MIB: usize = 1 << 20;

    /// A zstd batch of one record with a 1 GiB value of zeros, compressed as it streams.
    fn zstd_bomb() -> RecordBatch {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        encoder.write_all(&bomb_prefix(1 << 30)).unwrap();
        let zeros = vec![0; MIB];
        for _ in 0..1024 {
            encoder.write_all(&zeros).unwrap();
        }
        encoder.write_all(&[0]).unwrap();
        frame(kp::Compression::Zstd, &encoder.finish().unwrap(), 1)
    }

    /// A gzip batch of the same record: 1024 gzip members of 1 MiB of zeros each (compressing
    /// 1 GiB in a debug build would take too long), one stream to any gzip reader.
    fn gzip_bomb() -> RecordBatch {
        let member = |data: &[u8]| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        };
        let mut payload = member(&bomb_prefix(1 << 30));
        let zeros = member(&vec![0; MIB]);
        for _ in 0..1024 {
            payload.extend_from_slice(&zeros);
        }
        payload.extend_from_slice(&member(&[0]));
        frame(kp::Compression::Gzip, &payload, 1)
    }

    #[test]
    fn decompression_bombs_stop_at_the_limit() {
        for (name, bomb) in [("zstd", zstd_bomb()), ("gzip", gzip_bomb())] {
            assert!(bomb.len() < 2 * MIB, "{name}: {} bytes", bomb.len());
            let started = Instant::now();
            let msg = invalid(validate_records(&bomb, 64 << 20, None, false));
            assert!(
                msg.contains("more than the 67108864-byte limit"),
                "{name}: {msg}"
            );
            let msg = invalid(find_record(&bomb, 0, at_least(0), 64 << 20));
            assert!(msg.contains("limit"), "{name}: {msg}");
            let took = started.elapsed();
            assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        }
    }
}
