//! State shared by every connection and background task of one broker: its identity, the
//! coordinator, the object store, the partitions it leads and the consumer groups it
//! coordinates.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use coordinator::error::CoordinatorError;
use coordinator::Coordinator;
use coordinator::TopicMeta;
use group_coordinator::GroupCoordinator;
use proto_compat::kafka_protocol::error::ResponseError;
use segment_store::caches::read_cache::ReadCache;
use segment_store::store::ObjectStore;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::authorizer::Authorizer;
use crate::config::BrokerConfig;
use crate::fetch_memory::FetchMemory;
use crate::in_flight_objects::InFlightObjects;
use crate::limits::RequestMemory;
use crate::metrics::Metrics;
use crate::partition::flush_queue::FlushQueue;
use crate::partition::log_reader::LogReader;
use crate::partition::Partition;
use crate::quotas::ClientQuotaManager;

pub struct Broker {
    pub broker_id: i32,
    pub config: BrokerConfig,
    pub coordinator: Arc<Coordinator>,
    pub store: Arc<dyn ObjectStore>,
    pub read_cache: ReadCache,
    pub metrics: Arc<Metrics>,
    pub flush_queue: FlushQueue,
    /// Permits are bytes produced but not yet flushed (bounded memory, backpressure).
    pub buffer: Semaphore,
    pub fetch_memory: FetchMemory,
    /// Request frames being read or handled over all connections.
    pub request_memory: RequestMemory,
    /// Objects being written or committed, which the garbage collector leaves alone.
    pub in_flight: Arc<InFlightObjects>,
    pub groups: GroupCoordinator,
    pub quotas: ClientQuotaManager,
    /// Whether a connection's principal may do what it asks (always, without an authorizer).
    pub authorizer: Authorizer,
    partitions: RwLock<HashMap<(Uuid, i32), Arc<Partition>>>,
}

