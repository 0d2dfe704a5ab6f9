//! Produce: validates each partition's batch (its header, CRC and records, inflating
//! compressed ones in bounded memory), assigns offsets into the append buffer, and answers
//! by the request's acks: 0 never, 1 once buffered, -1 (all) once the flush holding the
//! batch is durable and committed. A transactional batch is taken only for a partition of its
//! producer's transaction under way, at the transactional id's current epoch (KIP-890's
//! check, read from the transaction state every broker watches); markers (control batches)
//! are written by the transaction coordinator only.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use coordinator::acl::AclOperation;
use coordinator::topic_config::CompressionType;
use coordinator::{TopicMeta, TransactionState};
use proto_compat::batch::{validate_batches, BatchError, Compression, RecordBatch};
use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::produce_request::PartitionProduceData;
use proto_compat::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use proto_compat::kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use proto_compat::recompress::{compress, inflate, Levels};
use proto_compat::records::validate_records;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::clock::now_ms;
use crate::connection::Session;
use crate::metrics::Metrics;
use crate::partition::{AppendError, AppendOutcome, Partition};

/// How long a transactional batch waits for this broker's view of its transaction to show the
/// partition added (in a cluster the coordinator may be another broker, a watch behind).
const TRANSACTION_VIEW_WAIT: Duration = Duration::from_secs(1);

/// Produce v13 (KIP-516) names topics by id.
const FIRST_VERSION_WITH_TOPIC_IDS: i16 = 13;

/// Produce after its appends: what is left is waiting for acks=all commits.
pub struct PendingProduce {
    acks: i16,
    deadline: Instant,
    responses: Vec<TopicProduceResponse>,
    /// acks=all: (topic position, partition position, partition, last offset) to wait for.
    waits: Vec<(usize, usize, Arc<Partition>, i64)>,
    metrics: Arc<Metrics>,
}

impl PendingProduce {
    /// The response once every acks=all batch is committed (or the request timed out);
    /// None for acks=0, which Kafka never answers.
    pub async fn response(mut self) -> Option<ProduceResponse> {
        if self.acks == 0 {
            return None;
        }
        for (topic, partition_position, partition, last_offset) in self.waits {
            if let Err(code) = wait_committed(&partition, last_offset, self.deadline).await {
                let response = &mut self.responses[topic].partition_responses[partition_position];
                response.error_code = code;
                self.metrics.partition_error("Produce", code);
            }
        }
        let mut response = ProduceResponse::default();
        response.responses = self.responses;
        Some(response)
    }
}

