//! The group coordinator: consumer groups of both Kafka protocols, the classic one
//! ([`classic`]: JoinGroup, SyncGroup, Heartbeat, LeaveGroup) and KIP-848's ([`consumer`]:
//! ConsumerGroupHeartbeat), and their committed offsets, which the coordinator keeps durable.
//! One group speaks one protocol: an empty group changes protocol when a member of the other
//! kind joins, a group with members refuses them, as Kafka does without online migration.
//!
//! Each group sits behind its own mutex, never held across an await, with a timer task that
//! sleeps until the group's next deadline. A group with members keeps a record of them in the
//! coordinator's metadata store ([`group_record`]), written by a task of its own when the
//! group settles, before the answers that settled it, so that after a restart or a move to
//! another gateway the group is loaded as it was and its members carry on without a
//! rebalance; a group without members keeps only its committed offsets.

pub mod assignor;
pub mod classic;
mod clock;
pub mod config;
pub mod consumer;
mod consumer_protocol;
pub mod expiration;
mod group_record;
pub mod transaction;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use coordinator::{CommittedOffset, Coordinator, CoordinatorError, MetaStoreError};
use proto_compat::kafka_protocol::error::ResponseError;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use self::classic::{ClassicGroup, JoinRequest, JoinResponse, SyncRequest, SyncResponse};
use self::config::{GroupConfig, MigrationPolicy};
use self::consumer::{ConsumerGroup, HeartbeatRequest, HeartbeatResponse};
use self::group_record::GroupRecord;

/// The first wait before writing a group's record again after the store failed.
const RECORD_RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);
/// How long an answer waits for the group's record to be written.
const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A Kafka error with the message that some responses carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupError {
    pub error: ResponseError,
    pub message: String,
}

impl GroupError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        GroupError {
            error,
            message: message.into(),
        }
    }
}

/// A group in ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// "classic" or "consumer".
    pub group_type: &'static str,
}

/// An OffsetCommit request, whatever its version.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub version: i16,
    /// The generation (classic) or member epoch (consumer); negative for tools and
    /// consumers that assign partitions themselves.
    pub generation_id_or_member_epoch: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// (topic, partition, offset)
    pub offsets: Vec<(String, i32, CommittedOffset)>,
}

/// Per-partition outcomes of a request, in request order.
pub type PartitionResults = Vec<Result<(), ResponseError>>;

enum Group {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
    /// Deleted or expired; whoever still holds it tells clients to retry.
    Dead,
}

impl Group {
    fn is_empty(&self) -> bool {
        match self {
            Group::Classic(group) => group.is_empty(),
            Group::Consumer(group) => group.is_empty(),
            Group::Dead => true,
        }
    }

    /// None while the group has members.
    fn empty_since_ms(&self) -> Option<i64> {
        match self {
            Group::Classic(group) => group.empty_since_ms(),
            Group::Consumer(group) => group.empty_since_ms(),
            Group::Dead => None,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Group::Classic(group) => group.next_deadline(),
            Group::Consumer(group) => group.next_deadline(),
            Group::Dead => None,
        }
    }

    fn expire(&mut self, now: Instant) {
        match self {
            Group::Classic(group) => group.expire(now),
            Group::Consumer(group) => group.expire(now),
            Group::Dead => {}
        }
        self.downgrade_if_classic_only(now);
    }

    /// A consumer group whose last consumer-protocol member left while classic members
    /// remain becomes a classic group again, if the migration policy allows it.
    fn downgrade_if_classic_only(&mut self, now: Instant) {
        if let Group::Consumer(group) = self {
            if let Some(classic) = group.downgrade(now) {
                *self = Group::Classic(classic);
            }
        }
    }

    /// The group as the store's record describes it.
    fn from_record(group_id: &str, config: Arc<GroupConfig>, record: GroupRecord) -> Group {
        let now = Instant::now();
        match record {
            GroupRecord::Classic(record) => {
                Group::Classic(ClassicGroup::from_record(group_id, config, record, now))
            }
            GroupRecord::Consumer(record) => {
                Group::Consumer(ConsumerGroup::from_record(group_id, config, record, now))
            }
        }
    }

    fn record_changed(&self) -> bool {
        match self {
            Group::Classic(group) => group.record_changed(),
            Group::Consumer(group) => group.record_changed(),
            Group::Dead => false,
        }
    }

    /// Some when the group's record must be written: the record, None to delete it.
    fn take_record(&mut self) -> Option<Option<GroupRecord>> {
        match self {
            Group::Classic(group) => Some(group.take_record()?.map(GroupRecord::Classic)),
            Group::Consumer(group) => Some(group.take_record()?.map(GroupRecord::Consumer)),
            Group::Dead => None,
        }
    }
}

/// A group's record in the metadata store as its slot knows it.
#[derive(Debug, Default)]
struct RecordState {
    /// What the store holds, as of the slot's load or last write.
    stored: Option<Bytes>,
    /// The slot's writer task runs.
    writer: bool,
    /// Being written.
    writing: Option<Option<Bytes>>,
    /// Counts the changes of the group's record; the slot's `settled` says up to which one
    /// the writer is done with them.
    changes: u64,
}

/// One group, the wake-up of its timer task, and its record in the store.
struct GroupSlot {
    group_id: String,
    /// This broker.
    broker_id: i32,
    coordinator: Arc<Coordinator>,
    group: Mutex<Group>,
    timers: Notify,
    record: Mutex<RecordState>,
    /// The last change of the record the writer is done with: written, or never to be.
    settled: watch::Sender<u64>,
}

impl GroupSlot {
    /// Runs `f` on the group, starts the record's writer if `f` changed the record, then
    /// wakes the timer task: `f` may have moved a deadline.
    fn with<R>(self: &Arc<Self>, f: impl FnOnce(&mut Group) -> R) -> R {
        let mut group = self.lock();
        let result = f(&mut group);
        // Under the group's lock, where the writer decides to stop: no change is missed.
        if group.record_changed() {
            let mut record = self.record();
            record.changes += 1;
            if !record.writer {
                record.writer = true;
                tokio::spawn(write_records(self.clone()));
            }
        }
        drop(group);
        self.timers.notify_one();
        result
    }