impl Broker {
    pub fn new(
        broker_id: i32,
        config: BrokerConfig,
        coordinator: Arc<Coordinator>,
        store: Arc<dyn ObjectStore>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            broker_id,
            read_cache: ReadCache::new(store.clone(), config.read_cache_bytes),
            buffer: Semaphore::new(config.buffer_max_bytes),
            fetch_memory: FetchMemory::new(
                config.fetch_buffer_max_bytes,
                metrics.fetch_memory_exhausted.clone(),
            ),
            flush_queue: FlushQueue::new(metrics.buffered_bytes.clone(), metrics.unflushed.clone()),
            request_memory: RequestMemory::new(
                config.queued_max_request_bytes,
                metrics.request_bytes_queued.clone(),
                metrics.request_memory_waits.clone(),
            ),
            in_flight: Arc::default(),
            groups: GroupCoordinator::new(broker_id, config.group.clone(), coordinator.clone()),
            quotas: ClientQuotaManager::new(
                config.quota_window,
                coordinator.clone(),
                metrics.client_quotas.clone(),
            ),
            authorizer: Authorizer::new(&config.authorizer, coordinator.clone()),
            config,
            coordinator,
            store,
            metrics,
            partitions: RwLock::new(HashMap::new()),
        }
    }

    pub fn log_reader(&self) -> LogReader<'_> {
        LogReader {
            cache: &self.read_cache,
            store: self.store.as_ref(),
            coordinator: &self.coordinator,
            integrity_errors: &self.metrics.read_integrity_errors,
            max_inflated_bytes: self.config.message_max_uncompressed_bytes,
        }
    }

    /// The partition if this broker leads it, its checkpoint loaded on first use; else the
    /// Kafka error code to answer with.
    pub fn partition(&self, topic: &TopicMeta, index: i32) -> Result<Arc<Partition>, i16> {
        if index < 0 || index >= topic.partitions {
            return Err(ResponseError::UnknownTopicOrPartition.code());
        }
        let key = (topic.topic_id, index);
        if let Some(partition) = self.partitions.read().unwrap().get(&key) {
            return Ok(partition.clone());
        }
        let leader = self
            .coordinator
            .leader(topic.topic_id, index)
            .ok_or(ResponseError::LeaderNotAvailable.code())?;
        // A partition being handed over is not loaded again: it is leaving.
        if leader.broker_id != self.broker_id || leader.moving_to.is_some() {
            return Err(ResponseError::NotLeaderOrFollower.code());
        }
        let log = self
            .coordinator
            .partition_log(topic.topic_id, index)
            .ok_or(ResponseError::UnknownTopicOrPartition.code())?;
        let mut partitions = self.partitions.write().unwrap();
        if let Some(partition) = partitions.get(&key) {
            return Ok(partition.clone());
        }
        let partition = Arc::new(Partition::new(
            topic.topic_id,
            topic.name.clone(),
            index,
            leader.leader_epoch,
            log,
            self.metrics.topic(&topic.name),
        ));
        partitions.insert(key, partition.clone());
        // When the share shrinks, every tail is trimmed to it, idle partitions' too (theirs
        // only change here).
        let loaded = partitions.len();
        let tail_limit = Self::tail_share(self.config.tail_cache_bytes, loaded);
        if tail_limit < Self::tail_share(self.config.tail_cache_bytes, loaded - 1) {
            for other in partitions.values() {
                other.trim_tail(tail_limit);
            }
        }
        Ok(partition)
    }

    /// Every partition this broker leads, each loaded on first use (for background tasks,
    /// which must also cover partitions no client has touched since the start).
    pub fn led_partitions(&self) -> Vec<Arc<Partition>> {
        self.coordinator
            .topics()
            .iter()
            .flat_map(|topic| {
                (0..topic.partitions).filter_map(|index| self.partition(topic, index).ok())
            })
            .collect()
    }

    /// How much of the committed tail one partition keeps in memory: an equal share of
    /// `tail.cache.bytes`, so the whole tail stays within it at any partition count (a
    /// batch larger than the share is read from the store). The share is by the partition
    /// count rounded up to a power of two, so it shrinks only when the count passes one:
    /// loading a partition trims every tail only then, a few times in all rather than on
    /// every load.
    pub fn tail_limit(&self) -> usize {
        Self::tail_share(
            self.config.tail_cache_bytes,
            self.partitions.read().unwrap().len(),
        )
    }

    fn tail_share(tail_cache_bytes: usize, partitions: usize) -> usize {
        tail_cache_bytes / partitions.max(1).next_power_of_two()
    }

    /// Drops the partitions this broker no longer leads at the epoch it loaded them with
    /// (moved, or its registration gone): they stop accepting writes and their waiters get
    /// NOT_LEADER_OR_FOLLOWER, so producers find the new leader. A partition led again is
    /// loaded afresh from the committed checkpoint on next use.
    pub fn forget_lost_partitions(&self) {
        let registered = self.coordinator.broker_id() == Some(self.broker_id);
        let mut partitions = self.partitions.write().unwrap();
        partitions.retain(|&(topic_id, index), partition| {
            let leader = self.coordinator.leader(topic_id, index);
            let keep = registered
                && leader.is_some_and(|leader| {
                    leader.broker_id == self.broker_id
                        && leader.leader_epoch == partition.leader_epoch
                });
            if !keep {
                tracing::info!(topic = %partition.topic, partition = index, "no longer leading the partition");
                partition.close();
            }
            keep
        });
    }

    /// The partition if it is loaded (used, since this broker leads it).
    pub fn loaded_partition(&self, topic_id: Uuid, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap()
            .get(&(topic_id, index))
            .cloned()
    }

    /// Closes `partition` and drops it, so that its next use loads the partition afresh.
    pub fn forget_partition(&self, partition: &Arc<Partition>) {
        partition.close();
        let key = (partition.topic_id, partition.index);
        let mut partitions = self.partitions.write().unwrap();
        if partitions
            .get(&key)
            .is_some_and(|p| Arc::ptr_eq(p, partition))
        {
            partitions.remove(&key);
        }
    }

    /// Forgets a deleted topic: its partitions stop accepting writes and wake their waiters.
    pub fn forget_topic(&self, topic: &TopicMeta) {
        let mut partitions = self.partitions.write().unwrap();
        partitions.retain(|&(topic_id, _), partition| {
            let keep = topic_id != topic.topic_id;
            if !keep {
                partition.close();
            }
            keep
        });
        self.metrics.remove_topic(&topic.name);
    }

    /// The topic `name`, created with the default settings if it is missing and
    /// auto-creation is both enabled on the broker and allowed by the request.
    pub async fn topic_or_auto_create(
        &self,
        name: &str,
        allow_auto_create: bool,
    ) -> Result<TopicMeta, CoordinatorError> {
        if let Some(topic) = self.coordinator.topic(name) {
            return Ok(topic);
        }
        if !(allow_auto_create && self.config.auto_create_topics_enable) {
            return Err(CoordinatorError::UnknownTopicOrPartition(name.to_string()));
        }
        let partitions = self.coordinator.defaults().num_partitions;
        match self
            .coordinator
            .create_topic(name, partitions, Default::default(), false)
            .await
        {
            Ok(topic) => {
                tracing::info!(topic = name, partitions, "auto-created topic");
                Ok(topic)
            }
            // Another request created it first.
            Err(CoordinatorError::TopicAlreadyExists(_)) => self
                .coordinator
                .topic(name)
                .ok_or_else(|| CoordinatorError::UnknownTopicOrPartition(name.to_string())),
            Err(e) => Err(e),
        }
    }
}
