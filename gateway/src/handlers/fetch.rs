//! Fetch: committed batches from each requested partition within the request's byte limits
//! and the broker's fetch memory, long-polling up to `max_wait_ms` until `min_bytes` are
//! there. read_committed fetches read up to the last stable offset and are told the aborted
//! transactions in what they read, whose records clients drop.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coordinator::acl::AclOperation;
use coordinator::TopicMeta;
use futures::future::select_all;
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::fetch_request::FetchTopic;
use proto_compat::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use proto_compat::kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tokio::sync::watch;
use tokio::time::Instant;

use super::check_leader_epoch;
use crate::broker::Broker;
use crate::connection::Session;
use crate::fetch_memory::{shrink_to, Reservation};
use crate::partition::log_reader::ReadError;
use crate::partition::{CommitState, Partition};

/// How one partition is read.
#[derive(Debug, Clone, Copy)]
struct Read {
    version: i16,
    read_committed: bool,
    budget: usize,
    deadline: Instant,
}

/// Fetch v13 (KIP-516) names topics by id.
const FIRST_VERSION_WITH_TOPIC_IDS: i16 = 13;
/// The isolation level of consumers that see committed transactions only.
const READ_COMMITTED: i8 = 1;

/// The response, and the fetch memory its record sets hold until it has been written.
pub async fn handle(
    broker: &Arc<Broker>,
    session: &Session,
    version: i16,
    request: FetchRequest,
) -> (FetchResponse, Option<Reservation>) {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let read_committed = request.isolation_level == READ_COMMITTED;
    let max_bytes = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        i32::MAX as usize
    };
    let topics: Vec<(FetchTopic, Result<TopicMeta, i16>)> = request
        .topics
        .into_iter()
        .map(|t| {
            let topic = if version >= FIRST_VERSION_WITH_TOPIC_IDS {
                broker
                    .coordinator
                    .topic_by_id(t.topic_id)
                    .ok_or(ResponseError::UnknownTopicId.code())
            } else {
                broker
                    .coordinator
                    .topic(t.topic.as_str())
                    .ok_or(ResponseError::UnknownTopicOrPartition.code())
            };
            // Without READ a topic is refused, even one that does not exist (an unknown id
            // names nothing to authorize).
            let name = match &topic {
                Ok(topic) => Some(topic.name.as_str()),
                Err(_) => (version < FIRST_VERSION_WITH_TOPIC_IDS).then_some(t.topic.as_str()),
            };
            let topic = match name {
                Some(name) if !broker.authorizer.topic(session, AclOperation::Read, name) => {
                    Err(ResponseError::TopicAuthorizationFailed.code())
                }
                _ => topic,
            };
            (t, topic)
        })
        .collect();
    loop {
        let mut watched = Vec::new();
        let mut memory = None;
        let (responses, bytes, any_error) = read_all(
            broker,
            version,
            read_committed,
            &topics,
            max_bytes,
            deadline,
            &mut watched,
            &mut memory,
        )
        .await;
        let done = bytes >= request.min_bytes.max(0) as usize
            || any_error
            || watched.is_empty()
            || Instant::now() >= deadline;
        if done {
            let mut response = FetchResponse::default();
            response.responses = responses;
            return (response, memory);
        }
        drop(memory);
        // Long-poll: wake on any commit to the requested partitions since they were read.
        let changed = select_all(watched.iter_mut().map(|r| Box::pin(r.changed())));
        let _ = tokio::time::timeout_at(deadline, changed).await;
    }
}

/// One pass over every requested partition. Returns the responses, the record bytes in
/// them, whether any partition had an error, the commits of the partitions read (watched
/// from before each read, so a commit right after it still wakes a long poll) and the
/// fetch memory the record sets hold.
#[allow(clippy::too_many_arguments)]
async fn read_all(
    broker: &Broker,
    version: i16,
    read_committed: bool,
    topics: &[(FetchTopic, Result<TopicMeta, i16>)],
    max_bytes: usize,
    deadline: Instant,
    watched: &mut Vec<watch::Receiver<CommitState>>,
    memory: &mut Option<Reservation>,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut responses = Vec::with_capacity(topics.len());
    for (request, topic) in topics {
        let mut topic_response = FetchableTopicResponse::default();
        topic_response.topic = request.topic.clone();
        topic_response.topic_id = request.topic_id;
        for fetch in &request.partitions {
            let mut data = PartitionData::default();
            data.partition_index = fetch.partition;
            data.high_watermark = -1;
            data.last_stable_offset = -1;
            // Kafka sends empty record sets, not null ones; some clients rely on it.
            data.records = Some(Bytes::new());
            let partition = match topic {
                Ok(topic) => broker.partition(topic, fetch.partition),
                Err(code) => Err(*code),
            };
            let result = match partition {
                Ok(partition) => {
                    watched.push(partition.subscribe());
                    let budget = (fetch.partition_max_bytes.max(0) as usize)
                        .min(max_bytes.saturating_sub(total));
                    let read = Read {
                        version,
                        read_committed,
                        budget,
                        deadline,
                    };
                    read_partition(broker, read, &partition, fetch, memory, &mut data).await
                }
                Err(code) => Err(code),
            };
            match result {
                Ok(bytes) => total += bytes,
                Err(code) => {
                    // An error ends the long poll, so each is answered, and counted, once.
                    broker.metrics.partition_error("Fetch", code);
                    data.error_code = code;
                    any_error = true;
                }
            }
            topic_response.partitions.push(data);
        }
        responses.push(topic_response);
    }
    (responses, total, any_error)
}