    fn lock(&self) -> MutexGuard<'_, Group> {
        self.group.lock().expect("group state poisoned")
    }

    fn record(&self) -> MutexGuard<'_, RecordState> {
        self.record.lock().expect("group record state poisoned")
    }

    /// Whether the store holds the record this slot wrote or loaded: if not, another
    /// gateway coordinated the group since and this copy is stale.
    fn is_current(&self) -> bool {
        let stored = self.coordinator.group_metadata(&self.group_id);
        let state = self.record();
        same_record(&state.stored, &stored) || state.writing.as_ref() == Some(&stored)
    }

    /// The group's record if it changed, with the last change it holds; else, unless
    /// `keep_writing`, stops the writer.
    fn next_record(&self, keep_writing: bool) -> Option<(Option<GroupRecord>, u64)> {
        let mut group = self.lock();
        if !self.coordinates() {
            self.drop_moved(&mut group);
        }
        let record = group.take_record();
        let mut state = self.record();
        match record {
            Some(record) => Some((record, state.changes)),
            None => {
                if !keep_writing {
                    state.writer = false;
                    self.settle(state.changes);
                }
                None
            }
        }
    }

    /// The writer is done with the record's changes up to `change`.
    fn settle(&self, change: u64) {
        self.settled.send_if_modified(|settled| {
            let newer = change > *settled;
            *settled = (*settled).max(change);
            newer
        });
    }

    /// Waits until the record holds every change made so far (Kafka answers once the
    /// group's records are written), or [`RECORD_WAIT`] has passed: a store that does not
    /// take the record delays the answer, the writer tries again meanwhile.
    async fn record_written(&self) {
        let change = self.record().changes;
        let mut settled = self.settled.subscribe();
        let written = settled.wait_for(|settled| *settled >= change);
        if tokio::time::timeout(RECORD_WAIT, written).await.is_err() {
            tracing::warn!(group = %self.group_id, "answering before the group's record is written");
        }
    }

    /// Whether this broker still coordinates the group.
    fn coordinates(&self) -> bool {
        self.coordinator
            .group_coordinator(&self.group_id)
            .is_some_and(|broker| broker.broker_id == self.broker_id)
    }

    /// The group moved to another broker: this copy must neither expire members nor write
    /// the record any more; the registry loads the group again if it comes back.
    fn drop_moved(&self, group: &mut Group) {
        if !matches!(group, Group::Dead) {
            tracing::info!(group = %self.group_id, "the group moved to another broker, dropping this copy");
            *group = Group::Dead;
        }
    }
}

/// Writes the group's record as long as it changes. The record is taken when the last write
/// is done, so a burst of changes (members reconciling one after the other) costs a few
/// writes. A record another gateway replaced is left alone: the group is loaded again at its
/// next request. A failed write is tried again, with the group's newest record.
async fn write_records(slot: Arc<GroupSlot>) {
    let mut failures = 0u32;
    let mut retry = None;
    loop {
        let (value, change) = match slot.next_record(retry.is_some()) {
            // A newer record replaces the one that failed.
            Some((record, change)) => {
                retry = None;
                (record.as_ref().map(GroupRecord::encode), change)
            }
            None => match retry.take() {
                Some(retry) => retry,
                None => return,
            },
        };
        let expected = {
            let mut state = slot.record();
            if value == state.stored {
                slot.settle(change);
                continue;
            }
            state.writing = Some(value.clone());
            state.stored.clone()
        };
        let written = slot
            .coordinator
            .store_group_metadata(&slot.group_id, expected.as_ref(), value.clone())
            .await;
        {
            let mut state = slot.record();
            state.writing = None;
            match written {
                Ok(true) => {
                    failures = 0;
                    // The coordinator's own copy, when it is this one: checked by address.
                    let current = slot.coordinator.group_metadata(&slot.group_id);
                    state.stored = if current == value { current } else { value };
                    slot.settle(change);
                }
                Ok(false) => {
                    tracing::warn!(group = %slot.group_id, "another gateway changed the group's record; it is loaded again");
                    state.writer = false;
                    slot.settle(state.changes);
                    return;
                }
                // Too large for the store (a group of thousands of members on etcd): the
                // group works on, but a restart or move will make it rebalance.
                Err(e @ CoordinatorError::Store(MetaStoreError::TooLarge(_))) => {
                    tracing::warn!(group = %slot.group_id, error = %e, "the group's record is too large to store");
                    slot.settle(change);
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(group = %slot.group_id, error = %e, "cannot write the group's record, retrying");
                    retry = Some((value, change));
                }
            }
        }
        if failures > 0 {
            tokio::time::sleep(RECORD_RETRY_BACKOFF * failures.min(10)).await;
        }
    }
}

/// Whether two copies of a record are the same: at once when they are the same bytes in
/// memory, as when a slot checks the copy it loaded or wrote on every request.
fn same_record(a: &Option<Bytes>, b: &Option<Bytes>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b,
        (a, b) => a == b,
    }
}

/// Expires the group's deadlines as they pass, until the group is dead.
async fn run_timers(slot: Arc<GroupSlot>) {
    loop {
        let deadline = match &*slot.lock() {
            Group::Dead => return,
            group => group.next_deadline(),
        };
        match deadline {
            Some(deadline) => tokio::select! {
                _ = tokio::time::sleep_until(deadline) => slot.with(|group| {
                    if slot.coordinates() {
                        group.expire(Instant::now());
                    } else {
                        slot.drop_moved(group);
                    }
                }),
                _ = slot.timers.notified() => {}
            },
            None => slot.timers.notified().await,
        }
    }
}

pub struct GroupCoordinator {
    broker_id: i32,
    config: Arc<GroupConfig>,
    coordinator: Arc<Coordinator>,
    groups: Mutex<HashMap<String, Arc<GroupSlot>>>,
    /// Groups known only by their committed offsets count as empty since then.
    started_ms: i64,
}

