//! The coordinator's in-memory state: what the stored records add up to. Every process
//! builds it the same way, from a snapshot of the store and then each change it watches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::client_quotas::ClientQuotas;
use super::records::{
    BrokerRegistration, FlushRecord, FlushedChunk, Key, ProducerSnapshot, Record,
};
use crate::acl::AclBinding;
use crate::metadata_store::Event;
use crate::{
    ChunkMeta, CommittedOffset, PartitionLeader, PartitionLog, ProducerState, ScramCredential,
    ScramMechanism, SegmentMeta, TopicMeta, TransactionMetadata,
};

/// Batches remembered per producer: Kafka's idempotence window (max.in.flight of 5).
const PRODUCER_WINDOW: usize = 5;

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) cluster_id: Option<String>,
    /// The next producer id this process hands out, up to the end of the block it reserved.
    pub(super) next_producer_id: i64,
    pub(super) producer_id_limit: i64,
    /// The stored first producer id not yet reserved (None before the first reservation).
    pub(super) stored_producer_id_limit: Option<i64>,
    /// The stored next broker id to allocate (None before the first allocation).
    pub(super) next_broker_id: Option<i32>,
    /// The active coordinator, while one holds the election.
    pub(super) controller: Option<String>,
    /// Live brokers: their session keys.
    pub(super) brokers: BTreeMap<i32, BrokerRegistration>,
    pub(super) topic_ids: BTreeMap<String, Uuid>,
    /// Grows with every topic created or deleted (building the state counts each topic as
    /// created): only ever compared, to tell whether the set of topic names moved.
    pub(super) topic_name_changes: u64,
    /// Grows with every change of the brokers, the topics or their partitions' leaders:
    /// what leadership is decided from and what it decides. Flush commits leave it alone.
    pub(super) leadership_changes: u64,
    pub(super) topics: HashMap<Uuid, TopicState>,
    /// Committed offsets by group, then by (topic, partition).
    pub(super) offsets: BTreeMap<String, GroupOffsets>,
    /// SCRAM credentials by user and mechanism.
    pub(super) scram_credentials: BTreeMap<(String, ScramMechanism), ScramCredential>,
    /// Each group's membership record, as the group coordinator encoded it.
    pub(super) group_metadata: BTreeMap<String, Bytes>,
    /// The transaction coordinator's state, by transactional id.
    pub(super) transactions: BTreeMap<String, TransactionMetadata>,
    /// Client quotas; replaced (copied on write) when one changes, so readers hold a
    /// snapshot without a lock.
    pub(super) client_quotas: Arc<ClientQuotas>,
    /// Every ACL.
    pub(super) acls: BTreeSet<AclBinding>,
    /// Grows with every ACL created or deleted, so that authorizers tell cheaply whether
    /// what they decided still holds.
    pub(super) acl_changes: u64,
    /// Every stored flush record with how many of its chunks are still part of a log: those
    /// at zero are deleted by [`Coordinator::delete_dead_flush_records`].
    pub(super) flushes: HashMap<String, usize>,
    /// Bytes committed to each partition since this process began watching: the sum of the
    /// chunks of every flush record it watched arrive (a load counts none). The controller's
    /// bytes-in rates are taken from it.
    pub(super) bytes_in: HashMap<(Uuid, i32), u64>,
}

pub(super) type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

#[derive(Debug)]
pub(super) struct TopicState {
    pub(super) meta: TopicMeta,
    /// Indexed by partition.
    pub(super) partitions: Vec<PartitionState>,
}

#[derive(Debug, Default)]
pub(super) struct PartitionState {
    /// None until a broker is live to lead it.
    pub(super) leader: Option<PartitionLeader>,
    pub(super) log_start_offset: i64,
    pub(super) segments: BTreeMap<i64, SegmentMeta>,
    pub(super) chunks: BTreeMap<i64, ChunkMeta>,
    pub(super) producers: BTreeMap<i64, ProducerState>,
    /// The offset the stored producer snapshot is as of: chunks from there on add to it.
    pub(super) producers_as_of: i64,
}

impl PartitionState {
    /// The offset after the last committed one (never below the log start offset).
    pub(super) fn high_watermark(&self) -> i64 {
        let last_segment = self.segments.values().next_back().map(|s| s.last_offset);
        let last_chunk = self.chunks.values().next_back().map(|c| c.last_offset);
        match last_segment.max(last_chunk) {
            Some(last) => self.log_start_offset.max(last + 1),
            None => self.log_start_offset,
        }
    }