/// Validates and appends every partition's batch; this part runs in request order.
pub async fn append_all(
    broker: &Arc<Broker>,
    session: &Session,
    version: i16,
    request: ProduceRequest,
) -> PendingProduce {
    let acks = request.acks;
    let transactional_id = request.transactional_id.as_ref().map(|id| id.to_string());
    let authorizer = &broker.authorizer;
    // Kafka refuses a whole transactional produce whose id the principal may not write.
    let transactional_id_refused = transactional_id
        .as_deref()
        .is_some_and(|id| !authorizer.transactional_id(session, AclOperation::Write, id));
    let deadline = Instant::now() + Duration::from_millis(request.timeout_ms.max(0) as u64);
    // acks=all: (topic position, partition position, partition, last offset) to wait for.
    let mut waits: Vec<(usize, usize, Arc<Partition>, i64)> = Vec::new();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = if transactional_id_refused {
            Err(ResponseError::TransactionalIdAuthorizationFailed.code())
        } else if version >= FIRST_VERSION_WITH_TOPIC_IDS {
            broker
                .coordinator
                .topic_by_id(topic_data.topic_id)
                .ok_or(ResponseError::UnknownTopicId.code())
                .and_then(|topic| {
                    if authorizer.topic(session, AclOperation::Write, &topic.name) {
                        Ok(topic)
                    } else {
                        Err(ResponseError::TopicAuthorizationFailed.code())
                    }
                })
        } else if !authorizer.topic(session, AclOperation::Write, topic_data.name.as_str()) {
            Err(ResponseError::TopicAuthorizationFailed.code())
        } else {
            let name = topic_data.name.as_str();
            broker
                .topic_or_auto_create(name, authorizer.may_create_topic(session, name))
                .await
                .map_err(|e| e.error_code())
        };
        let mut topic_response = TopicProduceResponse::default();
        // A copy: the request's name is a slice of its frame (megabytes under load), which
        // would stay in memory until an acks=all response is sent.
        topic_response.name = topic_name(topic_data.name.as_str());
        topic_response.topic_id = topic_data.topic_id;
        for partition_data in topic_data.partition_data {
            let index = partition_data.index;
            let mut response = PartitionProduceResponse::default();
            response.index = index;
            response.base_offset = -1;
            response.log_append_time_ms = -1;
            response.log_start_offset = -1;
            let outcome = if !(-1..=1).contains(&acks) {
                Err((ResponseError::InvalidRequiredAcks.code(), None))
            } else {
                match &topic {
                    Ok(topic) => {
                        append(broker, transactional_id.as_deref(), topic, partition_data).await
                    }
                    Err(code) => Err((*code, None)),
                }
            };
            match outcome {
                Ok((partition, outcome)) => {
                    response.base_offset = outcome.base_offset();
                    if let AppendOutcome::Appended {
                        log_append_time, ..
                    } = outcome
                    {
                        response.log_append_time_ms = log_append_time;
                    }
                    if version >= 5 {
                        response.log_start_offset = partition.commit_state().log_start_offset;
                    }
                    if acks == -1 {
                        waits.push((
                            responses.len(),
                            topic_response.partition_responses.len(),
                            partition,
                            outcome.last_offset(),
                        ));
                    }
                }
                Err((code, message)) => {
                    broker.metrics.partition_error("Produce", code);
                    response.error_code = code;
                    // v8+ (KIP-467)
                    if version >= 8 {
                        response.error_message = message.map(str_bytes);
                    }
                }
            }
            topic_response.partition_responses.push(response);
        }
        responses.push(topic_response);
    }
    PendingProduce {
        acks,
        deadline,
        responses,
        waits,
        metrics: broker.metrics.clone(),
    }
}

type AppendResult = Result<(Arc<Partition>, AppendOutcome), (i16, Option<String>)>;

async fn append(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &TopicMeta,
    data: PartitionProduceData,
) -> AppendResult {
    let partition = broker
        .partition(topic, data.index)
        .map_err(|code| (code, None))?;
    let records = data.records.unwrap_or_default();
    let invalid = |message: String| (ResponseError::InvalidRecord.code(), Some(message));
    let mut batches =
        validate_batches(&records).map_err(|e| (e.error_code(), Some(e.to_string())))?;
    // Kafka: produce v3+ carries exactly one batch per partition.
    if batches.len() != 1 {
        return Err(invalid(format!(
            "expected exactly one record batch per partition, got {}",
            batches.len()
        )));
    }
    let mut batch = batches.remove(0);
    if batch.is_control() {
        return Err(invalid(
            "control batches are written by the transaction coordinator only".to_string(),
        ));
    }
    // KIP-534's delete horizon marks the batches the LogCleaner kept: a client batch with it
    // would hold tombstones every clean takes as expired.
    if batch.delete_horizon_ms().is_some() {
        return Err(invalid(
            "the delete horizon flag is set by the log cleaner only".to_string(),
        ));
    }
    if batch.is_transactional() {
        check_transaction(broker, transactional_id, &topic.name, data.index, &batch).await?;
    }
    let config = broker
        .coordinator
        .topic_config(&topic.name)
        .map_err(|e| (e.error_code(), None))?;
    let too_large = |batch: &RecordBatch| {
        let bytes = batch.len();
        let message = if bytes > config.max_message_bytes.max(0) as usize {
            format!(
                "batch of {bytes} bytes exceeds max.message.bytes {}",
                config.max_message_bytes
            )
        } else if bytes > broker.config.buffer_max_bytes {
            format!(
                "batch of {bytes} bytes exceeds the broker's append buffer (buffer.max.bytes {})",
                broker.config.buffer_max_bytes
            )
        } else {
            return Ok(());
        };
        Err((ResponseError::MessageTooLarge.code(), Some(message)))
    };
    too_large(&batch)?;
    // The records themselves, as Kafka checks them (after the cheap checks, so a refused
    // batch is never inflated): a count or offsets that lie would move the partition's
    // offsets, and malformed records would break every consumer of it.
    let now = now_ms();
    let max_inflated = broker.config.message_max_uncompressed_bytes;
    let refused = |e: BatchError| (e.error_code(), Some(e.to_string()));
    let recompress_with =
        recompress_with(config.compression_type).filter(|codec| *codec != batch.compression());
    // A batch to recompress is validated once inflated, so it is inflated once.
    if recompress_with.is_some() {
        batch = inflate(batch, max_inflated).map_err(refused)?;
    }
    let timestamps = config.timestamp_window(now);
    let keys_required = config.cleanup_policy.compacts();
    validate_records(&batch, max_inflated, timestamps.as_ref(), keys_required).map_err(refused)?;
    if let Some(codec) = recompress_with {
        let levels = Levels {
            gzip: config.compression_gzip_level,
            lz4: config.compression_lz4_level,
            zstd: config.compression_zstd_level,
        };
        batch = compress(&batch, codec, levels).map_err(refused)?;
        // As Kafka: the batch as stored must fit too.
        too_large(&batch)?;
    }
    match append_batch(
        broker,
        &partition,
        &batch,
        config.message_timestamp_type,
        now,
    )
    .await
    {
        Ok(outcome) => Ok((partition, outcome)),
        Err(e) => Err((e.error_code(), Some(e.to_string()))),
    }
}

