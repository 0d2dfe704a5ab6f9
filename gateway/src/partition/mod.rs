//! One partition led by this broker: the append buffer of produced batches waiting for a
//! flush, the committed tail kept in memory for consumers near the end, the idempotent
//! producer state with the open transactions, and a watch channel that wakes acks=all
//! producers and long-polling fetches when a flush commits.
//!
//! The last stable offset is computed from committed chunks only: a transaction counts as
//! closed once its marker is durable, so read_committed consumers never see records of a
//! transaction whose abort marker a crash could still lose.

pub mod flush_queue;
pub mod log_reader;
pub mod producer_state;
pub mod read_batches;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use bytes::BytesMut;
use coordinator::topic_config::TimestampType;
use coordinator::{AbortedTxn, ChunkMeta, PartitionLog, ProducerState};
use proto_compat::batch::{self, RecordBatch};
use proto_compat::kafka_protocol::error::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use crate::metrics::TopicMetrics;
use producer_state::{ProducerStateTable, SequenceCheck, SequenceError};

/// What consumers may see, published on every commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitState {
    pub high_watermark: i64,
    /// The first offset of the earliest transaction still open in the committed log, else
    /// the high watermark: read_committed consumers read up to here.
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Leadership lost or topic deleted: nothing more will be committed here.
    pub closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended {
        base_offset: i64,
        last_offset: i64,
        log_append_time: i64,
    },
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

impl AppendOutcome {
    pub fn base_offset(&self) -> i64 {
        match *self {
            Self::Appended { base_offset, .. } | Self::Duplicate { base_offset, .. } => base_offset,
        }
    }

