//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat): the coordinator assigns
//! partitions with a server-side assignor and every member converges on its target
//! incrementally. A change of membership, subscriptions or subscribed topics bumps the group
//! epoch, and the target assignment is recomputed for it. A member that must give up
//! partitions is asked to revoke them first and keeps its epoch until it has; then it moves
//! to the target epoch and gets its new partitions as soon as their previous owners have
//! released them. Members are fenced when their session times out or when they do not
//! revoke within their rebalance timeout. A member subscribes to topic names, a regular
//! expression matched against the topics that exist, or both.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use coordinator::{Coordinator, TopicMeta};
use proto_compat::kafka_protocol::error::ResponseError;
use regex::Regex;
use tokio::time::{Duration, Instant};
use uuid::Uuid;

use super::assignor::{Assignment, Assignor, MemberSpec};
use super::config::GroupConfig;
use super::group_record::{
    ClassicProtocolRecord, ConsumerMemberRecord, ConsumerRecord, ReconciliationState as MemberState,
};
use super::GroupError;
use crate::clock;

mod classic_members;

/// A member leaves the group.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// A static member leaves for now: it keeps its partitions until its session times out.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// What the group needs to know about topics (the coordinator; a map in tests).
pub trait Topics {
    fn topic(&self, name: &str) -> Option<TopicMeta>;
    /// Every topic's name, for the subscribed regular expressions.
    fn topic_names(&self) -> Vec<String>;
    /// Grows whenever a topic is created or deleted.
    fn topic_name_changes(&self) -> u64;
}

impl Topics for Coordinator {
    fn topic(&self, name: &str) -> Option<TopicMeta> {
        Coordinator::topic(self, name)
    }

    fn topic_names(&self) -> Vec<String> {
        Coordinator::topic_names(self)
    }

    fn topic_name_changes(&self) -> u64 {
        Coordinator::topic_name_changes(self)
    }
}

/// A subscribed regular expression (RE2 syntax, which the `regex` crate follows), or Kafka's
/// INVALID_REGULAR_EXPRESSION.
fn compile_regex(pattern: &str) -> Result<Regex, GroupError> {
    // Checked alone first: anchoring could make a broken pattern valid ("a)|(b").
    Regex::new(pattern)
        .and_then(|_| Regex::new(&format!("^(?:{pattern})$")))
        .map_err(|e| {
            GroupError::new(
                ResponseError::InvalidRegularExpression,
                format!("SubscribedTopicRegex `{pattern}` is not a valid regular expression: {e}."),
            )
        })
}

/// A ConsumerGroupHeartbeat request, whatever its version. Optional fields are None when the
/// member did not send them because they did not change.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    /// Empty for a new member in v0 (the coordinator picks one); set by the client in v1+.
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    /// A regular expression whose matching topics the member also subscribes to (KIP-848,
    /// v1); empty for none.
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns.
    pub owned_partitions: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's partitions, when they changed or the request was a full one.
    pub assignment: Option<Assignment>,
}

/// A group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDescription {
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: &'static str,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub assignment: Assignment,
    pub target_assignment: Assignment,
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    member_epoch: i32,
    previous_member_epoch: i32,
    state: MemberState,
    rebalance_timeout: Duration,
    server_assignor: Option<String>,
    subscribed_topic_names: BTreeSet<String>,
    subscribed_topic_regex: Option<String>,
    assigned: Assignment,
    pending_revocation: Assignment,
    session_deadline: Instant,
    /// While it must revoke partitions.
    rebalance_deadline: Option<Instant>,
    /// Some for a member that speaks the classic protocol.
    classic: Option<ClassicProtocolRecord>,
}

impl Member {
    fn new(member_id: String, now: Instant) -> Self {
        Member {
            member_id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            rebalance_timeout: Duration::ZERO,
            server_assignor: None,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline: now,
            rebalance_deadline: None,
            classic: None,
        }
    }

    fn is_reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == epoch
    }

    fn set_epoch(&mut self, epoch: i32) {
        self.previous_member_epoch = self.member_epoch;
        self.member_epoch = epoch;
    }

    fn record(&self) -> ConsumerMemberRecord {
        ConsumerMemberRecord {
            member_id: self.member_id.clone(),
            instance_id: self.instance_id.clone(),
            rack_id: self.rack_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            member_epoch: self.member_epoch,
            previous_member_epoch: self.previous_member_epoch,
            state: self.state,
            rebalance_timeout_ms: self.rebalance_timeout.as_millis() as u64,
            server_assignor: self.server_assignor.clone(),
            subscribed_topic_names: self.subscribed_topic_names.clone(),
            subscribed_topic_regex: self.subscribed_topic_regex.clone(),
            assigned: self.assigned.clone(),
            pending_revocation: self.pending_revocation.clone(),
            classic: self.classic.clone(),
        }
    }

    /// Whether the two differ in what the group's record keeps (not their deadlines).
    fn record_differs(&self, other: &Member) -> bool {
        self.instance_id != other.instance_id
            || self.rack_id != other.rack_id
            || self.client_id != other.client_id
            || self.client_host != other.client_host
            || self.member_epoch != other.member_epoch
            || self.previous_member_epoch != other.previous_member_epoch
            || self.state != other.state
            || self.rebalance_timeout != other.rebalance_timeout
            || self.server_assignor != other.server_assignor
            || self.subscribed_topic_names != other.subscribed_topic_names
            || self.subscribed_topic_regex != other.subscribed_topic_regex
            || self.assigned != other.assigned
            || self.pending_revocation != other.pending_revocation
            || self.classic != other.classic
    }

    /// A classic member's own session timeout, else the group's.
    fn session_timeout(&self, config: &GroupConfig) -> Duration {
        match &self.classic {
            Some(classic) => Duration::from_millis(classic.session_timeout_ms),
            None => config.consumer_session_timeout,
        }
    }
}