/// Reads one partition into `data` within `budget` and the room it can reserve: the first
/// partition with records waits for room until `deadline` (then the response goes without
/// records, as a long poll that found none); later ones take only room that is free, so
/// a fetch never waits while it holds room.
async fn read_partition(
    broker: &Broker,
    read: Read,
    partition: &Partition,
    fetch: &proto_compat::kafka_protocol::messages::fetch_request::FetchPartition,
    memory: &mut Option<Reservation>,
    data: &mut PartitionData,
) -> Result<usize, i16> {
    let Read {
        version,
        read_committed,
        budget,
        deadline,
    } = read;
    let state = partition.commit_state();
    data.high_watermark = state.high_watermark;
    data.last_stable_offset = state.last_stable_offset;
    // read_committed consumers see nothing of a transaction still open.
    let readable_end = if read_committed {
        state.last_stable_offset
    } else {
        state.high_watermark
    };
    if version >= 5 {
        data.log_start_offset = state.log_start_offset;
    }
    data.aborted_transactions = Some(Vec::new());
    if let Some(code) = check_leader_epoch(fetch.current_leader_epoch, partition.leader_epoch) {
        return Err(code);
    }
    if state.closed {
        return Err(ResponseError::NotLeaderOrFollower.code());
    }
    let offset = fetch.fetch_offset;
    if offset < state.log_start_offset || offset > partition.log_end_offset() {
        return Err(ResponseError::OffsetOutOfRange.code());
    }
    if offset >= readable_end {
        return Ok(0);
    }
    // Room is held only for record bytes, so holding none means no records yet.
    let first = memory.is_none();
    let reservation = if first {
        broker.fetch_memory.reserve(budget, deadline).await
    } else {
        broker.fetch_memory.try_reserve(budget)
    };
    let Some(mut reservation) = reservation else {
        return Ok(0);
    };
    let budget = budget.min(reservation.num_permits());
    let batches = broker
        .log_reader()
        .read(partition, offset, readable_end, budget, first)
        .await
        .map_err(|e| match e {
            ReadError::BelowLogStart { .. } => ResponseError::OffsetOutOfRange.code(),
            e => {
                tracing::error!(topic = %partition.topic, partition = partition.index, offset, error = %e, "fetch read failed");
                ResponseError::KafkaStorageError.code()
            }
        })?;
    let bytes = batches.len();
    if bytes > 0 {
        shrink_to(&mut reservation, bytes);
        match memory {
            Some(held) => held.merge(reservation),
            None => *memory = Some(reservation),
        }
        if read_committed {
            let end = batches.last_offset().map_or(offset, |last| last + 1);
            let aborted = broker
                .coordinator
                .aborted_transactions(partition.topic_id, partition.index, offset, end)
                .into_iter()
                .map(|txn| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(txn.producer_id))
                        .with_first_offset(txn.first_offset)
                })
                .collect();
            data.aborted_transactions = Some(aborted);
        }
        partition.metrics.bytes_out.inc_by(bytes as u64);
        partition
            .metrics
            .messages_out
            .inc_by(batches.record_count());
        // Sent from the buffers that hold the batches, not copied into one record set.
        data.record_pieces = batches.into_pieces();
    }
    Ok(bytes)
}

/// The bytes of record sets in `response`, which the fetch quota counts.
pub fn records_size(response: &FetchResponse) -> usize {
    response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .map(|partition| {
            let pieces: usize = partition.record_pieces.iter().map(Bytes::len).sum();
            pieces + partition.records.as_ref().map_or(0, Bytes::len)
        })
        .sum()
}

/// Kafka's answer to a throttled fetch: no partitions, no error.
pub fn throttled_response(response: &FetchResponse) -> FetchResponse {
    FetchResponse::default().with_session_id(response.session_id)
}