impl GroupCoordinator {
    pub fn new(broker_id: i32, config: GroupConfig, coordinator: Arc<Coordinator>) -> Self {
        GroupCoordinator {
            broker_id,
            config: Arc::new(config),
            coordinator,
            groups: Mutex::new(HashMap::new()),
            started_ms: clock::now_ms(),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// NOT_COORDINATOR unless this broker coordinates the group.
    fn check_coordinator(&self, group_id: &str) -> Result<(), ResponseError> {
        match self.coordinator.group_coordinator(group_id) {
            Some(broker) if broker.broker_id == self.broker_id => Ok(()),
            Some(_) => Err(ResponseError::NotCoordinator),
            None => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// The membership APIs also refuse an empty group id.
    fn check_member_request(&self, group_id: &str) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        self.check_coordinator(group_id)
    }

    fn groups(&self) -> MutexGuard<'_, HashMap<String, Arc<GroupSlot>>> {
        self.groups.lock().expect("group registry poisoned")
    }

    /// The group, if it exists. One not in memory (after a restart or a move from another
    /// gateway) is loaded from its record; one that only has committed offsets becomes an
    /// empty classic group. A copy in memory that another gateway's record superseded, or
    /// that was dropped when the group moved away, is replaced by the group loaded again
    /// (the members waiting on the old copy are answered).
    fn existing_group(&self, group_id: &str) -> Option<Arc<GroupSlot>> {
        let mut groups = self.groups();
        if let Some(slot) = groups.get(group_id).cloned() {
            let dropped = matches!(*slot.lock(), Group::Dead);
            if !dropped && slot.is_current() {
                return Some(slot);
            }
            if !dropped {
                tracing::info!(
                    group = group_id,
                    "the group's record changed elsewhere, loading it again"
                );
                slot.with(|group| *group = Group::Dead);
            }
            groups.remove(group_id);
        }
        let stored = self.coordinator.group_metadata(group_id);
        let loaded = stored.as_ref().and_then(|value| match GroupRecord::decode(value) {
            Ok(record) => Some(Group::from_record(group_id, self.config.clone(), record)),
            Err(e) => {
                tracing::warn!(group = group_id, error = %e, "ignoring the group's unreadable record");
                None
            }
        });
        let group = match loaded {
            Some(group) => {
                tracing::info!(group = group_id, "loaded the group from its record");
                group
            }
            None if stored.is_some() || self.coordinator.has_committed_offsets(group_id) => {
                Group::Classic(ClassicGroup::new(group_id, self.config.clone()))
            }
            None => return None,
        };
        Some(self.insert_group(&mut groups, group_id, group, stored))
    }

    fn group_or_create(&self, group_id: &str, create: impl FnOnce() -> Group) -> Arc<GroupSlot> {
        if let Some(slot) = self.existing_group(group_id) {
            return slot;
        }
        self.insert_group(&mut self.groups(), group_id, create(), None)
    }

    /// Registers a group whose record in the store is `stored`, and starts its timer task.
    fn insert_group(
        &self,
        groups: &mut HashMap<String, Arc<GroupSlot>>,
        group_id: &str,
        group: Group,
        stored: Option<Bytes>,
    ) -> Arc<GroupSlot> {
        let slot = Arc::new(GroupSlot {
            group_id: group_id.to_string(),
            broker_id: self.broker_id,
            coordinator: self.coordinator.clone(),
            group: Mutex::new(group),
            timers: Notify::new(),
            record: Mutex::new(RecordState {
                stored,
                ..RecordState::default()
            }),
            settled: watch::Sender::new(0),
        });
        tokio::spawn(run_timers(slot.clone()));
        groups.insert(group_id.to_string(), slot.clone());
        slot
    }

    fn new_classic(&self, group_id: &str) -> ClassicGroup {
        ClassicGroup::new(group_id, self.config.clone())
    }

    fn new_consumer(&self, group_id: &str) -> ConsumerGroup {
        ConsumerGroup::new(group_id, self.config.clone())
    }

    /// Drops a group from the registry if it is still this one.
    fn forget(&self, group_id: &str, slot: &Arc<GroupSlot>) {
        let mut groups = self.groups();
        if groups.get(group_id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            groups.remove(group_id);
        }
    }

    /// JoinGroup; waits until the join phase completes.
    pub async fn join_group(&self, group_id: &str, request: JoinRequest) -> JoinResponse {
        let member_id = request.member_id.clone();
        if let Err(error) = self.check_member_request(group_id) {
            return JoinResponse::error(&member_id, error);
        }
        let session = request.session_timeout;
        if session < self.config.min_session_timeout || session > self.config.max_session_timeout {
            return JoinResponse::error(&member_id, ResponseError::InvalidSessionTimeout);
        }
        // A new member creates the group; a known one must find it.
        let slot = if member_id.is_empty() {
            self.group_or_create(group_id, || Group::Classic(self.new_classic(group_id)))
        } else {
            match self.existing_group(group_id) {
                Some(slot) => slot,
                None => return JoinResponse::error(&member_id, ResponseError::UnknownMemberId),
            }
        };
        let (reply, response) = oneshot::channel();
        slot.with(|group| {
            if matches!(group, Group::Consumer(g) if g.is_empty()) {
                *group = Group::Classic(ClassicGroup::replacing(group_id, self.config.clone()));
            }
            match group {
                Group::Classic(group) => group.join(request, Instant::now(), reply),
                // A classic member in a consumer group (a migration under way).
                Group::Consumer(group) => {
                    let now = Instant::now();
                    let _ = reply.send(group.classic_join(request, now, &*self.coordinator));
                }
                Group::Dead => {
                    let _ = reply.send(JoinResponse::error(
                        &member_id,
                        ResponseError::CoordinatorNotAvailable,
                    ));
                }
            }
        });
        // No answer: the group died or the request was superseded; the client retries.
        let response = response.await.unwrap_or_else(|_| {
            JoinResponse::error(&member_id, ResponseError::CoordinatorNotAvailable)
        });
        // A consumer group answers once its record holds the member.
        slot.record_written().await;
        response
    }

    /// SyncGroup; a follower waits for the leader's assignment.
    pub async fn sync_group(&self, group_id: &str, request: SyncRequest) -> SyncResponse {
        if let Err(error) = self.check_member_request(group_id) {
            return SyncResponse::error(error);
        }
        let Some(slot) = self.existing_group(group_id) else {
            return SyncResponse::error(ResponseError::UnknownMemberId);
        };
        let (reply, response) = oneshot::channel();
        slot.with(|group| match group {
            Group::Classic(group) => group.sync(request, Instant::now(), reply),
            Group::Consumer(group) => {
                let _ = reply.send(group.classic_sync(&request, Instant::now()));
            }
            Group::Dead => {
                let _ = reply.send(SyncResponse::error(ResponseError::CoordinatorNotAvailable));
            }
        });
        let response = response
            .await
            .unwrap_or_else(|_| SyncResponse::error(ResponseError::CoordinatorNotAvailable));
        // The assignment reaches the members once the group's record holds it.
        slot.record_written().await;
        response
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        self.check_member_request(group_id)?;
        let slot = self
            .existing_group(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        slot.with(|group| match group {
            Group::Classic(group) => {
                group.heartbeat(member_id, group_instance_id, generation_id, Instant::now())
            }
            Group::Consumer(group) => {
                group.classic_heartbeat(member_id, group_instance_id, generation_id, Instant::now())
            }
            Group::Dead => Err(ResponseError::CoordinatorNotAvailable),
        })
    }

    /// LeaveGroup of (member id, group.instance.id) pairs: a result each.
    pub fn leave_group(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<PartitionResults, ResponseError> {
        self.check_member_request(group_id)?;
        let unknown = || vec![Err(ResponseError::UnknownMemberId); members.len()];
        let Some(slot) = self.existing_group(group_id) else {
            return Ok(unknown());
        };
        slot.with(|group| {
            let now = Instant::now();
            let results = match group {
                Group::Classic(group) => members
                    .iter()
                    .map(|(member_id, instance)| group.leave(member_id, instance.as_deref(), now))
                    .collect(),
                Group::Consumer(group) => members
                    .iter()
                    .map(|(member_id, instance)| {
                        group.classic_leave(member_id, instance.as_deref())
                    })
                    .collect(),
                Group::Dead => return Err(ResponseError::CoordinatorNotAvailable),
            };
            group.downgrade_if_classic_only(now);
            Ok(results)
        })
    }

    /// OffsetCommit: validates the member, then commits every offset in one durable
    /// transaction before answering.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        commit: OffsetCommit,
    ) -> Result<PartitionResults, ResponseError> {
        self.check_coordinator(group_id)?;
        let generation = commit.generation_id_or_member_epoch;
        let slot = match self.existing_group(group_id) {
            Some(slot) => slot,
            // A tool, or a consumer that assigns partitions itself: a "simple" group.
            None if generation < 0 => {
                self.group_or_create(group_id, || Group::Classic(self.new_classic(group_id)))
            }
            // Kafka's answer changed with v9, which also serves the consumer protocol.
            None if commit.version >= 9 => return Err(ResponseError::GroupIdNotFound),
            None => return Err(ResponseError::IllegalGeneration),
        };
        let instance = commit.group_instance_id.as_deref();
        slot.with(|group| match group {
            Group::Classic(group) => {
                group.validate_offset_commit(&commit.member_id, instance, generation)
            }
            Group::Consumer(group) => {
                group.validate_offset_commit(&commit.member_id, generation, commit.version)
            }
            Group::Dead => Err(ResponseError::CoordinatorNotAvailable),
        })?;
        let outcomes = self
            .coordinator
            .commit_offsets(group_id, commit.offsets)
            .await
            .map_err(|e| store_failed(group_id, "commit offsets", &e))?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.map_err(|e| response_error(&e)))
            .collect())
    }

    /// OffsetFetch: the group's committed offsets. A member of a consumer group (v9) must
    /// send its current epoch; tools and classic members read freely.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<BTreeMap<(String, i32), CommittedOffset>, ResponseError> {
        self.check_coordinator(group_id)?;
        if let Some(slot) = self.existing_group(group_id) {
            slot.with(|group| match group {
                Group::Consumer(group) => group.validate_offset_fetch(member_id, member_epoch),
                _ => Ok(()),
            })?;
        }
        Ok(self.coordinator.committed_offsets(group_id))
    }

