//! Idempotent-producer state of one partition, checked as Kafka's ProducerStateManager does:
//! the last five batches of each producer id are remembered so a retried batch is answered
//! with its original offsets instead of being written twice, and each producer's open
//! transaction (its first offset) is tracked until a marker closes it.

use std::collections::HashMap;

use coordinator::{AbortedTxn, ProducerBatch, ProducerState};
use proto_compat::batch::ControlType;
use proto_compat::batch::RecordBatch;
use proto_compat::kafka_protocol::error::ResponseError;

/// Kafka keeps this many batches per producer (max.in.flight.requests.per.connection).
const BATCHES_PER_PRODUCER: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
}

impl SequenceError {
    pub fn error_code(&self) -> i16 {
        match self {
            Self::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch.code(),
            Self::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
        }
    }
}

#[derive(Debug, Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerState>,
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

impl ProducerStateTable {
    pub fn new(committed: Vec<ProducerState>) -> Self {
        Self {
            producers: committed
                .into_iter()
                .map(|state| (state.producer_id, state))
                .collect(),
        }
    }

    pub fn check(&self, batch: &RecordBatch) -> Result<SequenceCheck, SequenceError> {
        let producer_id = batch.producer_id();
        let Some(state) = self.producers.get(&producer_id) else {
            // Kafka accepts any sequence from a producer it has no state for (e.g. after
            // its batches were removed by retention).
            return Ok(SequenceCheck::Append);
        };
        let epoch = batch.producer_epoch();
        if epoch < state.producer_epoch {
            return Err(SequenceError::InvalidProducerEpoch {
                producer_id,
                epoch,
                current: state.producer_epoch,
            });
        }
        // Markers carry no sequence.
        if batch.is_control() {
            return Ok(SequenceCheck::Append);
        }
        let first = batch.base_sequence();
        if epoch > state.producer_epoch {
            return if first == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    got: first,
                })
            };
        }
        let last = batch.last_sequence();
        if let Some(dup) = state
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
            });
        }
        let expected = state
            .batches
            .last()
            .map_or(first, |b| next_sequence(b.last_seq));
        if first == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrderSequence {
                producer_id,
                expected,
                got: first,
            })
        }
    }

    /// Records an appended batch (its offsets already assigned): a transactional batch opens
    /// its producer's transaction if none is open, a marker closes it. Returns the
    /// transaction an abort marker closed, for the transaction index.
    pub fn record(&mut self, batch: &RecordBatch) -> Option<AbortedTxn> {
        let epoch = batch.producer_epoch();
        let producer_id = batch.producer_id();
        let state = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerState {
                producer_id,
                producer_epoch: epoch,
                batches: Vec::new(),
                current_txn_first_offset: None,
                last_timestamp: -1,
            });
        state.last_timestamp = batch.max_timestamp();
        if epoch != state.producer_epoch {
            state.producer_epoch = epoch;
            state.batches.clear();
        }
        if batch.is_control() {
            let first_offset = state.current_txn_first_offset.take()?;
            return (batch.control_type() == Some(ControlType::Abort)).then_some(AbortedTxn {
                producer_id,
                first_offset,
                last_offset: batch.base_offset(),
            });
        }
        if batch.is_transactional() && state.current_txn_first_offset.is_none() {
            state.current_txn_first_offset = Some(batch.base_offset());
        }
        state.batches.push(ProducerBatch {
            first_seq: batch.base_sequence(),
            last_seq: batch.last_sequence(),
            base_offset: batch.base_offset(),
            last_offset: batch.last_offset(),
        });
        if state.batches.len() > BATCHES_PER_PRODUCER {
            state.batches.remove(0);
        }
        None
    }

    /// Every producer's state, by producer id (DescribeProducers).
    pub fn states(&self) -> Vec<ProducerState> {
        let mut states: Vec<ProducerState> = self.producers.values().cloned().collect();
        states.sort_by_key(|state| state.producer_id);
        states
    }

    /// The state of `producer_ids` as of `last_offset`: what a flush commits for its chunk,
    /// leaving out batches appended after the chunk was sealed. Every producer the chunk
    /// touched is in it, a marker's too (it closed a transaction).
    pub fn snapshot(&self, producer_ids: &[i64], last_offset: i64) -> Vec<ProducerState> {
        producer_ids
            .iter()
            .filter_map(|id| self.producers.get(id))
            .map(|state| ProducerState {
                producer_id: state.producer_id,
                producer_epoch: state.producer_epoch,
                batches: state
                    .batches
                    .iter()
                    .filter(|b| b.last_offset <= last_offset)
                    .cloned()
                    .collect(),
                current_txn_first_offset: state.current_txn_first_offset,
                last_timestamp: state.last_timestamp,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::record_batch;

    /// A batch with offsets assigned from `base_offset`, as the partition stores it.
    fn batch(
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        count: i32,
        base_offset: i64,
    ) -> RecordBatch {
        let batch = record_batch(producer_id, epoch, first_seq, count, 1_000);
        let mut bytes = bytes::BytesMut::from(batch.as_bytes().as_ref());
        proto_compat::batch::set_base_offset(&mut bytes, base_offset);
        proto_compat::batch::read_batches(&bytes.freeze())
            .next()
            .unwrap()
    }

    #[test]
    fn retried_batch_is_a_duplicate_with_its_original_offsets() {
        let mut table = ProducerStateTable::default();
        let first = batch(7, 0, 0, 3, 100);
        assert_eq!(table.check(&first), Ok(SequenceCheck::Append));
        table.record(&first);
        // DescribeProducers' last timestamp: the max timestamp of the last batch.
        assert_eq!(table.states()[0].last_timestamp, first.max_timestamp());
        assert!(first.max_timestamp() > 0);
        assert_eq!(
            table.check(&batch(7, 0, 0, 3, 0)),
            Ok(SequenceCheck::Duplicate {
                base_offset: 100,
                last_offset: 102
            })
        );
        assert_eq!(
            table.check(&batch(7, 0, 3, 1, 0)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn gap_is_out_of_order_and_old_epoch_is_fenced() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(7, 1, 0, 2, 0));
        assert_eq!(
            table.check(&batch(7, 1, 5, 1, 0)),
            Err(SequenceError::OutOfOrderSequence {
                producer_id: 7,
                expected: 2,
                got: 5
            })
        );
        let fenced = table.check(&batch(7, 0, 2, 1, 0)).unwrap_err();
        assert_eq!(
            fenced.error_code(),
            ResponseError::InvalidProducerEpoch.code()
        );
        // A new epoch starts again at sequence 0.
        assert_eq!(
            table.check(&batch(7, 2, 0, 1, 0)),
            Ok(SequenceCheck::Append)
        );
        assert!(table.check(&batch(7, 2, 1, 1, 0)).is_err());
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut table = ProducerStateTable::default();
        for i in 0..6 {
            table.record(&batch(1, 0, i, 1, i64::from(i)));
        }
        assert!(table.check(&batch(1, 0, 0, 1, 0)).is_err());
        assert!(matches!(
            table.check(&batch(1, 0, 1, 1, 0)),
            Ok(SequenceCheck::Duplicate { base_offset: 1, .. })
        ));
    }

    /// `batch` as the partition stores it, at `base_offset`.
    fn at(batch: RecordBatch, base_offset: i64) -> RecordBatch {
        let mut bytes = bytes::BytesMut::from(batch.as_bytes().as_ref());
        proto_compat::batch::set_base_offset(&mut bytes, base_offset);
        proto_compat::batch::read_batches(&bytes.freeze())
            .next()
            .unwrap()
    }

    fn marker(producer_id: i64, epoch: i16, control: ControlType, offset: i64) -> RecordBatch {
        at(
            proto_compat::batch::control_batch(producer_id, epoch, control, 0, 1_000),
            offset,
        )
    }

    #[test]
    fn a_transaction_opens_at_its_first_batch_and_an_abort_marker_closes_it_into_the_index() {
        let mut table = ProducerStateTable::default();
        let first = at(crate::test_support::transactional_batch(7, 0, 0, 3), 10);
        assert_eq!(table.record(&first), None);
        table.record(&at(
            crate::test_support::transactional_batch(7, 0, 3, 2),
            15,
        ));
        let open = table.snapshot(&[7], 16);
        assert_eq!(open[0].current_txn_first_offset, Some(10));

        let abort = marker(7, 0, ControlType::Abort, 17);
        assert_eq!(table.check(&abort), Ok(SequenceCheck::Append));
        assert_eq!(
            table.record(&abort),
            Some(AbortedTxn {
                producer_id: 7,
                first_offset: 10,
                last_offset: 17
            })
        );
        let closed = table.snapshot(&[7], 17);
        assert_eq!(closed[0].current_txn_first_offset, None);
        // The next transaction continues the sequence; a commit marker indexes nothing.
        let next = at(crate::test_support::transactional_batch(7, 0, 5, 1), 18);
        assert_eq!(table.check(&next), Ok(SequenceCheck::Append));
        table.record(&next);
        assert_eq!(table.record(&marker(7, 0, ControlType::Commit, 19)), None);
        // A marker of a producer with nothing open records its epoch and indexes nothing.
        assert_eq!(table.record(&marker(8, 2, ControlType::Abort, 20)), None);
        assert_eq!(table.snapshot(&[8], 20)[0].producer_epoch, 2);
    }

    #[test]
    fn a_marker_at_a_bumped_epoch_fences_the_older_one() {
        let mut table = ProducerStateTable::default();
        table.record(&at(crate::test_support::transactional_batch(7, 0, 0, 1), 0));
        // A timeout abort bumps the epoch: the old instance can write no more.
        let abort = marker(7, 1, ControlType::Abort, 1);
        assert_eq!(table.check(&abort), Ok(SequenceCheck::Append));
        assert!(table.record(&abort).is_some());
        let zombie = at(crate::test_support::transactional_batch(7, 0, 1, 1), 2);
        assert_eq!(
            table.check(&zombie).unwrap_err().error_code(),
            ResponseError::InvalidProducerEpoch.code()
        );
        assert!(table.check(&marker(7, 0, ControlType::Commit, 2)).is_err());
    }

    #[test]
    fn snapshot_leaves_out_batches_after_the_chunk() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(1, 0, 0, 1, 10));
        table.record(&batch(1, 0, 1, 1, 11));
        let snapshot = table.snapshot(&[1], 10);
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot[0].batches.len(), 1);
        assert_eq!(snapshot[0].batches[0].last_offset, 10);
        // A state restored from a snapshot deduplicates the same way.
        let restored = ProducerStateTable::new(table.snapshot(&[1], 11));
        assert!(matches!(
            restored.check(&batch(1, 0, 1, 1, 0)),
            Ok(SequenceCheck::Duplicate {
                base_offset: 11,
                ..
            })
        ));
    }
}