    pub(super) fn to_log(&self) -> PartitionLog {
        PartitionLog {
            log_start_offset: self.log_start_offset,
            high_watermark: self.high_watermark(),
            segments: self.segments.values().cloned().collect(),
            chunks: self.chunks.values().cloned().collect(),
            producers: self.producers.values().cloned().collect(),
        }
    }

    pub(super) fn producer_snapshot(&self) -> ProducerSnapshot {
        ProducerSnapshot {
            next_offset: self.high_watermark(),
            producers: self.producers.values().cloned().collect(),
        }
    }

    /// Drops the chunks `gone` says are no longer part of the log.
    fn drop_chunks(
        &mut self,
        flushes: &mut HashMap<String, usize>,
        gone: impl Fn(&ChunkMeta) -> bool,
    ) {
        self.chunks.retain(|_, chunk| {
            let keep = !gone(chunk);
            if !keep {
                forget_chunk(flushes, chunk);
            }
            keep
        });
    }
}

fn forget_chunk(flushes: &mut HashMap<String, usize>, chunk: &ChunkMeta) {
    if let Some(live) = flushes.get_mut(&chunk.object_key) {
        *live = live.saturating_sub(1);
    }
}

impl State {
    /// Builds the state from every stored key; Err describes an inconsistency.
    pub(super) fn load(stored: &BTreeMap<String, Bytes>) -> Result<State, String> {
        let mut records = stored
            .iter()
            .map(|(key, value)| Record::decode(key, value))
            .collect::<Result<Vec<_>, _>>()?;
        // Topics before the partitions they own ("partitions/" sorts before "topics/"), and
        // flushes last, their chunks in offset order: each partition's producers then merge
        // in the order they were committed.
        records.sort_by_key(|record| match record {
            Record::Topic(_) => 0,
            Record::Flush(_) => 2,
            _ => 1,
        });
        let mut state = State::default();
        let mut chunks = Vec::new();
        for record in records {
            match record {
                Record::Flush(flush) => {
                    chunks.extend(flush.chunks()?);
                    state.flushes.insert(flush.object_key, 0);
                }
                record => state.put(record)?,
            }
        }
        chunks.sort_by_key(|c| (c.topic_id, c.partition, c.chunk.base_offset));
        for chunk in chunks {
            state.add_chunk(chunk);
        }
        Ok(state)
    }

    /// Applies one watched change.
    pub(super) fn apply(&mut self, event: Event) -> Result<(), String> {
        match event.value {
            Some(value) => self.put(Record::decode(&event.key, &value)?),
            None => {
                let key =
                    Key::parse(&event.key).ok_or_else(|| format!("unknown key {}", event.key))?;
                self.delete(key);
                Ok(())
            }
        }
    }

    pub(super) fn topic(&self, name: &str) -> Option<&TopicState> {
        self.topics.get(self.topic_ids.get(name)?)
    }