    /// Loads every group this broker coordinates that has a record, as Kafka loads a
    /// group's partition of `__consumer_offsets`: members that do not come back are removed
    /// when their fresh sessions end.
    fn load_recorded_groups(&self) {
        for group_id in self.coordinator.groups_with_metadata() {
            if self.check_coordinator(&group_id).is_ok() {
                self.existing_group(&group_id);
            }
        }
    }

    /// Every group this broker coordinates, with those known only by committed offsets.
    pub fn list_groups(&self) -> Vec<ListedGroup> {
        self.load_recorded_groups();
        let slots: Vec<(String, Arc<GroupSlot>)> = self
            .groups()
            .iter()
            .map(|(id, slot)| (id.clone(), slot.clone()))
            .collect();
        let mut listed: BTreeMap<String, ListedGroup> = BTreeMap::new();
        for (group_id, slot) in slots {
            let entry = slot.with(|group| match group {
                Group::Classic(group) => Some((
                    group.protocol_type().to_string(),
                    group.state().as_str(),
                    "classic",
                )),
                Group::Consumer(group) => Some(("consumer".to_string(), group.state(), "consumer")),
                Group::Dead => None,
            });
            if let Some((protocol_type, state, group_type)) = entry {
                listed.insert(
                    group_id.clone(),
                    ListedGroup {
                        group_id,
                        protocol_type,
                        state,
                        group_type,
                    },
                );
            }
        }
        for group_id in self.coordinator.groups_with_offsets() {
            listed
                .entry(group_id.clone())
                .or_insert_with(|| ListedGroup {
                    group_id,
                    protocol_type: String::new(),
                    state: classic::ClassicState::Empty.as_str(),
                    group_type: "classic",
                });
        }
        listed
            .into_values()
            .filter(|group| self.check_coordinator(&group.group_id).is_ok())
            .collect()
    }

    /// DescribeGroups: classic groups only, as in Kafka.
    pub fn describe_group(&self, group_id: &str) -> Result<classic::GroupDescription, GroupError> {
        self.describe(group_id, "classic", |group| match group {
            Group::Classic(group) => Some(group.describe()),
            _ => None,
        })
    }

    /// Describes an existing group with `describe`, which answers only for groups of the
    /// `kind` its API serves; other groups are GROUP_ID_NOT_FOUND, as in Kafka.
    fn describe<T>(
        &self,
        group_id: &str,
        kind: &str,
        describe: impl FnOnce(&Group) -> Option<T>,
    ) -> Result<T, GroupError> {
        self.check_coordinator(group_id)
            .map_err(|error| GroupError::new(error, ""))?;
        let not_found = |message: String| GroupError::new(ResponseError::GroupIdNotFound, message);
        let slot = self
            .existing_group(group_id)
            .ok_or_else(|| not_found(format!("Group {group_id} not found.")))?;
        slot.with(|group| match group {
            Group::Dead => Err(not_found(format!("Group {group_id} not found."))),
            group => describe(group)
                .ok_or_else(|| not_found(format!("Group {group_id} is not a {kind} group."))),
        })
    }

    /// DeleteGroups: empty groups only; their offsets go in one transaction.
    pub async fn delete_groups(&self, group_ids: &[String]) -> PartitionResults {
        let mut results = Vec::with_capacity(group_ids.len());
        let mut deleted = Vec::new();
        for group_id in group_ids {
            let result = self.check_coordinator(group_id).and_then(|()| {
                let slot = self
                    .existing_group(group_id)
                    .ok_or(ResponseError::GroupIdNotFound)?;
                slot.with(|group| match group {
                    Group::Dead => Err(ResponseError::GroupIdNotFound),
                    group if group.is_empty() => {
                        *group = Group::Dead;
                        Ok(())
                    }
                    _ => Err(ResponseError::NonEmptyGroup),
                })?;
                self.forget(group_id, &slot);
                Ok(())
            });
            if result.is_ok() {
                deleted.push(group_id.clone());
            }
            results.push(result);
        }
        if deleted.is_empty() {
            return results;
        }
        if let Err(e) = self.coordinator.delete_group_offsets(&deleted).await {
            let error = store_failed("", "delete the offsets of deleted groups", &e);
            for (result, group_id) in results.iter_mut().zip(group_ids) {
                if deleted.contains(group_id) {
                    *result = Err(error);
                }
            }
        } else {
            tracing::info!(groups = ?deleted, "deleted groups");
        }
        results
    }