#[derive(Debug)]
pub struct ConsumerGroup {
    group_id: String,
    config: Arc<GroupConfig>,
    group_epoch: i32,
    assignment_epoch: i32,
    /// By member id.
    members: BTreeMap<String, Member>,
    /// Instance id → member id.
    static_members: HashMap<String, String>,
    /// The target assignment of each member, at `assignment_epoch`.
    target: HashMap<String, Assignment>,
    /// The epoch of the member that owns each partition (assigned or being revoked).
    partition_epochs: HashMap<(Uuid, i32), i32>,
    /// Id and partition count of every subscribed topic that exists: the target assignment
    /// is recomputed when they change.
    subscribed_topics: BTreeMap<String, (Uuid, i32)>,
    empty_since_ms: i64,
    /// Changed since its record was last taken: the record must be written.
    record_changed: bool,
    /// The topics each subscribed regex matches, as of `regexes_resolved_at` (the topics'
    /// `topic_name_changes`).
    resolved_regexes: BTreeMap<String, BTreeSet<String>>,
    regexes_resolved_at: Option<u64>,
}

impl ConsumerGroup {
    pub fn new(group_id: &str, config: Arc<GroupConfig>) -> Self {
        ConsumerGroup {
            group_id: group_id.to_string(),
            config,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            target: HashMap::new(),
            partition_epochs: HashMap::new(),
            subscribed_topics: BTreeMap::new(),
            empty_since_ms: clock::now_ms(),
            record_changed: false,
            resolved_regexes: BTreeMap::new(),
            regexes_resolved_at: None,
        }
    }

    /// The group as its record describes it, each member with a fresh session and, if it
    /// must still revoke partitions, a fresh rebalance timeout.
    pub fn from_record(
        group_id: &str,
        config: Arc<GroupConfig>,
        record: ConsumerRecord,
        now: Instant,
    ) -> Self {
        let mut group = ConsumerGroup::new(group_id, config);
        group.group_epoch = record.group_epoch;
        group.assignment_epoch = record.assignment_epoch;
        group.subscribed_topics = record.subscribed_topics;
        group.target = record.target.into_iter().collect();
        for member in record.members {
            let rebalance_timeout = Duration::from_millis(member.rebalance_timeout_ms);
            let mut member = Member {
                member_id: member.member_id,
                instance_id: member.instance_id,
                rack_id: member.rack_id,
                client_id: member.client_id,
                client_host: member.client_host,
                member_epoch: member.member_epoch,
                previous_member_epoch: member.previous_member_epoch,
                state: member.state,
                rebalance_timeout,
                server_assignor: member.server_assignor,
                subscribed_topic_names: member.subscribed_topic_names,
                subscribed_topic_regex: member.subscribed_topic_regex,
                assigned: member.assigned,
                pending_revocation: member.pending_revocation,
                session_deadline: now,
                rebalance_deadline: (member.state == MemberState::UnrevokedPartitions)
                    .then(|| now + rebalance_timeout),
                classic: member.classic,
            };
            member.session_deadline = now + member.session_timeout(&group.config);
            group.put_member(member);
        }
        group.record_changed = false;
        group
    }

    /// Whether what its record holds changed since the record was last taken.
    pub fn record_changed(&self) -> bool {
        self.record_changed
    }