    pub fn last_offset(&self) -> i64 {
        match *self {
            Self::Appended { last_offset, .. } | Self::Duplicate { last_offset, .. } => last_offset,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("this broker no longer leads the partition")]
    NotLeader,
    #[error(transparent)]
    Sequence(#[from] SequenceError),
}

impl AppendError {
    pub fn error_code(&self) -> i16 {
        match self {
            Self::NotLeader => ResponseError::NotLeaderOrFollower.code(),
            Self::Sequence(e) => e.error_code(),
        }
    }
}

/// Batches sealed for one flush object.
#[derive(Debug)]
pub struct PendingChunk {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub bytes: usize,
    pub batches: Vec<RecordBatch>,
    pub producers: Vec<ProducerState>,
    /// The transactions whose abort markers this chunk holds.
    pub aborted_transactions: Vec<AbortedTxn>,
}

#[derive(Debug)]
struct PartitionState {
    /// Next offset to assign; batches below it and at or above the high watermark are buffered.
    log_end_offset: i64,
    pending: Vec<RecordBatch>,
    pending_bytes: usize,
    /// Committed batches at the end of the log, oldest first.
    tail: VecDeque<RecordBatch>,
    tail_bytes: usize,
    producers: ProducerStateTable,
    /// Abort markers buffered, for the next chunk.
    pending_aborted: Vec<AbortedTxn>,
    /// The open transactions of the committed log: first offset by producer id.
    committed_open_txns: BTreeMap<i64, i64>,
    /// Set when leadership is being handed over: no more appends.
    handing_over: bool,
}

impl PartitionState {
    fn drop_tail_below(&mut self, offset: i64) {
        while self.tail.front().is_some_and(|b| b.last_offset() < offset) {
            let dropped = self.tail.pop_front().expect("tail is not empty");
            self.tail_bytes -= dropped.len();
        }
    }

    fn trim_tail(&mut self, tail_limit: usize) {
        // Even the newest batch goes when it alone is over the limit: keeping one batch per
        // partition would hold partitions × batch size, not `tail.cache.bytes`.
        while self.tail_bytes > tail_limit {
            let dropped = self.tail.pop_front().expect("tail is not empty");
            self.tail_bytes -= dropped.len();
        }
    }
}

#[derive(Debug)]
pub struct Partition {
    pub topic_id: Uuid,
    pub topic: String,
    pub index: i32,
    pub leader_epoch: i32,
    pub metrics: TopicMetrics,
    state: Mutex<PartitionState>,
    commits: watch::Sender<CommitState>,
}

impl Partition {
    pub fn new(
        topic_id: Uuid,
        topic: String,
        index: i32,
        leader_epoch: i32,
        log: PartitionLog,
        metrics: TopicMetrics,
    ) -> Self {
        let committed_open_txns: BTreeMap<i64, i64> = log
            .producers
            .iter()
            .filter_map(|p| Some((p.producer_id, p.current_txn_first_offset?)))
            .collect();
        let (commits, _) = watch::channel(CommitState {
            high_watermark: log.high_watermark,
            last_stable_offset: last_stable_offset(&committed_open_txns, log.high_watermark),
            log_start_offset: log.log_start_offset,
            closed: false,
        });
        Self {
            topic_id,
            topic,
            index,
            leader_epoch,
            metrics,
            state: Mutex::new(PartitionState {
                log_end_offset: log.high_watermark,
                pending: Vec::new(),
                pending_bytes: 0,
                tail: VecDeque::new(),
                tail_bytes: 0,
                producers: ProducerStateTable::new(log.producers),
                pending_aborted: Vec::new(),
                committed_open_txns,
                handing_over: false,
            }),
            commits,
        }
    }

    pub fn commit_state(&self) -> CommitState {
        *self.commits.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<CommitState> {
        self.commits.subscribe()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.state.lock().unwrap().log_end_offset
    }

    /// The producers' states as appended (buffered batches included), by producer id.
    pub fn producer_states(&self) -> Vec<ProducerState> {
        self.state.lock().unwrap().producers.states()
    }

    /// Assigns offsets to a validated batch and buffers it: one copy of the batch, with the
    /// base offset (and for LogAppendTime the timestamp) written into its header. Returns
    /// the outcome and whether the partition had nothing buffered before (so the caller
    /// queues it for the flusher).
    pub fn append(
        &self,
        batch: &RecordBatch,
        timestamp_type: TimestampType,
        now_ms: i64,
    ) -> Result<(AppendOutcome, bool), AppendError> {
        let mut state = self.state.lock().unwrap();
        if state.handing_over || self.commits.borrow().closed {
            return Err(AppendError::NotLeader);
        }
        let idempotent = batch.producer_id() >= 0;
        if idempotent {
            if let SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            } = state.producers.check(batch)?
            {
                return Ok((
                    AppendOutcome::Duplicate {
                        base_offset,
                        last_offset,
                    },
                    false,
                ));
            }
        }
        let base_offset = state.log_end_offset;
        let mut copy = BytesMut::from(batch.as_bytes().as_ref());
        batch::set_base_offset(&mut copy, base_offset);
        batch::set_partition_leader_epoch(&mut copy, self.leader_epoch);
        let log_append_time = match timestamp_type {
            TimestampType::LogAppendTime => {
                batch::set_log_append_time(&mut copy, now_ms);
                now_ms
            }
            TimestampType::CreateTime => -1,
        };
        let stored = batch::read_batches(&copy.freeze())
            .next()
            .expect("a validated batch stays a whole batch");
        let last_offset = stored.last_offset();
        if idempotent {
            if let Some(aborted) = state.producers.record(&stored) {
                state.pending_aborted.push(aborted);
            }
        }
        let was_empty = state.pending.is_empty();
        state.log_end_offset = last_offset + 1;
        state.pending_bytes += stored.len();
        state.pending.push(stored);
        Ok((
            AppendOutcome::Appended {
                base_offset,
                last_offset,
                log_append_time,
            },
            was_empty,
        ))
    }

    /// Seals everything buffered into one chunk for the flusher.
    pub fn take_pending(&self) -> Option<PendingChunk> {
        let mut state = self.state.lock().unwrap();
        if state.pending.is_empty() {
            return None;
        }
        let batches = std::mem::take(&mut state.pending);
        let bytes = std::mem::take(&mut state.pending_bytes);
        let base_offset = batches[0].base_offset();
        let last_offset = batches[batches.len() - 1].last_offset();
        let max_timestamp = batches
            .iter()
            .map(RecordBatch::max_timestamp)
            .max()
            .unwrap_or(-1);
        let mut producer_ids: Vec<i64> = batches
            .iter()
            .map(RecordBatch::producer_id)
            .filter(|&id| id >= 0)
            .collect();
        producer_ids.sort_unstable();
        producer_ids.dedup();
        let producers = state.producers.snapshot(&producer_ids, last_offset);
        let aborted_transactions = std::mem::take(&mut state.pending_aborted);
        Some(PendingChunk {
            base_offset,
            last_offset,
            max_timestamp,
            bytes,
            batches,
            producers,
            aborted_transactions,
        })
    }

    /// The chunk is durable and committed: consumers may see it and acks=all waiters are
    /// answered. Keeps at most `tail_limit` bytes of the newest committed batches in memory.
    pub fn committed(&self, chunk: PendingChunk, tail_limit: usize) {
        let open_txns = {
            let mut state = self.state.lock().unwrap();
            for batch in chunk.batches {
                state.tail_bytes += batch.len();
                state.tail.push_back(batch);
            }
            state.trim_tail(tail_limit);
            for producer in &chunk.producers {
                match producer.current_txn_first_offset {
                    Some(first) => state
                        .committed_open_txns
                        .insert(producer.producer_id, first),
                    None => state.committed_open_txns.remove(&producer.producer_id),
                };
            }
            state.committed_open_txns.clone()
        };
        self.commits.send_modify(|commit| {
            commit.high_watermark = commit.high_watermark.max(chunk.last_offset + 1);
            commit.last_stable_offset = last_stable_offset(&open_txns, commit.high_watermark);
        });
    }

    /// Keeps at most `tail_limit` bytes of the committed tail.
    pub fn trim_tail(&self, tail_limit: usize) {
        self.state.lock().unwrap().trim_tail(tail_limit);
    }

    pub fn set_log_start_offset(&self, log_start_offset: i64) {
        self.state.lock().unwrap().drop_tail_below(log_start_offset);
        self.commits.send_modify(|commit| {
            commit.log_start_offset = commit.log_start_offset.max(log_start_offset)
        });
    }

    /// The LogCleaner rewrote the log below `offset`: readers get those batches from
    /// storage, not as they were produced.
    pub fn cleaned_below(&self, offset: i64) {
        self.state.lock().unwrap().drop_tail_below(offset);
    }

    /// The first step of a handover: appends are refused from now on. Returns the log end
    /// offset, which the high watermark reaches once everything buffered is committed.
    pub fn stop_appends(&self) -> i64 {
        let mut state = self.state.lock().unwrap();
        state.handing_over = true;
        state.log_end_offset
    }

    /// No more commits will happen here (topic deleted, leadership lost); wakes every waiter.
    pub fn close(&self) {
        self.commits.send_modify(|commit| commit.closed = true);
    }

    /// Committed batches from the in-memory tail starting with the one holding `offset`, up
    /// to `max_bytes` (the first batch always, if `at_least_one`). None if the tail does not
    /// reach back to `offset`.
    pub fn read_tail(
        &self,
        offset: i64,
        max_bytes: usize,
        at_least_one: bool,
    ) -> Option<Vec<RecordBatch>> {
        let state = self.state.lock().unwrap();
        let first = state.tail.front()?;
        if first.base_offset() > offset {
            return None;
        }
        let start = state.tail.partition_point(|b| b.last_offset() < offset);
        let mut out = Vec::new();
        let mut bytes = 0;
        for batch in state.tail.range(start..) {
            if bytes + batch.len() > max_bytes && !(out.is_empty() && at_least_one) {
                break;
            }
            bytes += batch.len();
            out.push(batch.clone());
        }
        Some(out)
    }

    /// Chunk metadata for a commit of `chunk` stored at `object_key`/`byte_range`.
    pub fn chunk_meta(
        chunk: &PendingChunk,
        object_key: &str,
        byte_range: std::ops::Range<u64>,
    ) -> ChunkMeta {
        ChunkMeta {
            base_offset: chunk.base_offset,
            last_offset: chunk.last_offset,
            max_timestamp: chunk.max_timestamp,
            size: byte_range.end - byte_range.start,
            object_key: object_key.to_string(),
            byte_range,
            aborted_transactions: chunk.aborted_transactions.clone(),
        }
    }
}

/// The first offset of the earliest open transaction, else the high watermark.
fn last_stable_offset(open_txns: &BTreeMap<i64, i64>, high_watermark: i64) -> i64 {
    open_txns
        .values()
        .copied()
        .min()
        .map_or(high_watermark, |first| first.min(high_watermark))
}