    /// OffsetDelete: not for topics the group consumes.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<PartitionResults, ResponseError> {
        self.check_coordinator(group_id)?;
        let slot = self
            .existing_group(group_id)
            .ok_or(ResponseError::GroupIdNotFound)?;
        // None: no topic is protected.
        let subscribed: Option<Option<HashSet<String>>> = slot.with(|group| match group {
            Group::Dead => Err(ResponseError::GroupIdNotFound),
            group if group.is_empty() => Ok(None),
            Group::Classic(group) => group
                .subscribed_topics()
                .map(|topics| Some(topics.cloned())),
            Group::Consumer(group) => Ok(Some(Some(
                group.subscribed_topic_names().into_iter().collect(),
            ))),
        })?;
        let results: PartitionResults = partitions
            .iter()
            .map(|(topic, partition)| {
                let exists = self
                    .coordinator
                    .topic(topic)
                    .is_some_and(|t| (0..t.partitions).contains(partition));
                let consumed = match &subscribed {
                    None => false,
                    Some(None) => true,
                    Some(Some(topics)) => topics.contains(topic),
                };
                if !exists {
                    Err(ResponseError::UnknownTopicOrPartition)
                } else if consumed {
                    Err(ResponseError::GroupSubscribedToTopic)
                } else {
                    Ok(())
                }
            })
            .collect();
        let eligible: Vec<(String, i32)> = partitions
            .iter()
            .zip(&results)
            .filter(|(_, result)| result.is_ok())
            .map(|(tp, _)| tp.clone())
            .collect();
        self.coordinator
            .delete_offsets(group_id, &eligible)
            .await
            .map_err(|e| store_failed(group_id, "delete offsets", &e))?;
        Ok(results)
    }

    /// ConsumerGroupHeartbeat. A member joining (epoch 0) creates the group, takes over an
    /// empty classic one, or converts a classic group of Kafka consumers into a consumer
    /// group whose classic members carry on (Kafka's online upgrade, if the migration policy
    /// allows it). A consumer group left with classic members only goes back to classic.
    /// Answers once the group's record holds what the heartbeat changed.
    pub async fn consumer_group_heartbeat(
        &self,
        group_id: &str,
        version: i16,
        request: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::new(
                ResponseError::InvalidRequest,
                "GroupId can't be empty.",
            ));
        }
        self.check_coordinator(group_id)
            .map_err(|error| GroupError::new(error, ""))?;
        ConsumerGroup::validate_request(&self.config, version, &request)?;
        let joining = request.member_epoch == 0;
        // The members of an unknown group are unknown: after a restart they rejoin.
        let member_id = request.member_id.clone();
        let unknown_member = || {
            GroupError::new(
                ResponseError::UnknownMemberId,
                format!("Member {member_id} is not a member of group {group_id}."),
            )
        };
        let slot = if joining {
            self.group_or_create(group_id, || Group::Consumer(self.new_consumer(group_id)))
        } else {
            self.existing_group(group_id).ok_or_else(unknown_member)?
        };
        let policy = self.config.migration_policy;
        let response = slot.with(|group| {
            let now = Instant::now();
            if joining && matches!(group, Group::Classic(g) if g.is_empty()) {
                tracing::info!(
                    group = group_id,
                    "converting the empty classic group to a consumer group"
                );
                *group = Group::Consumer(self.new_consumer(group_id));
            }
            if let Group::Classic(classic) = group {
                if joining {
                    let consumer = self.upgrade(group_id, classic, policy, now)?;
                    *group = Group::Consumer(consumer);
                }
            }
            let response = match group {
                Group::Consumer(group) => group.heartbeat(request, now, &*self.coordinator),
                Group::Classic(group) if group.is_empty() => Err(unknown_member()),
                Group::Classic(_) => Err(GroupError::new(
                    ResponseError::GroupIdNotFound,
                    format!("Group {group_id} is not a consumer group."),
                )),
                Group::Dead => Err(GroupError::new(ResponseError::CoordinatorNotAvailable, "")),
            };
            group.downgrade_if_classic_only(now);
            response
        });
        slot.record_written().await;
        response
    }

    /// A classic group with members as a consumer group, for a consumer-protocol member
    /// joining it (Kafka's online upgrade and its refusals, GROUP_ID_NOT_FOUND).
    fn upgrade(
        &self,
        group_id: &str,
        classic: &mut ClassicGroup,
        policy: MigrationPolicy,
        now: Instant,
    ) -> Result<ConsumerGroup, GroupError> {
        let refuse = |why: &str| {
            Err(GroupError::new(
                ResponseError::GroupIdNotFound,
                format!("Cannot upgrade classic group {group_id} to consumer group because {why}."),
            ))
        };
        if !policy.upgrades() {
            return refuse("online upgrade is disabled");
        }
        if classic.member_count() >= self.config.consumer_max_size {
            return refuse("its size exceeds the consumer group maximum size");
        }
        let Some(record) = classic.take_for_upgrade() else {
            return refuse("it is not a group of consumers");
        };
        tracing::info!(
            group = group_id,
            members = record.members.len(),
            generation = record.generation_id,
            "converting the classic group to a consumer group"
        );
        Ok(ConsumerGroup::from_classic_record(
            group_id,
            self.config.clone(),
            record,
            &*self.coordinator,
            now,
        ))
    }

    /// ConsumerGroupDescribe: consumer groups only, as in Kafka.
    pub fn consumer_group_describe(
        &self,
        group_id: &str,
    ) -> Result<consumer::GroupDescription, GroupError> {
        self.describe(group_id, "consumer", |group| match group {
            Group::Consumer(group) => Some(group.describe()),
            _ => None,
        })
    }

    /// At shutdown the groups leave this broker: requests waiting on a rebalance are answered
    /// at once (their clients look for the coordinator again) instead of holding up the drain.
    pub fn shutdown(&self) {
        for (_, slot) in self.groups().drain() {
            slot.with(|group| *group = Group::Dead);
        }
    }

    /// Expires the offsets of groups empty for `offsets.retention.minutes`, then drops empty
    /// groups left without offsets, as Kafka's periodic cleanup does. Returns how many
    /// offsets expired.
    pub async fn expire_offsets(&self) -> Result<usize, CoordinatorError> {
        self.load_recorded_groups();
        let empty: Vec<(String, i64)> = self
            .coordinator
            .groups_with_offsets()
            .into_iter()
            .filter_map(|group_id| {
                let slot = self.groups().get(&group_id).cloned();
                let since = match slot {
                    Some(slot) => slot.with(|group| group.empty_since_ms())?,
                    None => self.started_ms,
                };
                Some((group_id, since))
            })
            .collect();
        let retention_ms =
            i64::try_from(self.config.offsets_retention.as_millis()).unwrap_or(i64::MAX);
        let expired = self
            .coordinator
            .expire_offsets(&empty, clock::now_ms(), retention_ms)
            .await?;
        if expired > 0 {
            tracing::info!(expired, "expired the committed offsets of empty groups");
        }
        self.groups().retain(|group_id, slot| {
            let gone = slot.with(|group| {
                let gone = group.is_empty() && !self.coordinator.has_committed_offsets(group_id);
                if gone {
                    *group = Group::Dead;
                }
                gone
            });
            !gone
        });
        Ok(expired)
    }
}

/// A failed store write: retriable for the client, which retries it.
fn store_failed(group_id: &str, what: &str, error: &CoordinatorError) -> ResponseError {
    tracing::warn!(group = group_id, error = %error, "cannot {what}");
    ResponseError::CoordinatorNotAvailable
}