    /// Some when the group changed since the last call: its record, None for an empty
    /// group, which keeps no record.
    pub fn take_record(&mut self) -> Option<Option<ConsumerRecord>> {
        if !std::mem::take(&mut self.record_changed) {
            return None;
        }
        if self.members.is_empty() {
            return Some(None);
        }
        Some(Some(ConsumerRecord {
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            subscribed_topics: self.subscribed_topics.clone(),
            target: self
                .target
                .iter()
                .map(|(id, assignment)| (id.clone(), assignment.clone()))
                .collect(),
            members: self.members.values().map(Member::record).collect(),
        }))
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn empty_since_ms(&self) -> Option<i64> {
        self.is_empty().then_some(self.empty_since_ms)
    }

    /// Kafka's names: Empty, Assigning, Reconciling or Stable.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| !m.is_reconciled_to(self.assignment_epoch))
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Kafka's checks of a request that do not depend on the group.
    pub fn validate_request(
        config: &GroupConfig,
        version: i16,
        request: &HeartbeatRequest,
    ) -> Result<(), GroupError> {
        let invalid = |message: &str| Err(GroupError::new(ResponseError::InvalidRequest, message));
        let epoch = request.member_epoch;
        if (version >= 1 || epoch > 0 || epoch == LEAVE_GROUP_MEMBER_EPOCH)
            && request.member_id.is_empty()
        {
            return invalid("MemberId can't be empty.");
        }
        if request.instance_id.as_deref() == Some("") {
            return invalid("InstanceId can't be empty.");
        }
        if request.rack_id.as_deref() == Some("") {
            return invalid("RackId can't be empty.");
        }
        if epoch == 0 {
            if request.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if !request
                .owned_partitions
                .as_ref()
                .is_some_and(Assignment::is_empty)
            {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none()
            {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        } else if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH && request.instance_id.is_none() {
            return invalid("InstanceId can't be null.");
        } else if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            return invalid("MemberEpoch is invalid.");
        }
        if let Some(pattern) = request.subscribed_topic_regex.as_deref() {
            if !pattern.is_empty() {
                compile_regex(pattern)?;
            }
        }
        if let Some(name) = &request.server_assignor {
            if !config.consumer_assignors.iter().any(|a| a.name() == name) {
                let supported: Vec<&str> =
                    config.consumer_assignors.iter().map(|a| a.name()).collect();
                return Err(GroupError::new(
                    ResponseError::UnsupportedAssignor,
                    format!(
                        "ServerAssignor {name} is not supported. Supported assignors: {}.",
                        supported.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A heartbeat: joins, updates, reconciles or removes the member.
    pub fn heartbeat(
        &mut self,
        request: HeartbeatRequest,
        now: Instant,
        topics: &dyn Topics,
    ) -> Result<HeartbeatResponse, GroupError> {
        if matches!(
            request.member_epoch,
            LEAVE_GROUP_MEMBER_EPOCH | LEAVE_GROUP_STATIC_MEMBER_EPOCH
        ) {
            return self.leave(&request);
        }
        let known = self.members.contains_key(&request.member_id);
        if !known && self.members.len() >= self.config.consumer_max_size {
            return Err(GroupError::new(
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    self.config.consumer_max_size
                ),
            ));
        }
        let member_id = if request.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            request.member_id.clone()
        };
        let (previous, mut member) = match &request.instance_id {
            None => self.dynamic_member(&member_id, &request, now)?,
            Some(instance) => self.static_member(&member_id, instance, &request, now)?,
        };

        if let Some(rack) = &request.rack_id {
            member.rack_id = Some(rack.clone());
        }
        if request.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout = Duration::from_millis(request.rebalance_timeout_ms as u64);
        }
        if let Some(assignor) = &request.server_assignor {
            member.server_assignor = Some(assignor.clone());
        }
        if let Some(names) = &request.subscribed_topic_names {
            member.subscribed_topic_names = names.iter().cloned().collect();
        }
        if let Some(pattern) = &request.subscribed_topic_regex {
            member.subscribed_topic_regex = (!pattern.is_empty()).then(|| pattern.clone());
        }
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        // A member that heartbeats speaks the consumer protocol.
        member.classic = None;
        member.session_deadline = now + self.config.consumer_session_timeout;

        let assigned_before = previous
            .as_ref()
            .map(|p| p.assigned.clone())
            .unwrap_or_default();
        self.update_member(
            previous.as_ref(),
            member,
            request.owned_partitions.as_ref(),
            now,
            topics,
        );
        let member = &self.members[&member_id];
        let full_request = request.rebalance_timeout_ms != -1
            && (request.subscribed_topic_names.is_some()
                || request.subscribed_topic_regex.is_some())
            && request.owned_partitions.is_some();
        let assignment_changed = member.assigned != assigned_before;
        Ok(HeartbeatResponse {
            member_id: member_id.clone(),
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: millis(self.config.consumer_heartbeat_interval),
            assignment: (request.member_epoch == 0 || full_request || assignment_changed)
                .then(|| member.assigned.clone()),
        })
    }

    /// Stores a member's new state (from a heartbeat or a classic member's JoinGroup): a
    /// change of subscriptions or of the subscribed topics bumps the group epoch, which
    /// computes a new target assignment; then the member moves towards its target.
    fn update_member(
        &mut self,
        previous: Option<&Member>,
        member: Member,
        owned: Option<&Assignment>,
        now: Instant,
        topics: &dyn Topics,
    ) {
        let member_id = member.member_id.clone();
        let subscription_changed = previous.is_none_or(|p| {
            p.subscribed_topic_names != member.subscribed_topic_names
                || p.subscribed_topic_regex != member.subscribed_topic_regex
        });
        self.put_member(member);
        self.resolve_regexes(topics);
        // The subscribed topics are looked up on every heartbeat, so new partitions and
        // deleted topics are noticed at once.
        let subscribed_topics = self.subscribed_topic_metadata(topics);
        if self.group_epoch == 0
            || subscription_changed
            || subscribed_topics != self.subscribed_topics
        {
            self.subscribed_topics = subscribed_topics;
            self.group_epoch += 1;
            self.record_changed = true;
            tracing::info!(group = %self.group_id, epoch = self.group_epoch, member = %member_id, "bumped the group epoch");
        }
        if self.group_epoch > self.assignment_epoch {
            self.update_target_assignment();
        }
        self.reconcile(&member_id, owned, now);
    }

    /// The member of a heartbeat without an instance id: (its state before, a copy to update).
    fn dynamic_member(
        &self,
        member_id: &str,
        request: &HeartbeatRequest,
        now: Instant,
    ) -> Result<(Option<Member>, Member), GroupError> {
        match self.members.get(member_id) {
            Some(member) => {
                self.check_epoch(member, request)?;
                Ok((Some(member.clone()), member.clone()))
            }
            None if request.member_epoch == 0 => {
                tracing::info!(group = %self.group_id, member = member_id, "member joins");
                Ok((None, Member::new(member_id.to_string(), now)))
            }
            None => Err(self.unknown_member(member_id)),
        }
    }

    /// The member of a heartbeat with an instance id. A static member that rejoins under a
    /// new member id after leaving for now takes over its predecessor's partitions and
    /// target, so the others see no change.
    fn static_member(
        &mut self,
        member_id: &str,
        instance_id: &str,
        request: &HeartbeatRequest,
        now: Instant,
    ) -> Result<(Option<Member>, Member), GroupError> {
        let existing = self
            .static_members
            .get(instance_id)
            .and_then(|id| self.members.get(id))
            .cloned();
        match existing {
            Some(existing) if existing.member_id == member_id => {
                self.check_epoch(&existing, request)?;
                Ok((Some(existing.clone()), existing))
            }
            Some(existing) if request.member_epoch == 0 => {
                if existing.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                    return Err(GroupError::new(
                        ResponseError::UnreleasedInstanceId,
                        format!("Static member {member_id} with instance id {instance_id} cannot join the group because the instance id is owned by {} member.", existing.member_id),
                    ));
                }
                tracing::info!(group = %self.group_id, old = %existing.member_id, new = member_id, instance = instance_id, "static member replaced");
                self.remove_member(&existing.member_id);
                if let Some(target) = self.target.remove(&existing.member_id) {
                    self.target.insert(member_id.to_string(), target);
                }
                let mut member = Member::new(member_id.to_string(), now);
                member.instance_id = Some(instance_id.to_string());
                member.subscribed_topic_names = existing.subscribed_topic_names.clone();
                member.subscribed_topic_regex = existing.subscribed_topic_regex.clone();
                member.server_assignor = existing.server_assignor.clone();
                member.rebalance_timeout = existing.rebalance_timeout;
                // Its subscription is compared with its predecessor's.
                let previous = Member {
                    assigned: Assignment::new(),
                    ..existing
                };
                Ok((Some(previous), member))
            }
            Some(existing) => Err(GroupError::new(
                ResponseError::FencedInstanceId,
                format!("Static member {member_id} with instance id {instance_id} was fenced by member {}.", existing.member_id),
            )),
            None if request.member_epoch == 0 => {
                let mut member = match self.members.get(member_id) {
                    Some(member) => member.clone(),
                    None => Member::new(member_id.to_string(), now),
                };
                member.instance_id = Some(instance_id.to_string());
                Ok((self.members.get(member_id).cloned(), member))
            }
            None => Err(GroupError::new(
                ResponseError::UnknownMemberId,
                format!("Instance id {instance_id} is unknown."),
            )),
        }
    }

    /// Kafka's check of a member epoch: ahead of the coordinator's, or behind it other than
    /// by one lost response, fences the member. Epoch 0 rejoins.
    fn check_epoch(&self, member: &Member, request: &HeartbeatRequest) -> Result<(), GroupError> {
        let received = request.member_epoch;
        let lost_response = received == member.previous_member_epoch
            && request.owned_partitions.as_ref().is_some_and(|owned| {
                owned.iter().all(|(topic, partitions)| {
                    member
                        .assigned
                        .get(topic)
                        .is_some_and(|assigned| partitions.is_subset(assigned))
                })
            });
        if received == 0
            || received == member.member_epoch
            || (received < member.member_epoch && lost_response)
        {
            return Ok(());
        }
        let relation = if received > member.member_epoch {
            "greater"
        } else {
            "smaller"
        };
        Err(GroupError::new(
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a {relation} member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.member_epoch
            ),
        ))
    }

    fn leave(&mut self, request: &HeartbeatRequest) -> Result<HeartbeatResponse, GroupError> {
        let member_id = match &request.instance_id {
            None => {
                if !self.members.contains_key(&request.member_id) {
                    return Err(self.unknown_member(&request.member_id));
                }
                request.member_id.clone()
            }
            Some(instance) => {
                let current = self.static_members.get(instance).cloned().ok_or_else(|| {
                    GroupError::new(
                        ResponseError::UnknownMemberId,
                        format!("Instance id {instance} is unknown."),
                    )
                })?;
                if current != request.member_id {
                    return Err(GroupError::new(
                        ResponseError::FencedInstanceId,
                        format!("Static member {} with instance id {instance} was fenced by member {current}.", request.member_id),
                    ));
                }
                current
            }
        };
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            // It keeps its partitions, so that it gets them back if it returns in time.
            tracing::info!(group = %self.group_id, member = %member_id, "static member left for now");
            let mut member = self.members[&member_id].clone();
            member.set_epoch(LEAVE_GROUP_STATIC_MEMBER_EPOCH);
            member.pending_revocation.clear();
            member.rebalance_deadline = None;
            self.put_member(member);
        } else {
            tracing::info!(group = %self.group_id, member = %member_id, "member left");
            self.fence(&member_id);
        }
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Kafka's checks of an OffsetCommit: a negative epoch may commit to an empty group;
    /// otherwise the member must exist, use OffsetCommit v9+ and send its current epoch.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        version: i16,
    ) -> Result<(), ResponseError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        // A classic member commits with its epoch as generation, in any version.
        if member.classic.is_some() {
            if member_epoch != member.member_epoch {
                return Err(ResponseError::IllegalGeneration);
            }
            return Ok(());
        }
        if version < 9 {
            return Err(ResponseError::UnsupportedVersion);
        }
        if member_epoch != member.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// OffsetFetch v9 from a member checks its epoch; without member id (a tool) it may read.
    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        if member_id.is_none() && member_epoch < 0 {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id.unwrap_or_default())
            .ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != member.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// The topics some member subscribes to (OffsetDelete refuses their offsets).
    pub fn subscribed_topic_names(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| self.member_topics(m).cloned())
            .collect()
    }

    /// The topics a member subscribes to: by name, and those its regex matched.
    fn member_topics<'a>(&'a self, member: &'a Member) -> impl Iterator<Item = &'a String> {
        let matched = member
            .subscribed_topic_regex
            .as_ref()
            .and_then(|pattern| self.resolved_regexes.get(pattern));
        member
            .subscribed_topic_names
            .iter()
            .chain(matched.into_iter().flatten())
    }

    /// Matches the members' regexes against the topics again when one is new or topics were
    /// created or deleted since.
    fn resolve_regexes(&mut self, topics: &dyn Topics) {
        let patterns: BTreeSet<&String> = self
            .members
            .values()
            .filter_map(|m| m.subscribed_topic_regex.as_ref())
            .collect();
        let changes = topics.topic_name_changes();
        let current = self.regexes_resolved_at == Some(changes)
            && patterns.len() == self.resolved_regexes.len()
            && patterns
                .iter()
                .all(|p| self.resolved_regexes.contains_key(*p));
        if current {
            return;
        }
        let names = if patterns.is_empty() {
            Vec::new()
        } else {
            topics.topic_names()
        };
        let mut resolved = BTreeMap::new();
        for pattern in patterns {
            // Validated when the member sent it.
            let Ok(regex) = compile_regex(pattern) else {
                continue;
            };
            let matched: BTreeSet<String> = names
                .iter()
                .filter(|name| regex.is_match(name))
                .cloned()
                .collect();
            resolved.insert(pattern.clone(), matched);
        }
        if resolved != self.resolved_regexes {
            tracing::info!(group = %self.group_id, regexes = ?resolved, "resolved the subscribed regular expressions");
        }
        self.resolved_regexes = resolved;
        self.regexes_resolved_at = Some(changes);
    }

    pub fn describe(&self) -> GroupDescription {
        let members = self
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                member_epoch: m.member_epoch,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                assignment: m.assigned.clone(),
                target_assignment: self.target.get(&m.member_id).cloned().unwrap_or_default(),
            })
            .collect();
        GroupDescription {
            state: self.state(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor_name: self.preferred_assignor().name(),
            members,
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.members
            .values()
            .flat_map(|m| [Some(m.session_deadline), m.rebalance_deadline])
            .flatten()
            .min()
    }

    /// Fences members whose session timed out or that did not revoke in time.
    pub fn expire(&mut self, now: Instant) {
        let expired: Vec<(String, &'static str)> = self
            .members
            .values()
            .filter_map(|m| {
                if m.session_deadline <= now {
                    Some((m.member_id.clone(), "its session timed out"))
                } else if m.rebalance_deadline.is_some_and(|d| d <= now) {
                    Some((
                        m.member_id.clone(),
                        "it did not revoke its partitions within its rebalance timeout",
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (member_id, reason) in expired {
            tracing::info!(group = %self.group_id, member = %member_id, reason, "member fenced");
            self.fence(&member_id);
        }
    }

    /// Removes a member; the others are reassigned at the next epoch.
    fn fence(&mut self, member_id: &str) {
        self.remove_member(member_id);
        self.target.remove(member_id);
        self.group_epoch += 1;
        self.record_changed = true;
        if self.members.is_empty() {
            self.empty_since_ms = clock::now_ms();
        }
    }

    fn remove_member(&mut self, member_id: &str) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        self.record_changed = true;
        self.release_partitions(&member);
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
    }

    /// Stores a member, keeping the partition owners' epochs in step.
    fn put_member(&mut self, member: Member) {
        match self.members.get(&member.member_id).cloned() {
            Some(old) => {
                self.record_changed |= old.record_differs(&member);
                self.release_partitions(&old);
            }
            None => self.record_changed = true,
        }
        for (topic, partitions) in member.assigned.iter().chain(&member.pending_revocation) {
            for partition in partitions {
                self.partition_epochs
                    .insert((*topic, *partition), member.member_epoch);
            }
        }
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.members.insert(member.member_id.clone(), member);
    }

    fn release_partitions(&mut self, member: &Member) {
        for (topic, partitions) in member.assigned.iter().chain(&member.pending_revocation) {
            for partition in partitions {
                self.partition_epochs.remove(&(*topic, *partition));
            }
        }
    }

    fn subscribed_topic_metadata(&self, topics: &dyn Topics) -> BTreeMap<String, (Uuid, i32)> {
        self.members
            .values()
            .flat_map(|m| self.member_topics(m))
            .filter_map(|name| {
                let topic = topics.topic(name)?;
                Some((name.clone(), (topic.topic_id, topic.partitions)))
            })
            .collect()
    }

    /// The assignor most members asked for, else the configured default.
    fn preferred_assignor(&self) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for name in self
            .members
            .values()
            .filter_map(|m| m.server_assignor.as_deref())
        {
            *votes.entry(name).or_default() += 1;
        }
        votes
            .into_iter()
            .max_by_key(|(_, count)| *count)
            .and_then(|(name, _)| Assignor::from_name(name))
            .unwrap_or(self.config.consumer_assignors[0])
    }

    fn update_target_assignment(&mut self) {
        let partitions: BTreeMap<Uuid, i32> = self.subscribed_topics.values().copied().collect();
        let empty = Assignment::new();
        let specs: Vec<MemberSpec> = self
            .members
            .values()
            .map(|m| MemberSpec {
                member_id: &m.member_id,
                topics: self
                    .member_topics(m)
                    .filter_map(|name| self.subscribed_topics.get(name).map(|(id, _)| *id))
                    .collect(),
                current: self.target.get(&m.member_id).unwrap_or(&empty),
            })
            .collect();
        let assignor = self.preferred_assignor();
        let target = assignor.assign(&specs, &partitions);
        self.target = target.into_iter().collect();
        self.assignment_epoch = self.group_epoch;
        self.record_changed = true;
        tracing::info!(group = %self.group_id, epoch = self.assignment_epoch, assignor = assignor.name(), "computed a new target assignment");
    }

    /// Moves the member towards its target assignment (Kafka's CurrentAssignmentBuilder).
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) {
        let member = &self.members[member_id];
        if member.is_reconciled_to(self.assignment_epoch) {
            return;
        }
        let next = match member.state {
            MemberState::UnrevokedPartitions if owns_any(owned, &member.pending_revocation) => {
                return
            }
            MemberState::UnrevokedPartitions => {
                let epoch = (member.member_epoch + 1).min(self.assignment_epoch);
                self.next_assignment(member, epoch, owned)
            }
            MemberState::Stable | MemberState::UnreleasedPartitions => {
                self.next_assignment(member, member.member_epoch, owned)
            }
        };
        let mut next = next;
        if next.state == MemberState::UnrevokedPartitions {
            if member.state != MemberState::UnrevokedPartitions
                || member.member_epoch != next.member_epoch
            {
                next.rebalance_deadline = Some(now + next.rebalance_timeout);
            }
        } else {
            next.rebalance_deadline = None;
        }
        if next.member_epoch != member.member_epoch || next.assigned != member.assigned {
            tracing::info!(group = %self.group_id, member = member_id, epoch = next.member_epoch, state = ?next.state, partitions = next.assigned.values().map(BTreeSet::len).sum::<usize>(), "member reconciled");
        }
        self.put_member(next);
    }

    /// The member's next step: keep what it may keep; revoke what it must, or else take the
    /// target epoch and the target partitions that are free.
    fn next_assignment(&self, member: &Member, epoch: i32, owned: Option<&Assignment>) -> Member {
        let empty = Assignment::new();
        let target = self.target.get(&member.member_id).unwrap_or(&empty);
        let mut assigned = Assignment::new();
        let mut revoke = Assignment::new();
        let mut unreleased = false;
        let topics: BTreeSet<&Uuid> = target.keys().chain(member.assigned.keys()).collect();
        for topic in topics {
            let wanted = target.get(topic).cloned().unwrap_or_default();
            let current = member.assigned.get(topic).cloned().unwrap_or_default();
            let keep: BTreeSet<i32> = current.intersection(&wanted).copied().collect();
            let give_up: BTreeSet<i32> = current.difference(&keep).copied().collect();
            let mut take = BTreeSet::new();
            for partition in wanted.difference(&keep) {
                // Free unless another member still owns it.
                let owned_by_other = self.partition_epochs.contains_key(&(*topic, *partition))
                    && !member
                        .pending_revocation
                        .get(topic)
                        .is_some_and(|p| p.contains(partition));
                if owned_by_other {
                    unreleased = true;
                } else {
                    take.insert(*partition);
                }
            }
            let mut next_assigned = keep;
            next_assigned.extend(take);
            if !next_assigned.is_empty() {
                assigned.insert(*topic, next_assigned);
            }
            if !give_up.is_empty() {
                revoke.insert(*topic, give_up);
            }
        }
        let mut next = member.clone();
        if !revoke.is_empty() && owns_any(owned, &revoke) {
            // It keeps its epoch until it has revoked; new partitions come after.
            next.state = MemberState::UnrevokedPartitions;
            next.set_epoch(epoch);
            next.assigned = member
                .assigned
                .iter()
                .filter_map(|(topic, current)| {
                    let kept: BTreeSet<i32> = current
                        .difference(revoke.get(topic).unwrap_or(&BTreeSet::new()))
                        .copied()
                        .collect();
                    (!kept.is_empty()).then_some((*topic, kept))
                })
                .collect();
            next.pending_revocation = revoke;
        } else {
            next.state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
            next.set_epoch(self.assignment_epoch);
            next.assigned = assigned;
            next.pending_revocation = Assignment::new();
        }
        next
    }

    fn unknown_member(&self, member_id: &str) -> GroupError {
        GroupError::new(
            ResponseError::UnknownMemberId,
            format!(
                "Member {member_id} is not a member of group {}.",
                self.group_id
            ),
        )
    }
}

/// Whether the member still owns any of `partitions`; unknown (None) counts as yes.
fn owns_any(owned: Option<&Assignment>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    owned
        .iter()
        .any(|(topic, owned)| partitions.get(topic).is_some_and(|p| !p.is_disjoint(owned)))
}

fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const SESSION: Duration = Duration::from_secs(45);

    /// Topics by name, and how many times one was created or deleted.
    struct TestTopics(BTreeMap<String, TopicMeta>, u64);

    impl TestTopics {
        fn new(topics: &[(&str, i32)]) -> Self {
            let mut out = TestTopics(BTreeMap::new(), 0);
            for (name, partitions) in topics {
                out.set(name, *partitions);
            }
            out
        }

        fn set(&mut self, name: &str, partitions: i32) {
            let topic_id = self.0.get(name).map_or_else(Uuid::new_v4, |t| t.topic_id);
            let meta = TopicMeta {
                name: name.to_string(),
                topic_id,
                partitions,
                configs: BTreeMap::new(),
            };
            if self.0.insert(name.to_string(), meta).is_none() {
                self.1 += 1;
            }
        }

        fn delete(&mut self, name: &str) {
            self.0.remove(name);
            self.1 += 1;
        }

        fn id(&self, name: &str) -> Uuid {
            self.0[name].topic_id
        }
    }

    impl Topics for TestTopics {
        fn topic(&self, name: &str) -> Option<TopicMeta> {
            self.0.get(name).cloned()
        }

        fn topic_names(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }

        fn topic_name_changes(&self) -> u64 {
            self.1
        }
    }

    fn group() -> ConsumerGroup {
        ConsumerGroup::new("g", Arc::new(GroupConfig::default()))
    }

    fn joining(member_id: &str, topics: &[&str]) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: member_id.to_string(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(topics.iter().map(|t| t.to_string()).collect()),
            owned_partitions: Some(Assignment::new()),
            client_id: "client".to_string(),
            ..HeartbeatRequest::default()
        }
    }

    fn heartbeat(member_id: &str, epoch: i32, owned: Option<&Assignment>) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: member_id.to_string(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned_partitions: owned.cloned(),
            ..HeartbeatRequest::default()
        }
    }

    fn count(assignment: &Assignment) -> usize {
        assignment.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn members_revoke_before_others_get_their_partitions() {
        let topics = TestTopics::new(&[("t", 6)]);
        let t0 = Instant::now();
        let mut group = group();
        let a = group.heartbeat(joining("a", &["t"]), t0, &topics).unwrap();
        assert_eq!(
            (a.member_epoch, count(a.assignment.as_ref().unwrap())),
            (1, 6)
        );
        assert_eq!(group.state(), "Stable");
        let a_owned = a.assignment.unwrap();

        // "b" joins: the target moves three partitions, but "a" still owns them.
        let b = group.heartbeat(joining("b", &["t"]), t0, &topics).unwrap();
        assert_eq!(
            (b.member_epoch, count(b.assignment.as_ref().unwrap())),
            (2, 0)
        );
        assert_eq!(group.state(), "Reconciling");

        // "a" is asked to revoke, keeping its epoch until it has.
        let a = group
            .heartbeat(heartbeat("a", 1, Some(&a_owned)), t0, &topics)
            .unwrap();
        assert_eq!(a.member_epoch, 1);
        let a_kept = a.assignment.unwrap();
        assert_eq!(count(&a_kept), 3);
        let b = group
            .heartbeat(heartbeat("b", 2, Some(&Assignment::new())), t0, &topics)
            .unwrap();
        assert_eq!(b.assignment, None, "nothing is released yet");
        let a = group
            .heartbeat(heartbeat("a", 1, Some(&a_kept)), t0, &topics)
            .unwrap();
        assert_eq!((a.member_epoch, a.assignment), (2, None));
        let b = group
            .heartbeat(heartbeat("b", 2, Some(&Assignment::new())), t0, &topics)
            .unwrap();
        let b_owned = b.assignment.unwrap();
        assert_eq!(count(&b_owned), 3);
        assert!(b_owned[&topics.id("t")].is_disjoint(&a_kept[&topics.id("t")]));
        assert_eq!(group.state(), "Stable");

        // "b" leaves: its partitions go back to "a".
        let left = group
            .heartbeat(heartbeat("b", LEAVE_GROUP_MEMBER_EPOCH, None), t0, &topics)
            .unwrap();
        assert_eq!(left.member_epoch, LEAVE_GROUP_MEMBER_EPOCH);
        let a = group
            .heartbeat(heartbeat("a", 2, Some(&a_kept)), t0, &topics)
            .unwrap();
        assert_eq!(
            (a.member_epoch, count(a.assignment.as_ref().unwrap())),
            (3, 6)
        );
    }

    /// The topics of an assignment, by name.
    fn topic_names(topics: &TestTopics, assignment: &Assignment) -> Vec<String> {
        topics
            .0
            .values()
            .filter(|t| assignment.contains_key(&t.topic_id))
            .map(|t| t.name.clone())
            .collect()
    }

    #[test]
    fn a_regex_subscribes_to_the_topics_it_matches_as_they_come_and_go() {
        let mut topics = TestTopics::new(&[("orders-a", 1), ("orders-b", 1), ("xorders-c", 1)]);
        let t0 = Instant::now();
        let mut group = group();
        let join = HeartbeatRequest {
            subscribed_topic_regex: Some("orders-.*".into()),
            ..joining("m", &["payments"])
        };
        let joined = group.heartbeat(join, t0, &topics).unwrap();
        // The whole name must match, as in Kafka; a named topic counts once it exists.
        let owned = joined.assignment.unwrap();
        assert_eq!(topic_names(&topics, &owned), ["orders-a", "orders-b"]);
        let epoch = joined.member_epoch;

        // Nothing changed: no new epoch.
        let same = group
            .heartbeat(heartbeat("m", epoch, Some(&owned)), t0, &topics)
            .unwrap();
        assert_eq!((same.member_epoch, same.assignment), (epoch, None));

        // A matching topic is created, the named one too, and one is deleted.
        topics.set("orders-c", 2);
        topics.set("payments", 1);
        topics.delete("orders-a");
        // It revokes the deleted topic's partition first, then moves to the new epoch.
        let revoking = group
            .heartbeat(heartbeat("m", epoch, Some(&owned)), t0, &topics)
            .unwrap();
        let kept = revoking.assignment.unwrap();
        assert_eq!(topic_names(&topics, &kept), ["orders-b"]);
        let moved = group
            .heartbeat(
                heartbeat("m", revoking.member_epoch, Some(&kept)),
                t0,
                &topics,
            )
            .unwrap();
        assert!(moved.member_epoch > epoch);
        let owned = moved.assignment.unwrap();
        assert_eq!(
            topic_names(&topics, &owned),
            ["orders-b", "orders-c", "payments"]
        );
        let description = group.describe();
        assert_eq!(
            description.members[0].subscribed_topic_regex.as_deref(),
            Some("orders-.*")
        );
        assert_eq!(description.members[0].subscribed_topic_names, ["payments"]);

        // An empty regex removes it.
        let cleared = HeartbeatRequest {
            subscribed_topic_regex: Some(String::new()),
            ..heartbeat("m", moved.member_epoch, Some(&owned))
        };
        let cleared = group.heartbeat(cleared, t0, &topics).unwrap();
        let owned = cleared.assignment.unwrap();
        assert_eq!(topic_names(&topics, &owned), ["payments"]);
        assert_eq!(group.describe().members[0].subscribed_topic_regex, None);
    }

    #[test]
    fn a_regex_is_enough_to_join_and_a_bad_one_is_refused() {
        let config = GroupConfig::default();
        let regex_only = |pattern: &str| HeartbeatRequest {
            subscribed_topic_names: None,
            subscribed_topic_regex: Some(pattern.into()),
            ..joining("m", &[])
        };
        assert_eq!(
            ConsumerGroup::validate_request(&config, 1, &regex_only("^t.*")),
            Ok(())
        );
        // RE2 refuses backreferences and lookaround, as the regex crate does; a broken
        // pattern stays broken when anchored.
        for bad in ["(", "(a)\\1", "(?=a)", "a)|(b", "[z-a]"] {
            let refused =
                ConsumerGroup::validate_request(&config, 1, &regex_only(bad)).unwrap_err();
            assert_eq!(
                refused.error,
                ResponseError::InvalidRegularExpression,
                "{bad}"
            );
            assert!(refused.message.contains(bad), "{}", refused.message);
        }
        let neither = HeartbeatRequest {
            subscribed_topic_names: None,
            ..joining("m", &[])
        };
        assert_eq!(
            ConsumerGroup::validate_request(&config, 1, &neither)
                .unwrap_err()
                .error,
            ResponseError::InvalidRequest
        );
    }

    #[test]
    fn a_member_whose_session_times_out_is_fenced() {
        let topics = TestTopics::new(&[("t", 4)]);
        let t0 = Instant::now();
        let mut group = group();
        group.heartbeat(joining("a", &["t"]), t0, &topics).unwrap();
        group
            .heartbeat(joining("b", &["t"]), t0 + SESSION / 2, &topics)
            .unwrap();
        assert_eq!(group.next_deadline(), Some(t0 + SESSION));
        group.expire(t0 + SESSION);
        assert_eq!(group.describe().members.len(), 1);
        let error = group
            .heartbeat(heartbeat("a", 1, None), t0 + SESSION, &topics)
            .unwrap_err();
        assert_eq!(error.error, ResponseError::UnknownMemberId);
        let b = group
            .heartbeat(
                heartbeat("b", 2, Some(&Assignment::new())),
                t0 + SESSION,
                &topics,
            )
            .unwrap();
        assert_eq!(count(b.assignment.as_ref().unwrap()), 4);
        group.expire(t0 + SESSION * 2);
        assert!(group.is_empty());
        assert_eq!(group.state(), "Empty");
    }

    #[test]
    fn a_member_that_does_not_revoke_in_time_is_fenced() {
        let topics = TestTopics::new(&[("t", 2)]);
        let t0 = Instant::now();
        let mut group = group();
        let mut slow = joining("slow", &["t"]);
        slow.rebalance_timeout_ms = 1_000;
        let owned = group
            .heartbeat(slow, t0, &topics)
            .unwrap()
            .assignment
            .unwrap();
        group
            .heartbeat(joining("new", &["t"]), t0, &topics)
            .unwrap();
        group
            .heartbeat(heartbeat("slow", 1, Some(&owned)), t0, &topics)
            .unwrap();
        assert_eq!(group.next_deadline(), Some(t0 + Duration::from_secs(1)));
        group.expire(t0 + Duration::from_secs(1));
        assert_eq!(group.describe().members.len(), 1);
    }

    #[test]
    fn epochs_are_checked() {
        let topics = TestTopics::new(&[("t", 2)]);
        let t0 = Instant::now();
        let mut group = group();
        let owned = group
            .heartbeat(joining("a", &["t"]), t0, &topics)
            .unwrap()
            .assignment
            .unwrap();
        let fenced = |result: Result<HeartbeatResponse, GroupError>| result.unwrap_err().error;
        assert_eq!(
            fenced(group.heartbeat(heartbeat("a", 5, None), t0, &topics)),
            ResponseError::FencedMemberEpoch
        );
        assert_eq!(
            fenced(group.heartbeat(heartbeat("x", 1, None), t0, &topics)),
            ResponseError::UnknownMemberId
        );
        // New partitions bump the epoch; a member one epoch behind that owns a subset of its
        // assignment only lost a response.
        let mut topics = topics;
        topics.set("t", 3);
        let a = group
            .heartbeat(heartbeat("a", 1, Some(&owned)), t0, &topics)
            .unwrap();
        assert_eq!(
            (a.member_epoch, count(a.assignment.as_ref().unwrap())),
            (2, 3)
        );
        assert!(group
            .heartbeat(heartbeat("a", 1, Some(&owned)), t0, &topics)
            .is_ok());
        assert_eq!(
            fenced(group.heartbeat(heartbeat("a", 1, None), t0, &topics)),
            ResponseError::FencedMemberEpoch
        );
        // Epoch 0 rejoins.
        assert!(group.heartbeat(joining("a", &["t"]), t0, &topics).is_ok());
    }

    #[test]
    fn a_static_member_returns_to_its_partitions_unnoticed() {
        let topics = TestTopics::new(&[("t", 4)]);
        let t0 = Instant::now();
        let mut group = group();
        let static_join = |member_id: &str| HeartbeatRequest {
            instance_id: Some("i".to_string()),
            ..joining(member_id, &["t"])
        };
        let owned = group
            .heartbeat(static_join("s1"), t0, &topics)
            .unwrap()
            .assignment
            .unwrap();
        let other = group.heartbeat(joining("o", &["t"]), t0, &topics).unwrap();
        assert_eq!(count(other.assignment.as_ref().unwrap()), 0);
        let s1 = group
            .heartbeat(
                HeartbeatRequest {
                    instance_id: Some("i".into()),
                    ..heartbeat("s1", 1, Some(&owned))
                },
                t0,
                &topics,
            )
            .unwrap();
        let kept = s1.assignment.unwrap();
        let s1 = group
            .heartbeat(
                HeartbeatRequest {
                    instance_id: Some("i".into()),
                    ..heartbeat("s1", 1, Some(&kept))
                },
                t0,
                &topics,
            )
            .unwrap();
        assert_eq!(s1.member_epoch, 2);
        let o = group
            .heartbeat(heartbeat("o", 2, Some(&Assignment::new())), t0, &topics)
            .unwrap();
        let o_owned = o.assignment.unwrap();
        let epoch = group.group_epoch;

        // A second instance cannot join while the first is there.
        let duplicate = group.heartbeat(static_join("s2"), t0, &topics).unwrap_err();
        assert_eq!(duplicate.error, ResponseError::UnreleasedInstanceId);
        // It leaves for now and comes back under a new member id: same partitions, no rebalance.
        let leave = HeartbeatRequest {
            instance_id: Some("i".into()),
            ..heartbeat("s1", LEAVE_GROUP_STATIC_MEMBER_EPOCH, None)
        };
        group.heartbeat(leave, t0, &topics).unwrap();
        let s2 = group.heartbeat(static_join("s2"), t0, &topics).unwrap();
        assert_eq!(s2.assignment.unwrap(), kept);
        assert_eq!(group.group_epoch, epoch);
        let o = group
            .heartbeat(heartbeat("o", 2, Some(&o_owned)), t0, &topics)
            .unwrap();
        assert_eq!((o.member_epoch, o.assignment), (2, None));
        let old = HeartbeatRequest {
            instance_id: Some("i".into()),
            ..heartbeat("s1", 2, None)
        };
        assert_eq!(
            group.heartbeat(old, t0, &topics).unwrap_err().error,
            ResponseError::FencedInstanceId
        );
    }

    #[test]
    fn requests_are_validated_like_kafka() {
        let config = GroupConfig::default();
        let check = |version, request: HeartbeatRequest| {
            ConsumerGroup::validate_request(&config, version, &request)
                .map_err(|e| (e.error, e.message))
        };
        assert!(check(1, joining("m", &["t"])).is_ok());
        assert_eq!(
            check(1, joining("", &["t"])).unwrap_err().1,
            "MemberId can't be empty."
        );
        assert!(
            check(0, joining("", &["t"])).is_ok(),
            "v0: the coordinator picks the id"
        );
        let no_timeout = HeartbeatRequest {
            rebalance_timeout_ms: -1,
            ..joining("m", &["t"])
        };
        assert_eq!(
            check(1, no_timeout).unwrap_err().0,
            ResponseError::InvalidRequest
        );
        let owning = HeartbeatRequest {
            owned_partitions: None,
            ..joining("m", &["t"])
        };
        assert_eq!(
            check(1, owning).unwrap_err().1,
            "TopicPartitions must be empty when (re-)joining."
        );
        let static_leave = heartbeat("m", LEAVE_GROUP_STATIC_MEMBER_EPOCH, None);
        assert_eq!(
            check(1, static_leave).unwrap_err().1,
            "InstanceId can't be null."
        );
        let sticky = HeartbeatRequest {
            server_assignor: Some("sticky".into()),
            ..joining("m", &["t"])
        };
        assert_eq!(
            check(1, sticky).unwrap_err().0,
            ResponseError::UnsupportedAssignor
        );
        let range = HeartbeatRequest {
            server_assignor: Some("range".into()),
            ..joining("m", &["t"])
        };
        assert!(check(1, range).is_ok());
    }

    #[test]
    fn offset_commits_and_fetches_check_the_member_epoch() {
        let topics = TestTopics::new(&[("t", 1)]);
        let mut group = group();
        assert_eq!(group.validate_offset_commit("", -1, 9), Ok(()));
        group
            .heartbeat(joining("a", &["t"]), Instant::now(), &topics)
            .unwrap();
        assert_eq!(group.validate_offset_commit("a", 1, 9), Ok(()));
        assert_eq!(
            group.validate_offset_commit("a", 0, 9),
            Err(ResponseError::StaleMemberEpoch)
        );
        assert_eq!(
            group.validate_offset_commit("a", 1, 8),
            Err(ResponseError::UnsupportedVersion)
        );
        assert_eq!(
            group.validate_offset_commit("", -1, 9),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(group.validate_offset_fetch(None, -1), Ok(()));
        assert_eq!(group.validate_offset_fetch(Some("a"), 1), Ok(()));
        assert_eq!(
            group.validate_offset_fetch(Some("a"), 2),
            Err(ResponseError::StaleMemberEpoch)
        );
        assert_eq!(
            group
                .subscribed_topic_names()
                .into_iter()
                .collect::<Vec<_>>(),
            ["t"]
        );
    }
}