/// Appends a validated batch to `partition` through the append buffer: produced batches and
/// the transaction coordinator's markers take this one path.
pub async fn append_batch(
    broker: &Broker,
    partition: &Arc<Partition>,
    batch: &RecordBatch,
    timestamp_type: coordinator::TimestampType,
    now: i64,
) -> Result<AppendOutcome, AppendError> {
    let bytes = batch.len();
    // Backpressure: wait for room in the append buffer. Exactly the batch's bytes: the
    // flusher gives back what it flushes, so the bound holds.
    broker
        .buffer
        .acquire_many(bytes as u32)
        .await
        .expect("the buffer semaphore is never closed")
        .forget();
    match partition.append(batch, timestamp_type, now) {
        Ok((outcome, newly_dirty)) => {
            if let AppendOutcome::Appended { .. } = outcome {
                partition.metrics.bytes_in.inc_by(batch.len() as u64);
                partition
                    .metrics
                    .messages_in
                    .inc_by(batch.record_count() as u64);
                broker.flush_queue.appended(partition, bytes, newly_dirty);
            } else {
                broker.buffer.add_permits(bytes);
            }
            Ok(outcome)
        }
        Err(e) => {
            broker.buffer.add_permits(bytes);
            Err(e)
        }
    }
}

/// A transactional batch must belong to its transactional id's transaction under way, which
/// holds this partition, at the id's current producer id and epoch.
async fn check_transaction(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    batch: &RecordBatch,
) -> Result<(), (i16, Option<String>)> {
    let Some(id) = transactional_id else {
        return Err((
            ResponseError::InvalidTxnState.code(),
            Some("a transactional batch needs the request's transactional id".to_string()),
        ));
    };
    let verdict = || {
        let Some(txn) = broker.coordinator.transaction(id) else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        if txn.producer_id != batch.producer_id() {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if batch.producer_epoch() < txn.producer_epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        let added = txn.state == TransactionState::Ongoing
            && batch.producer_epoch() == txn.producer_epoch
            && txn
                .partitions
                .iter()
                .any(|(t, p)| t == topic && *p == partition);
        if added {
            Ok(())
        } else {
            Err(ResponseError::InvalidTxnState)
        }
    };
    let deadline = Instant::now() + TRANSACTION_VIEW_WAIT;
    let mut changes = broker.coordinator.changes();
    loop {
        match verdict() {
            Ok(()) => return Ok(()),
            Err(error)
                if error == ResponseError::InvalidProducerEpoch || Instant::now() >= deadline =>
            {
                let message = format!(
                    "producer {} epoch {} is not in a transaction of {id:?} holding {topic}-{partition}",
                    batch.producer_id(),
                    batch.producer_epoch()
                );
                return Err((error.code(), Some(message)));
            }
            Err(_) => {
                let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
            }
        }
    }
}

/// The codec the broker stores batches with, if the topic names one.
fn recompress_with(compression: CompressionType) -> Option<Compression> {
    Some(match compression {
        CompressionType::Producer => return None,
        CompressionType::Uncompressed => Compression::None,
        CompressionType::Gzip => Compression::Gzip,
        CompressionType::Snappy => Compression::Snappy,
        CompressionType::Lz4 => Compression::Lz4,
        CompressionType::Zstd => Compression::Zstd,
    })
}

/// Waits until `last_offset` is committed (acks=all), at most until `deadline`.
pub async fn wait_committed(
    partition: &Partition,
    last_offset: i64,
    deadline: Instant,
) -> Result<(), i16> {
    let mut commits = partition.subscribe();
    let wait = async {
        commits
            .wait_for(|c| c.high_watermark > last_offset || c.closed)
            .await
            .map(|state| state.high_watermark > last_offset)
    };
    match tokio::time::timeout_at(deadline, wait).await {
        Ok(Ok(true)) => Ok(()),
        Ok(_) => Err(ResponseError::NotLeaderOrFollower.code()),
        Err(_) => Err(ResponseError::RequestTimedOut.code()),
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use proto_compat::kafka_protocol::messages::produce_request::TopicProduceData;
    use proto_compat::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use segment_store::backends::memory::MemoryStore;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::test_support::{broker, record_batch, session, topic};

    const VERSION: i16 = 9;

    /// An acks=all produce waits for its flush; meanwhile it must not keep its request's
    /// frame, which under load holds megabytes of batches already copied into the buffer.
    #[tokio::test]
    async fn a_produce_waiting_for_its_flush_holds_no_part_of_its_request_frame() {
        let (broker, _dir) = broker(Arc::new(MemoryStore::new()), BrokerConfig::default()).await;
        topic(&broker, "waiting", 1).await;
        let request = produce_request("waiting", -1, &record_batch(-1, -1, -1, 10, 1_000));
        let mut encoded = BytesMut::new();
        request.encode(&mut encoded, VERSION).unwrap();
        // Decoded from a frame, as connections do: its fields are slices of the frame.
        let frame = encoded.freeze();
        let mut wire = frame.clone();
        let decoded = ProduceRequest::decode(&mut wire, VERSION).unwrap();
        drop(wire);

        let pending = append_all(&broker, &session("User:ANONYMOUS"), VERSION, decoded).await;
        assert!(
            frame.is_unique(),
            "the pending acks=all response still refers to the request frame"
        );
        drop(pending);
    }

    /// A produce of `batch` to partition 0 of `topic`.
    fn produce_request(
        topic: &str,
        acks: i16,
        batch: &proto_compat::batch::RecordBatch,
    ) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch.as_bytes().clone()))])])
    }

    /// The first partition's error code and message.
    async fn produce(broker: &Arc<Broker>, request: ProduceRequest) -> (i16, Option<String>) {
        let response = append_all(broker, &session("User:ANONYMOUS"), VERSION, request)
            .await
            .response()
            .await
            .unwrap();
        let partition = &response.responses[0].partition_responses[0];
        (
            partition.error_code,
            partition.error_message.as_ref().map(|m| m.to_string()),
        )
    }

    /// Markers come from the transaction coordinator only; a transactional batch needs its
    /// transaction under way with the partition added, at the current epoch.
    #[tokio::test]
    async fn a_batch_marked_with_a_delete_horizon_is_refused() {
        use proto_compat::batch::{with_retained_records, RECORD_BATCH_OVERHEAD};

        let (broker, _dir) = broker(Arc::new(MemoryStore::new()), BrokerConfig::default()).await;
        topic(&broker, "horizon", 1).await;
        let batch = record_batch(-1, -1, -1, 3, 100);
        let records = &batch.as_bytes()[RECORD_BATCH_OVERHEAD..];
        let marked = with_retained_records(&batch, 3, batch.base_timestamp(), true, records);
        assert!(marked.delete_horizon_ms().is_some());
        let (code, _) = produce(&broker, produce_request("horizon", -1, &marked)).await;
        assert_eq!(code, ResponseError::InvalidRecord.code());
        let (code, _) = produce(&broker, produce_request("horizon", 1, &batch)).await;
        assert_eq!(code, 0);
    }

    #[tokio::test]
    async fn control_batches_and_transactional_batches_outside_their_transaction_are_refused() {
        use coordinator::{TransactionMetadata, TransactionWrite};
        use proto_compat::batch::{control_batch, ControlType};
        use proto_compat::kafka_protocol::messages::TransactionalId;

        use crate::test_support::transactional_batch;

        let (broker, _dir) = broker(Arc::new(MemoryStore::new()), BrokerConfig::default()).await;
        topic(&broker, "txn", 2).await;
        let marker = control_batch(7, 1, ControlType::Commit, 0, 1_000);
        let (code, _) = produce(&broker, produce_request("txn", -1, &marker)).await;
        assert_eq!(code, ResponseError::InvalidRecord.code());

        let ongoing = TransactionMetadata {
            transactional_id: "tx".to_string(),
            producer_id: 7,
            producer_epoch: 1,
            timeout_ms: 60_000,
            state: TransactionState::Ongoing,
            partitions: vec![("txn".to_string(), 1)],
            pending_offsets: Vec::new(),
            txn_start_ms: 1,
            last_update_ms: 1,
        };
        broker
            .coordinator
            .update_transaction("tx", |_| ((), Some(TransactionWrite::Put(ongoing.clone()))))
            .await
            .unwrap();
        let transactional = |batch: &RecordBatch, id: Option<&str>| {
            produce_request("txn", 1, batch).with_transactional_id(
                id.map(|id| TransactionalId(StrBytes::from_string(id.to_string()))),
            )
        };
        let batch = transactional_batch(7, 1, 0, 2);
        let (code, _) = produce(&broker, transactional(&batch, None)).await;
        assert_eq!(code, ResponseError::InvalidTxnState.code());
        // Partition 0 was not added to the transaction.
        let (code, _) = produce(&broker, transactional(&batch, Some("tx"))).await;
        assert_eq!(code, ResponseError::InvalidTxnState.code());
        let (code, _) = produce(&broker, transactional(&batch, Some("other"))).await;
        assert_eq!(code, ResponseError::InvalidProducerIdMapping.code());

        let mut added = ongoing.clone();
        added.partitions.push(("txn".to_string(), 0));
        broker
            .coordinator
            .update_transaction("tx", |_| ((), Some(TransactionWrite::Put(added.clone()))))
            .await
            .unwrap();
        let (code, _) = produce(&broker, transactional(&batch, Some("tx"))).await;
        assert_eq!(code, 0);
        let older = transactional_batch(7, 0, 2, 1);
        let (code, _) = produce(&broker, transactional(&older, Some("tx"))).await;
        assert_eq!(code, ResponseError::InvalidProducerEpoch.code());
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_append_buffer_is_refused_and_the_bound_holds() {
        let small = record_batch(-1, -1, -1, 10, 1_000);
        let large = record_batch(-1, -1, -1, 500, 1_000);
        let config = BrokerConfig {
            buffer_max_bytes: large.len() - 1,
            ..BrokerConfig::default()
        };
        let (broker, _dir) = broker(Arc::new(MemoryStore::new()), config).await;
        topic(&broker, "orders", 1).await;
        // max.message.bytes (1 MiB by default) allows it; the append buffer does not.
        let (code, message) = produce(&broker, produce_request("orders", 1, &large)).await;
        assert_eq!(code, ResponseError::MessageTooLarge.code());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("buffer.max.bytes")),
            "{message:?}"
        );

        for _ in 0..3 {
            let (code, _) = produce(&broker, produce_request("orders", 1, &small)).await;
            assert_eq!(code, 0);
        }
        crate::background::flusher::flush(&broker).await;
        assert_eq!(broker.flush_queue.buffered_bytes(), 0);
        assert_eq!(
            broker.buffer.available_permits(),
            broker.config.buffer_max_bytes,
            "every byte taken from the append buffer came back, and no more"
        );
    }
}