fn response_error(error: &CoordinatorError) -> ResponseError {
    ResponseError::try_from_code(error.error_code()).unwrap_or(ResponseError::UnknownServerError)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use coordinator::{BrokerDefaults, BrokerInfo, EmbeddedStore};

    use super::*;

    /// A group coordinator on broker 0 with topic "t" of 3 partitions.
    async fn setup(config: GroupConfig) -> (Arc<GroupCoordinator>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("metadata.log")).unwrap();
        let coordinator = Coordinator::open(Arc::new(store), BrokerDefaults::default())
            .await
            .unwrap();
        coordinator
            .register_broker(loopback_broker(0))
            .await
            .unwrap();
        coordinator
            .create_topic("t", 3, BTreeMap::new(), false)
            .await
            .unwrap();
        (Arc::new(GroupCoordinator::new(0, config, coordinator)), dir)
    }

    /// Broker `broker_id` listening on 127.0.0.1:9092 + id.
    fn loopback_broker(broker_id: i32) -> BrokerInfo {
        BrokerInfo {
            broker_id,
            host: "127.0.0.1".into(),
            port: 9092 + broker_id,
            rack: None,
            endpoints: Vec::new(),
        }
    }

    fn join_request(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: String::new(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: false,
            supports_skip_assignment: true,
        }
    }

    fn commit(generation: i32, member_id: &str, offset: i64) -> OffsetCommit {
        OffsetCommit {
            version: 8,
            generation_id_or_member_epoch: generation,
            member_id: member_id.into(),
            group_instance_id: None,
            offsets: vec![(
                "t".into(),
                0,
                CommittedOffset {
                    offset,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp: clock::now_ms(),
                },
            )],
        }
    }

    /// A consumer-protocol member's heartbeat leaving the group.
    fn consumer_leave(member_id: &str) -> HeartbeatRequest {
        HeartbeatRequest {
            member_epoch: consumer::LEAVE_GROUP_MEMBER_EPOCH,
            ..consumer_join(member_id)
        }
    }

    fn consumer_join(member_id: &str) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: member_id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned_partitions: Some(Default::default()),
            ..HeartbeatRequest::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_task_removes_silent_members() {
        let (groups, _dir) = setup(GroupConfig::default()).await;
        let (a, b) = tokio::join!(
            groups.join_group("g", join_request("")),
            groups.join_group("g", join_request(""))
        );
        assert_eq!((a.generation_id, b.generation_id), (1, 1));
        let leader = if a.leader == a.member_id { &a } else { &b };
        let follower = if a.leader == a.member_id { &b } else { &a };
        let sync = |member_id: &str| SyncRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            generation_id: 1,
            protocol_type: None,
            protocol_name: None,
            assignments: Vec::new(),
        };
        let (synced, _) = tokio::join!(
            groups.sync_group("g", sync(&leader.member_id)),
            groups.sync_group("g", sync(&follower.member_id))
        );
        assert_eq!(synced.error, None);
        let committed = groups
            .commit_offsets("g", commit(1, &leader.member_id, 42))
            .await;
        assert_eq!(committed, Ok(vec![Ok(())]));
        assert_eq!(
            groups.fetch_offsets("g", None, -1).unwrap()[&("t".to_string(), 0)].offset,
            42
        );

        // Only the leader heartbeats; the follower's session ends and the timer removes it.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = groups.heartbeat("g", &leader.member_id, None, 1);
        }
        let description = groups.describe_group("g").unwrap();
        assert_eq!(description.members.len(), 1);
        assert_eq!(description.state, classic::ClassicState::PreparingRebalance);
        assert_eq!(
            groups.heartbeat("g", &follower.member_id, None, 1),
            Err(ResponseError::UnknownMemberId)
        );
        let rejoined = groups
            .join_group("g", join_request(&leader.member_id))
            .await;
        assert_eq!((rejoined.generation_id, rejoined.members.len()), (2, 1));
    }

    #[tokio::test]
    async fn offsets_groups_and_their_deletion() {
        let (groups, _dir) = setup(GroupConfig::default()).await;
        // A commit with generation -1 creates a simple group; a generation needs a group.
        assert_eq!(
            groups.commit_offsets("simple", commit(-1, "", 5)).await,
            Ok(vec![Ok(())])
        );
        assert_eq!(
            groups.commit_offsets("none", commit(3, "m", 5)).await,
            Err(ResponseError::IllegalGeneration)
        );
        let v9 = OffsetCommit {
            version: 9,
            ..commit(3, "m", 5)
        };
        assert_eq!(
            groups.commit_offsets("none", v9).await,
            Err(ResponseError::GroupIdNotFound)
        );
        let unknown_topic = OffsetCommit {
            offsets: vec![("zzz".into(), 0, commit(-1, "", 1).offsets[0].2.clone())],
            ..commit(-1, "", 1)
        };
        assert_eq!(
            groups.commit_offsets("simple", unknown_topic).await,
            Ok(vec![Err(ResponseError::UnknownTopicOrPartition)])
        );
        assert!(groups.fetch_offsets("none", None, -1).unwrap().is_empty());

        let member = groups
            .consumer_group_heartbeat("busy", 1, consumer_join("m"))
            .await
            .unwrap();
        let busy = OffsetCommit {
            version: 9,
            ..commit(member.member_epoch, "m", 7)
        };
        assert_eq!(groups.commit_offsets("busy", busy).await, Ok(vec![Ok(())]));
        let listed: Vec<(String, &str, &str)> = groups
            .list_groups()
            .into_iter()
            .map(|g| (g.group_id, g.state, g.group_type))
            .collect();
        assert_eq!(
            listed,
            [
                ("busy".into(), "Stable", "consumer"),
                ("simple".into(), "Empty", "classic")
            ]
        );

        // Offsets of a consumed topic stay; the group must be empty to go.
        let t0 = [("t".to_string(), 0)];
        assert_eq!(
            groups.delete_offsets("busy", &t0).await,
            Ok(vec![Err(ResponseError::GroupSubscribedToTopic)])
        );
        assert_eq!(
            groups.delete_groups(&["busy".into()]).await,
            vec![Err(ResponseError::NonEmptyGroup)]
        );
        assert_eq!(groups.delete_offsets("simple", &t0).await, Ok(vec![Ok(())]));
        assert!(groups.fetch_offsets("simple", None, -1).unwrap().is_empty());
        let results = groups
            .delete_groups(&["simple".into(), "nope".into()])
            .await;
        assert_eq!(results, vec![Ok(()), Err(ResponseError::GroupIdNotFound)]);
        assert_eq!(groups.list_groups().len(), 1);
        assert_eq!(
            groups.describe_group("busy").unwrap_err().message,
            "Group busy is not a classic group."
        );
    }

    #[tokio::test(start_paused = true)]
    async fn protocols_do_not_mix_when_migration_is_disabled() {
        let (groups, _dir) = setup(GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            migration_policy: MigrationPolicy::Disabled,
            ..GroupConfig::default()
        })
        .await;
        let classic = groups.join_group("g", join_request("")).await;
        let refused = groups
            .consumer_group_heartbeat("g", 1, consumer_join("c"))
            .await
            .unwrap_err();
        assert_eq!(refused.error, ResponseError::GroupIdNotFound);
        // Once empty, the group changes protocol and keeps its offsets.
        let leave = [(classic.member_id.clone(), None)];
        assert_eq!(groups.leave_group("g", &leave), Ok(vec![Ok(())]));
        groups.commit_offsets("g", commit(-1, "", 9)).await.unwrap();
        let joined = groups
            .consumer_group_heartbeat("g", 1, consumer_join("c"))
            .await
            .unwrap();
        assert_eq!(joined.member_epoch, 1);
        assert_eq!(groups.fetch_offsets("g", Some("c"), 1).unwrap().len(), 1);
        assert_eq!(
            groups.fetch_offsets("g", Some("c"), 0),
            Err(ResponseError::StaleMemberEpoch)
        );
        // A classic member of another protocol type cannot join the consumer group.
        let refused = groups
            .join_group(
                "g",
                JoinRequest {
                    protocol_type: "connect".into(),
                    ..join_request("")
                },
            )
            .await;
        assert_eq!(
            refused.error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        assert_eq!(
            groups.heartbeat("g", "c", None, 1),
            Err(ResponseError::UnknownMemberId)
        );
        let description = groups.consumer_group_describe("g").unwrap();
        assert_eq!(
            (description.state, description.members.len()),
            ("Stable", 1)
        );
    }

    /// A classic consumer of topic "t" with its subscription.
    fn classic_join(member_id: &str) -> JoinRequest {
        let subscription = consumer_protocol::encode_subscription(&["t"], Vec::new());
        JoinRequest {
            protocols: vec![("range".into(), subscription)],
            ..join_request(member_id)
        }
    }

    fn sync_request(member_id: &str, generation_id: i32) -> SyncRequest {
        SyncRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            generation_id,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: Vec::new(),
        }
    }

    fn partitions(assignment: &Bytes) -> Vec<i32> {
        consumer_protocol::decode_assignment(assignment)
            .into_iter()
            .flat_map(|(_, partitions)| partitions)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_classic_group_is_upgraded_online_and_downgraded_back() {
        let (groups, _dir) = setup(GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            ..GroupConfig::default()
        })
        .await;
        let classic = groups.join_group("g", classic_join("")).await;
        let generation = classic.generation_id;
        let assignment = consumer_protocol::encode_assignment(vec![("t".into(), vec![0, 1, 2])]);
        let synced = groups
            .sync_group(
                "g",
                SyncRequest {
                    assignments: vec![(classic.member_id.clone(), assignment)],
                    ..sync_request(&classic.member_id, generation)
                },
            )
            .await;
        assert_eq!(partitions(&synced.assignment), [0, 1, 2]);

        // A consumer-protocol member converts the group; the classic member keeps its
        // partitions until it has given some up.
        let joined = groups
            .consumer_group_heartbeat("g", 1, consumer_join("c"))
            .await
            .unwrap();
        assert_eq!(joined.assignment, Some(Default::default()));
        let described = groups.consumer_group_describe("g").unwrap();
        assert_eq!(described.members.len(), 2);
        let classic_id = classic.member_id.as_str();
        assert_eq!(
            groups.heartbeat("g", classic_id, None, generation),
            Err(ResponseError::RebalanceInProgress)
        );
        // Its committed offsets count in the consumer group (generation: its epoch).
        let committed = groups
            .commit_offsets("g", commit(generation, classic_id, 7))
            .await;
        assert_eq!(committed, Ok(vec![Ok(())]));
        // It joins again having revoked everything (an eager client) and gets its share.
        let rejoined = groups.join_group("g", classic_join(classic_id)).await;
        assert_eq!(rejoined.error, None);
        assert!(rejoined.generation_id > generation);
        assert_eq!(rejoined.protocol_name.as_deref(), Some("range"));
        let synced = groups
            .sync_group("g", sync_request(classic_id, rejoined.generation_id))
            .await;
        let kept = partitions(&synced.assignment);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(
            groups.heartbeat("g", classic_id, None, rejoined.generation_id),
            Ok(())
        );
        let c = groups
            .consumer_group_heartbeat(
                "g",
                1,
                HeartbeatRequest {
                    member_epoch: joined.member_epoch,
                    ..consumer_join("c")
                },
            )
            .await
            .unwrap();
        assert_eq!(
            c.assignment.map(|a| a.values().map(|p| p.len()).sum()),
            Some(1)
        );
        // The mixed group's record keeps the classic member as such.
        let GroupRecord::Consumer(record) = stored_record(&groups, "g") else {
            panic!("a consumer group's record");
        };
        let kinds: Vec<bool> = record.members.iter().map(|m| m.classic.is_some()).collect();
        assert_eq!(kinds.iter().filter(|c| **c).count(), 1);
        // And a restart keeps the mixed group: both kinds carry on where they were.
        let groups = restarted(&groups);
        assert_eq!(
            groups.heartbeat("g", classic_id, None, rejoined.generation_id),
            Ok(())
        );

        // The last consumer-protocol member leaves: a classic group again, which rebalances.
        groups
            .consumer_group_heartbeat("g", 1, consumer_leave("c"))
            .await
            .unwrap();
        let description = groups.describe_group("g").unwrap();
        assert_eq!(description.state, classic::ClassicState::PreparingRebalance);
        assert_eq!(description.members.len(), 1);
        assert_eq!(
            groups.heartbeat("g", classic_id, None, c.member_epoch + 1),
            Err(ResponseError::RebalanceInProgress)
        );
        assert!(matches!(
            stored_record(&groups, "g"),
            GroupRecord::Classic(_)
        ));
        assert_eq!(groups.fetch_offsets("g", None, -1).unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_migration_policy_decides_each_direction() {
        let (groups, _dir) = setup(GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            migration_policy: MigrationPolicy::Upgrade,
            ..GroupConfig::default()
        })
        .await;
        let classic = groups.join_group("g", classic_join("")).await;
        groups
            .consumer_group_heartbeat("g", 1, consumer_join("c"))
            .await
            .unwrap();
        groups
            .consumer_group_heartbeat("g", 1, consumer_leave("c"))
            .await
            .unwrap();
        // No downgrade: a consumer group of one classic member.
        let described = groups.consumer_group_describe("g").unwrap();
        assert_eq!(described.members[0].member_id, classic.member_id);

        let (groups, _dir) = setup(GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            migration_policy: MigrationPolicy::Downgrade,
            ..GroupConfig::default()
        })
        .await;
        groups.join_group("g", classic_join("")).await;
        let refused = groups
            .consumer_group_heartbeat("g", 1, consumer_join("c"))
            .await
            .unwrap_err();
        assert_eq!(refused.error, ResponseError::GroupIdNotFound);
        assert!(refused.message.contains("online upgrade is disabled"));
    }

    /// The group's record in the store: the answers that change it come once it is written.
    fn stored_record(groups: &GroupCoordinator, group_id: &str) -> GroupRecord {
        let value = groups
            .coordinator
            .group_metadata(group_id)
            .expect("a record");
        GroupRecord::decode(&value).unwrap()
    }

    /// Another group coordinator over the same store, as another gateway.
    fn elsewhere(groups: &GroupCoordinator) -> GroupCoordinator {
        GroupCoordinator::new(0, (*groups.config).clone(), groups.coordinator.clone())
    }

    /// Stops `groups` and starts another over the same store, as a restart does.
    fn restarted(groups: &GroupCoordinator) -> GroupCoordinator {
        groups.shutdown();
        elsewhere(groups)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stable_classic_group_is_loaded_without_a_rebalance() {
        let (groups, _dir) = setup(GroupConfig::default()).await;
        let (a, b) = tokio::join!(
            groups.join_group("g", join_request("")),
            groups.join_group("g", join_request(""))
        );
        let leader = if a.leader == a.member_id { &a } else { &b };
        let follower = if a.leader == a.member_id { &b } else { &a };
        let sync = |member_id: &str, assignments: Vec<(String, Bytes)>| SyncRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            generation_id: 1,
            protocol_type: None,
            protocol_name: None,
            assignments,
        };
        let assignments = vec![
            (leader.member_id.clone(), Bytes::from_static(b"leader's")),
            (
                follower.member_id.clone(),
                Bytes::from_static(b"follower's"),
            ),
        ];
        let (synced, _) = tokio::join!(
            groups.sync_group("g", sync(&leader.member_id, assignments)),
            groups.sync_group("g", sync(&follower.member_id, Vec::new()))
        );
        assert_eq!(synced.error, None);
        let GroupRecord::Classic(record) = stored_record(&groups, "g") else {
            panic!("a classic record");
        };
        assert_eq!((record.generation_id, record.members.len()), (1, 2));
        assert_eq!(record.leader, leader.member_id);
        // Heartbeats write nothing.
        let record = groups.coordinator.group_metadata("g");
        groups.heartbeat("g", &leader.member_id, None, 1).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(groups.coordinator.group_metadata("g"), record);

        let reloaded = restarted(&groups);
        assert_eq!(reloaded.heartbeat("g", &leader.member_id, None, 1), Ok(()));
        let description = reloaded.describe_group("g").unwrap();
        assert_eq!(description.state, classic::ClassicState::Stable);
        assert_eq!(description.protocol_name, "range");
        let follower_description = description
            .members
            .iter()
            .find(|m| m.member_id == follower.member_id)
            .unwrap();
        assert_eq!(follower_description.assignment, &b"follower's"[..]);
        let resynced = reloaded
            .sync_group("g", sync(&follower.member_id, Vec::new()))
            .await;
        assert_eq!(resynced.assignment, &b"follower's"[..]);

        // Every member got a fresh session: the one that stays silent is removed.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            reloaded
                .heartbeat("g", &leader.member_id, None, 1)
                .unwrap_or_default();
        }
        assert_eq!(
            reloaded.heartbeat("g", &follower.member_id, None, 1),
            Err(ResponseError::UnknownMemberId)
        );
        // Once the group empties, its record goes.
        let leave = [(leader.member_id.clone(), None)];
        assert_eq!(reloaded.leave_group("g", &leave), Ok(vec![Ok(())]));
        while reloaded.coordinator.group_metadata("g").is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_consumer_group_is_loaded_with_its_epochs_and_assignments() {
        let (groups, _dir) = setup(GroupConfig::default()).await;
        let by_regex = HeartbeatRequest {
            subscribed_topic_names: None,
            subscribed_topic_regex: Some("t.*".into()),
            ..consumer_join("m")
        };
        let joined = groups
            .consumer_group_heartbeat("g", 1, by_regex)
            .await
            .unwrap();
        assert_eq!(joined.member_epoch, 1);
        assert_eq!(joined.assignment.as_ref().map(|a| a.len()), Some(1));
        let GroupRecord::Consumer(record) = stored_record(&groups, "g") else {
            panic!("a consumer record");
        };
        assert_eq!((record.group_epoch, record.members[0].member_epoch), (1, 1));
        let before = groups.consumer_group_describe("g").unwrap();

        // A plain heartbeat: the subscription (a regex) and assignment come from the record.
        let reloaded = restarted(&groups);
        let plain = HeartbeatRequest {
            member_epoch: 1,
            rebalance_timeout_ms: -1,
            subscribed_topic_names: None,
            owned_partitions: joined.assignment.clone(),
            ..consumer_join("m")
        };
        let heartbeat = reloaded
            .consumer_group_heartbeat("g", 1, plain)
            .await
            .unwrap();
        assert_eq!((heartbeat.member_epoch, heartbeat.assignment), (1, None));
        assert_eq!(reloaded.consumer_group_describe("g").unwrap(), before);

        // A second member: the epochs move on, in the record before the answer.
        let second = reloaded
            .consumer_group_heartbeat("g", 1, consumer_join("n"))
            .await
            .unwrap();
        let GroupRecord::Consumer(record) = stored_record(&reloaded, "g") else {
            panic!("a consumer record");
        };
        assert_eq!((record.group_epoch, record.members.len()), (2, 2));
        assert_eq!(record.members[1].member_epoch, second.member_epoch);
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_that_another_gateway_superseded_is_loaded_again() {
        let (groups, _dir) = setup(GroupConfig::default()).await;
        groups
            .consumer_group_heartbeat("g", 1, consumer_join("m"))
            .await
            .unwrap();
        stored_record(&groups, "g");
        // Another gateway coordinates the group for a while; its member leaves there.
        let elsewhere = elsewhere(&groups);
        let leave = consumer_leave("m");
        elsewhere
            .consumer_group_heartbeat("g", 1, leave)
            .await
            .unwrap();
        assert_eq!(groups.coordinator.group_metadata("g"), None);
        // Back here, the old copy in memory is not used.
        let stale = HeartbeatRequest {
            member_epoch: 1,
            ..consumer_join("m")
        };
        let refused = groups
            .consumer_group_heartbeat("g", 1, stale)
            .await
            .unwrap_err();
        assert_eq!(refused.error, ResponseError::UnknownMemberId);
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_left_behind_by_a_move_neither_expires_members_nor_writes() {
        let (groups, _dir) = setup(GroupConfig::default()).await;
        groups
            .consumer_group_heartbeat("a", 1, consumer_join("m"))
            .await
            .unwrap();
        stored_record(&groups, "a");
        let record = groups.coordinator.group_metadata("a");
        // A second broker: "a" (hash 97) moves to it.
        groups
            .coordinator
            .register_broker(loopback_broker(1))
            .await
            .unwrap();
        // Past the member's session: the copy here is dropped, the record left alone.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(groups.coordinator.group_metadata("a"), record);

        // The group comes back: loaded from its record, with its member.
        groups.coordinator.unregister_broker().await.unwrap();
        let again = HeartbeatRequest {
            member_epoch: 1,
            ..consumer_join("m")
        };
        let heartbeat = groups
            .consumer_group_heartbeat("a", 1, again)
            .await
            .unwrap();
        assert_eq!(heartbeat.member_epoch, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_answers_members_waiting_on_a_rebalance() {
        let (groups, _dir) = setup(GroupConfig::default()).await;
        let waiting = tokio::spawn({
            let groups = groups.clone();
            async move { groups.join_group("g", join_request("")).await }
        });
        while groups.list_groups().is_empty() {
            tokio::task::yield_now().await;
        }
        groups.shutdown();
        let answer = waiting.await.unwrap();
        assert_eq!(answer.error, Some(ResponseError::CoordinatorNotAvailable));
        assert!(groups.list_groups().is_empty());
    }

    #[tokio::test]
    async fn offsets_of_empty_groups_expire() {
        let (groups, _dir) = setup(GroupConfig {
            offsets_retention: Duration::ZERO,
            ..GroupConfig::default()
        })
        .await;
        groups
            .commit_offsets("empty", commit(-1, "", 1))
            .await
            .unwrap();
        let member = groups
            .consumer_group_heartbeat("active", 1, consumer_join("m"))
            .await
            .unwrap();
        let active = OffsetCommit {
            version: 9,
            ..commit(member.member_epoch, "m", 1)
        };
        groups.commit_offsets("active", active).await.unwrap();
        assert_eq!(groups.expire_offsets().await.unwrap(), 1);
        let listed: Vec<String> = groups
            .list_groups()
            .into_iter()
            .map(|g| g.group_id)
            .collect();
        assert_eq!(listed, ["active"]);
    }

    #[tokio::test]
    async fn another_broker_coordinates_some_groups() {
        let (groups, _dir) = setup(GroupConfig::default()).await;
        groups
            .coordinator
            .register_broker(loopback_broker(1))
            .await
            .unwrap();
        // "a" (hash 97) goes to the second live broker.
        assert_eq!(
            groups.heartbeat("a", "m", None, 1),
            Err(ResponseError::NotCoordinator)
        );
        assert_eq!(
            groups.heartbeat("", "m", None, 1),
            Err(ResponseError::InvalidGroupId)
        );
        assert_eq!(
            groups.heartbeat("b", "m", None, 1),
            Err(ResponseError::UnknownMemberId)
        );
    }
}
