//! The LogCleaner's work on bytes, measured (`bench/log_cleaner.sh` runs it): MB/s cleaned
//! and write amplification.
//!
//! A compacted partition receives dirty segments of keyed records, updates of keys drawn
//! uniformly from a key space, some of them tombstones, in lz4 batches as a producer sends
//! them. After each segment the cleaner runs as the broker schedules it: when the dirty
//! segments reach `min.cleanable.dirty.ratio` (0.5) of the log, it maps their keys and
//! rewrites the cleaned prefix and them (`segment_store::cleaner`), in memory: the object
//! store's cost is not in these figures. Write amplification is the bytes the cleans wrote
//! over the bytes produced.
//!
//! Arguments (all optional, in order): segments (20), MB per segment (10), keys (100000),
//! value bytes (100).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto_compat::batch::{read_batches, RecordBatch};
use proto_compat::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rand::{Rng, SeedableRng};
use segment_store::cleaner::{clean_batches, map_batches, CleanRules, CleanStats, OffsetMap};

const RECORDS_PER_BATCH: usize = 100;
const TOMBSTONE_ONE_IN: u32 = 100;
const MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;
/// Kafka's default log.cleaner.dedupe.buffer.size.
const DEDUPE_BUFFER_SIZE: usize = 128 * 1024 * 1024;

struct Segment {
    batches: Vec<RecordBatch>,
    cleaned: bool,
}

impl Segment {
    fn bytes(&self) -> u64 {
        self.batches.iter().map(|b| b.len() as u64).sum()
    }
}

/// The `n`th number among the arguments (cargo bench adds `--bench`).
fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn batch(rng: &mut impl Rng, next_offset: &mut i64, keys: u64, value: &Bytes) -> RecordBatch {
    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
        .map(|i| {
            let offset = *next_offset + i as i64;
            Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset,
                sequence: offset as i32,
                timestamp: 1_700_000_000_000 + offset,
                key: Some(Bytes::from(format!("key-{:08}", rng.random_range(0..keys)))),
                value: (rng.random_range(0..TOMBSTONE_ONE_IN) != 0).then(|| value.clone()),
                headers: Default::default(),
                delete_horizon: false,
            }
        })
        .collect();
    *next_offset += RECORDS_PER_BATCH as i64;
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::Lz4,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encodable records");
    read_batches(&buf.freeze()).next().expect("one batch")
}

fn main() {
    let segments = arg(0, 20);
    let segment_bytes = arg(1, 10) << 20;
    let keys = arg(2, 100_000);
    let value_bytes = arg(3, 100) as usize;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let value = Bytes::from(vec![b'v'; value_bytes]);
    let rules = CleanRules {
        now_ms: 1_800_000_000_000,
        // Tombstones go at the clean after the one that kept them.
        delete_retention_ms: 0,
        max_inflated_bytes: u64::MAX,
        producer_last_offsets: HashMap::new(),
    };
    let mut log: Vec<Segment> = Vec::new();
    let mut next_offset = 0;
    let (mut produced, mut mapped, mut read, mut written) = (0u64, 0u64, 0u64, 0u64);
    let mut cleans = 0u32;
    let mut cleaning = Duration::ZERO;
    for round in 0..segments {
        let mut dirty = Segment {
            batches: Vec::new(),
            cleaned: false,
        };
        while dirty.bytes() < segment_bytes {
            dirty
                .batches
                .push(batch(&mut rng, &mut next_offset, keys, &value));
        }
        produced += dirty.bytes();
        log.push(dirty);
        let dirty_bytes: u64 = log.iter().filter(|s| !s.cleaned).map(Segment::bytes).sum();
        let all_bytes: u64 = log.iter().map(Segment::bytes).sum();
        let last = round + 1 == segments;
        if (dirty_bytes as f64) < MIN_CLEANABLE_DIRTY_RATIO * all_bytes as f64 && !last {
            continue;
        }
        let started = Instant::now();
        let mut map = OffsetMap::new(DEDUPE_BUFFER_SIZE);
        for segment in log.iter().filter(|s| !s.cleaned) {
            mapped += segment.bytes();
            assert!(map_batches(&mut map, &segment.batches, u64::MAX).expect("mapped"));
        }
        let mut stats = CleanStats::default();
        let mut cleaned = Vec::new();
        for segment in log.drain(..) {
            cleaned
                .extend(clean_batches(segment.batches, &map, &rules, &mut stats).expect("cleaned"));
        }
        log.push(Segment {
            batches: cleaned,
            cleaned: true,
        });
        cleaning += started.elapsed();
        read += stats.bytes_read;
        written += stats.bytes_written;
        cleans += 1;
    }
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let final_bytes: u64 = log.iter().map(Segment::bytes).sum();
    println!(
        "log cleaner: {segments} segments of {:.1} MB produced ({:.1} MB, {keys} keys, \
         {value_bytes}-byte values, 1 in {TOMBSTONE_ONE_IN} a tombstone, lz4 batches of \
         {RECORDS_PER_BATCH})",
        mb(segment_bytes),
        mb(produced),
    );
    println!(
        "{cleans} cleans mapped {:.1} MB of dirty segments and cleaned {:.1} MB of log in \
         {:.2} s: {:.1} MB/s cleaned; wrote {:.1} MB: write amplification {:.2}; log after \
         the last clean {:.1} MB",
        mb(mapped),
        mb(read),
        cleaning.as_secs_f64(),
        mb(read) / cleaning.as_secs_f64(),
        mb(written),
        written as f64 / produced as f64,
        mb(final_bytes),
    );
}