    pub(super) fn partition(&self, topic_id: Uuid, partition: i32) -> Option<&PartitionState> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(&topic_id)?.partitions.get(index)
    }

    /// A partition with the flush records' chunk counts, which its chunk changes update.
    fn log_mut(
        &mut self,
        topic_id: Uuid,
        partition: i32,
    ) -> Option<(&mut PartitionState, &mut HashMap<String, usize>)> {
        let index = usize::try_from(partition).ok()?;
        let log = self.topics.get_mut(&topic_id)?.partitions.get_mut(index)?;
        Some((log, &mut self.flushes))
    }

    fn partition_mut(&mut self, topic_id: Uuid, partition: i32) -> Option<&mut PartitionState> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get_mut(&topic_id)?.partitions.get_mut(index)
    }

    /// Every partition with its leader, by topic name (so assignments are deterministic).
    pub(super) fn leaders(
        &self,
    ) -> impl Iterator<Item = (Uuid, i32, Option<PartitionLeader>)> + '_ {
        self.topic_ids.values().flat_map(|topic_id| {
            (0..)
                .zip(&self.topics[topic_id].partitions)
                .map(|(p, state)| (*topic_id, p, state.leader))
        })
    }

    fn put(&mut self, record: Record) -> Result<(), String> {
        let key = record.key();
        let missing = || format!("{key} belongs to no partition");
        match record {
            Record::ClusterId(id) => self.cluster_id = Some(id),
            Record::NextProducerId(limit) => self.stored_producer_id_limit = Some(limit),
            Record::NextBrokerId(id) => self.next_broker_id = Some(id),
            Record::Controller(name) => self.controller = Some(name),
            Record::Broker(registration) => {
                self.brokers
                    .insert(registration.info.broker_id, registration);
                self.leadership_changes += 1;
            }
            Record::Topic(meta) => {
                self.put_topic(meta)?;
                self.leadership_changes += 1;
            }
            Record::Leader(t, p, leader) => {
                self.partition_mut(t, p).ok_or_else(missing)?.leader = Some(leader);
                self.leadership_changes += 1;
            }
            Record::LogStart(t, p, offset) => {
                let (partition, flushes) = self.log_mut(t, p).ok_or_else(missing)?;
                partition.log_start_offset = offset;
                partition.segments.retain(|_, s| s.last_offset >= offset);
                partition.drop_chunks(flushes, |c| c.last_offset < offset);
            }
            Record::Segment(t, p, segment) => {
                let (partition, flushes) = self.log_mut(t, p).ok_or_else(missing)?;
                // Compaction replaces the oldest chunks: all up to the segment's end.
                let last = segment.last_offset;
                partition.drop_chunks(flushes, |c| c.last_offset <= last);
                partition.segments.insert(segment.base_offset, segment);
            }
            Record::Producers(t, p, snapshot) => {
                let partition = self.partition_mut(t, p).ok_or_else(missing)?;
                partition.producers_as_of = snapshot.next_offset;
                partition.producers = snapshot
                    .producers
                    .into_iter()
                    .map(|producer| (producer.producer_id, producer))
                    .collect();
            }
            Record::Flush(flush) => self.put_flush(flush)?,
            Record::Offset(group, topic, p, offset) => {
                self.offsets
                    .entry(group)
                    .or_default()
                    .insert((topic, p), offset);
            }
            Record::ScramCredential(credential) => {
                let key = (credential.user.clone(), credential.mechanism);
                self.scram_credentials.insert(key, credential);
            }
            Record::GroupMetadata(group, value) => {
                self.group_metadata.insert(group, value);
            }
            Record::Transaction(txn) => {
                self.transactions.insert(txn.transactional_id.clone(), txn);
            }
            Record::ClientQuota(entity, quota_key, value) => {
                Arc::make_mut(&mut self.client_quotas)
                    .entry(entity)
                    .or_default()
                    .insert(quota_key, value);
            }
            Record::Acl(acl) => {
                self.acls.insert(acl);
                self.acl_changes += 1;
            }
        }
        Ok(())
    }

    fn put_flush(&mut self, flush: FlushRecord) -> Result<(), String> {
        // A flush record is written once; the same put again (a retried commit) adds nothing.
        if self.flushes.contains_key(&flush.object_key) {
            return Ok(());
        }
        let chunks = flush.chunks()?;
        self.flushes.insert(flush.object_key, 0);
        for chunk in chunks {
            *self
                .bytes_in
                .entry((chunk.topic_id, chunk.partition))
                .or_insert(0) += chunk.chunk.size;
            self.add_chunk(chunk);
        }
        Ok(())
    }

    /// Adds a committed chunk to its partition's log, unless the log no longer holds it
    /// (compacted into a segment, below the log start, or its topic is gone); its producer
    /// updates count unless the partition's producer snapshot already includes them.
    fn add_chunk(&mut self, flushed: FlushedChunk) {
        let FlushedChunk {
            topic_id,
            partition,
            chunk,
            producers,
        } = flushed;
        let Some((log, flushes)) = self.log_mut(topic_id, partition) else {
            return;
        };
        if chunk.base_offset >= log.producers_as_of {
            for update in producers {
                let current = log.producers.get(&update.producer_id);
                if let Some(merged) = merge_producer(current, update) {
                    log.producers.insert(merged.producer_id, merged);
                }
            }
        }
        let compacted_end = log
            .segments
            .values()
            .next_back()
            .map_or(-1, |s| s.last_offset);
        if chunk.last_offset > compacted_end && chunk.last_offset >= log.log_start_offset {
            *flushes.entry(chunk.object_key.clone()).or_insert(0) += 1;
            log.chunks.insert(chunk.base_offset, chunk);
        }
    }

    /// A new topic, or new metadata (configs, more partitions) for an existing one.
    fn put_topic(&mut self, meta: TopicMeta) -> Result<(), String> {
        let partitions = usize::try_from(meta.partitions)
            .map_err(|_| format!("topic {} has {} partitions", meta.name, meta.partitions))?;
        if let Some(topic) = self.topics.get_mut(&meta.topic_id) {
            topic
                .partitions
                .resize_with(partitions, PartitionState::default);
            topic.meta = meta;
            return Ok(());
        }
        if self.topic_ids.contains_key(&meta.name) {
            return Err(format!("two topics are named {}", meta.name));
        }
        self.topic_ids.insert(meta.name.clone(), meta.topic_id);
        self.topic_name_changes += 1;
        let partitions = (0..partitions).map(|_| PartitionState::default()).collect();
        self.topics
            .insert(meta.topic_id, TopicState { meta, partitions });
        Ok(())
    }

    /// Deleting a missing key is a no-op, as in the store (a topic's partition keys are
    /// deleted together with the topic).
    fn delete(&mut self, key: Key) {
        match key {
            Key::Topic(name) => {
                if let Some(topic_id) = self.topic_ids.remove(&name) {
                    self.topic_name_changes += 1;
                    self.leadership_changes += 1;
                    self.bytes_in.retain(|(t, _), _| *t != topic_id);
                    if let Some(topic) = self.topics.remove(&topic_id) {
                        for partition in topic.partitions {
                            for chunk in partition.chunks.values() {
                                forget_chunk(&mut self.flushes, chunk);
                            }
                        }
                    }
                }
            }
            Key::Leader(t, p) => {
                if let Some(partition) = self.partition_mut(t, p) {
                    partition.leader = None;
                    self.leadership_changes += 1;
                }
            }
            Key::LogStart(t, p) => {
                if let Some(partition) = self.partition_mut(t, p) {
                    partition.log_start_offset = 0;
                }
            }
            Key::Segment(t, p, base) => {
                if let Some(partition) = self.partition_mut(t, p) {
                    partition.segments.remove(&base);
                }
            }
            Key::Producers(t, p) => {
                if let Some(partition) = self.partition_mut(t, p) {
                    partition.producers.clear();
                    partition.producers_as_of = 0;
                }
            }
            Key::Flush(object_key) => {
                self.flushes.remove(&object_key);
            }
            Key::Broker(broker_id) => {
                self.brokers.remove(&broker_id);
                self.leadership_changes += 1;
            }
            Key::Controller => self.controller = None,
            Key::Offset(group, topic, p) => {
                if let Some(offsets) = self.offsets.get_mut(&group) {
                    offsets.remove(&(topic, p));
                    if offsets.is_empty() {
                        self.offsets.remove(&group);
                    }
                }
            }
            Key::ScramCredential(user, mechanism) => {
                self.scram_credentials.remove(&(user, mechanism));
            }
            Key::GroupMetadata(group) => {
                self.group_metadata.remove(&group);
            }
            Key::Acl(acl) => {
                self.acls.remove(&acl);
                self.acl_changes += 1;
            }
            Key::Transaction(id) => {
                self.transactions.remove(&id);
            }
            Key::ClientQuota(entity, quota_key) => {
                let quotas = Arc::make_mut(&mut self.client_quotas);
                if let Some(values) = quotas.get_mut(&entity) {
                    values.remove(&quota_key);
                    if values.is_empty() {
                        quotas.remove(&entity);
                    }
                }
            }
            // Never deleted: the cluster id and the id counters live forever.
            Key::ClusterId | Key::NextProducerId | Key::NextBrokerId => {}
        }
    }
}

/// A producer's state after a chunk: a newer epoch replaces the old state, the same epoch adds
/// the batches after those already known (so the update may be the full state or just the
/// new batches), and only the last PRODUCER_WINDOW batches are kept. None: an update from an
/// older epoch, which changes nothing.
pub(super) fn merge_producer(
    current: Option<&ProducerState>,
    update: ProducerState,
) -> Option<ProducerState> {
    let mut merged = match current {
        Some(current) if update.producer_epoch < current.producer_epoch => return None,
        Some(current) if update.producer_epoch == current.producer_epoch => {
            let known_end = current
                .batches
                .last()
                .map_or(i64::MIN, |batch| batch.last_offset);
            let mut merged = current.clone();
            merged.batches.extend(
                update
                    .batches
                    .into_iter()
                    .filter(|batch| batch.base_offset > known_end),
            );
            merged.current_txn_first_offset = update.current_txn_first_offset;
            merged
        }
        _ => update,
    };
    let excess = merged.batches.len().saturating_sub(PRODUCER_WINDOW);
    merged.batches.drain(..excess);
    Some(merged)
}