#[cfg(test)]
mod tests {
    use proto_compat::kafka_protocol::messages::fetch_request::FetchPartition;
    use segment_store::backends::memory::MemoryStore;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::handlers::topic_name;
    use crate::test_support::{append_and_flush, broker, record_batch, topic};

    /// The last stable offset follows committed markers only, and a read_committed fetch is
    /// told the aborted transactions in what it reads; a partition loaded again (a restart,
    /// a new leader) finds the open transactions from the committed producer states.
    #[tokio::test]
    async fn read_committed_stops_at_the_last_stable_offset_and_learns_aborted_transactions() {
        use proto_compat::batch::{control_batch, ControlType};

        use crate::test_support::{append, transactional_batch};

        let (broker, _dir) = broker(Arc::new(MemoryStore::new()), BrokerConfig::default()).await;
        let meta = topic(&broker, "txn", 1).await;
        let partition = broker.partition(&meta, 0).unwrap();
        append_and_flush(&broker, &partition, &record_batch(-1, -1, -1, 2, 1_000)).await;
        append_and_flush(&broker, &partition, &transactional_batch(7, 0, 0, 3)).await;
        append_and_flush(&broker, &partition, &record_batch(-1, -1, -1, 1, 1_000)).await;
        let state = partition.commit_state();
        assert_eq!((state.last_stable_offset, state.high_watermark), (2, 6));

        let fetch = |offset: i64| {
            let request = FetchTopic::default()
                .with_topic(topic_name("txn"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1024 * 1024)]);
            vec![(request, Ok(meta.clone()))]
        };
        let read = |topics: Vec<(FetchTopic, Result<TopicMeta, i16>)>| {
            let broker = broker.clone();
            async move {
                let (responses, _, _) = read_all(
                    &broker,
                    12,
                    true,
                    &topics,
                    usize::MAX,
                    Instant::now(),
                    &mut Vec::new(),
                    &mut None,
                )
                .await;
                responses[0].partitions[0].clone()
            }
        };
        let data = read(fetch(0)).await;
        assert_eq!(data.last_stable_offset, 2);
        let records = Bytes::from(data.record_pieces.concat());
        let batches: Vec<_> = proto_compat::batch::read_batches(&records).collect();
        assert_eq!(
            batches.last().unwrap().last_offset(),
            1,
            "nothing of the open transaction"
        );

        // A buffered abort marker does not move the LSO: a crash could still lose it.
        let abort = control_batch(7, 0, ControlType::Abort, 0, 1_000);
        append(&broker, &partition, &abort);
        assert_eq!(partition.commit_state().last_stable_offset, 2);
        crate::background::flusher::flush(&broker).await;
        let state = partition.commit_state();
        assert_eq!((state.last_stable_offset, state.high_watermark), (7, 7));

        let data = read(fetch(3)).await;
        let aborted = data.aborted_transactions.unwrap();
        assert_eq!(aborted.len(), 1);
        assert_eq!((aborted[0].producer_id.0, aborted[0].first_offset), (7, 2));

        // Another open transaction, seen again by a partition loaded from the coordinator.
        append_and_flush(&broker, &partition, &transactional_batch(8, 0, 0, 1)).await;
        let log = broker.coordinator.partition_log(meta.topic_id, 0).unwrap();
        let reloaded = Partition::new(
            meta.topic_id,
            "txn".to_string(),
            0,
            partition.leader_epoch,
            log,
            partition.metrics.clone(),
        );
        let state = reloaded.commit_state();
        assert_eq!((state.last_stable_offset, state.high_watermark), (7, 8));
    }

    /// A long poll must wake on a commit that lands after its read but before it starts to
    /// wait; else it sleeps through `max_wait_ms` when the partition gets no other commit.
    #[tokio::test]
    async fn a_commit_right_after_the_read_wakes_the_long_poll() {
        let (broker, _dir) = broker(Arc::new(MemoryStore::new()), BrokerConfig::default()).await;
        let meta = topic(&broker, "quiet", 1).await;
        let partition = broker.partition(&meta, 0).unwrap();
        let request = FetchTopic::default()
            .with_topic(topic_name("quiet"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1024 * 1024)]);
        let topics = vec![(request, Ok(meta))];
        let mut watched = Vec::new();
        let (_, bytes, _) = read_all(
            &broker,
            12,
            false,
            &topics,
            usize::MAX,
            Instant::now(),
            &mut watched,
            &mut None,
        )
        .await;
        assert_eq!(bytes, 0, "nothing committed yet");

        append_and_flush(&broker, &partition, &record_batch(-1, -1, -1, 1, 1_000)).await;
        assert!(
            watched[0].has_changed().unwrap(),
            "the commit after the read is not seen by the long poll"
        );
    }
}
