//! The coordinator's in-memory state: what the committed records add up to.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use uuid::Uuid;

use super::records::{BrokerChange, Changes, Key, Record};
use crate::{
    BrokerInfo, ChunkMeta, CommittedOffset, PartitionLeader, PartitionLog, ProducerState,
    SegmentMeta, TopicMeta,
};

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) cluster_id: Option<String>,
    /// The next producer id to hand out; ids below `producer_id_limit` are reserved.
    pub(super) next_producer_id: i64,
    pub(super) producer_id_limit: i64,
    /// Live brokers (not persisted).
    pub(super) brokers: BTreeMap<i32, BrokerInfo>,
    pub(super) topic_ids: BTreeMap<String, Uuid>,
    pub(super) topics: HashMap<Uuid, TopicState>,
    /// Committed offsets by group, then by (topic, partition).
    pub(super) offsets: BTreeMap<String, GroupOffsets>,
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
}

impl State {
    /// Builds the state from every stored key; Err describes an inconsistency.
    pub(super) fn load(stored: BTreeMap<String, Bytes>) -> Result<State, String> {
        let mut records = stored
            .iter()
            .map(|(key, value)| Record::decode(key, value))
            .collect::<Result<Vec<_>, _>>()?;
        // Topics before the partitions they own ("partitions/" sorts before "topics/").
        records.sort_by_key(|record| !matches!(record, Record::Topic(_)));
        let mut state = State::default();
        for record in records {
            state.put(record)?;
        }
        state.next_producer_id = state.producer_id_limit;
        Ok(state)
    }

    /// Applies committed changes: deletes first (no key is both deleted and put).
    pub(super) fn apply(&mut self, changes: Changes) -> Result<(), String> {
        for key in changes.deletes {
            self.delete(key);
        }
        for record in changes.puts {
            self.put(record)?;
        }
        match changes.broker {
            Some(BrokerChange::Register(info)) => {
                self.brokers.insert(info.broker_id, info);
            }
            Some(BrokerChange::Unregister(broker_id)) => {
                self.brokers.remove(&broker_id);
            }
            None => {}
        }
        Ok(())
    }

    pub(super) fn topic(&self, name: &str) -> Option<&TopicState> {
        self.topics.get(self.topic_ids.get(name)?)
    }

    pub(super) fn partition(&self, topic_id: Uuid, partition: i32) -> Option<&PartitionState> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(&topic_id)?.partitions.get(index)
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
            Record::NextProducerId(limit) => self.producer_id_limit = limit,
            Record::Topic(meta) => self.put_topic(meta)?,
            Record::Leader(t, p, leader) => {
                self.partition_mut(t, p).ok_or_else(missing)?.leader = Some(leader)
            }
            Record::LogStart(t, p, offset) => {
                self.partition_mut(t, p)
                    .ok_or_else(missing)?
                    .log_start_offset = offset
            }
            Record::Chunk(t, p, chunk) => {
                let partition = self.partition_mut(t, p).ok_or_else(missing)?;
                partition.chunks.insert(chunk.base_offset, chunk);
            }
            Record::Segment(t, p, segment) => {
                let partition = self.partition_mut(t, p).ok_or_else(missing)?;
                partition.segments.insert(segment.base_offset, segment);
            }
            Record::Producer(t, p, producer) => {
                let partition = self.partition_mut(t, p).ok_or_else(missing)?;
                partition.producers.insert(producer.producer_id, producer);
            }
            Record::Offset(group, topic, p, offset) => {
                self.offsets
                    .entry(group)
                    .or_default()
                    .insert((topic, p), offset);
            }
        }
        Ok(())
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
                    self.topics.remove(&topic_id);
                }
            }
            Key::Leader(t, p) => {
                if let Some(partition) = self.partition_mut(t, p) {
                    partition.leader = None;
                }
            }
            Key::LogStart(t, p) => {
                if let Some(partition) = self.partition_mut(t, p) {
                    partition.log_start_offset = 0;
                }
            }
            Key::Chunk(t, p, base) => {
                if let Some(partition) = self.partition_mut(t, p) {
                    partition.chunks.remove(&base);
                }
            }
            Key::Segment(t, p, base) => {
                if let Some(partition) = self.partition_mut(t, p) {
                    partition.segments.remove(&base);
                }
            }
            Key::Producer(t, p, id) => {
                if let Some(partition) = self.partition_mut(t, p) {
                    partition.producers.remove(&id);
                }
            }
            Key::Offset(group, topic, p) => {
                if let Some(offsets) = self.offsets.get_mut(&group) {
                    offsets.remove(&(topic, p));
                    if offsets.is_empty() {
                        self.offsets.remove(&group);
                    }
                }
            }
            // Never deleted: the cluster id and the producer-id counter live forever.
            Key::ClusterId | Key::NextProducerId => {}
        }
    }
}
