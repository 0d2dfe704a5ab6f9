//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as Kafka's group
//! coordinator runs it. An empty group goes to PreparingRebalance when a member joins, waits
//! for every member to (re)join, hands the leader the members' subscriptions
//! (CompletingRebalance), and becomes Stable once the leader's assignment arrives; any change
//! of membership starts the next generation. Members that stop heart-beating are removed.
//! Static members (`group.instance.id`) keep their place and assignment when they restart
//! within their session timeout.
//!
//! A response that must wait (JoinGroup until the join phase completes, SyncGroup until the
//! leader's assignment arrives) is a oneshot sender kept on its member. Every method takes
//! the current time; the group's timer task calls [`ClassicGroup::expire`] at
//! [`ClassicGroup::next_deadline`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use proto_compat::kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};
use uuid::Uuid;

use super::config::GroupConfig;
use super::consumer_protocol;
use super::group_record::{ClassicMemberRecord, ClassicRecord, HexBytes};
use crate::clock;

/// How long a new member's JoinGroup may wait for the join phase (Kafka's
/// `group.classic.new.member.join.timeout.ms`): its client may have given up and retried.
const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    /// Kafka's name, as DescribeGroups and ListGroups report it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

/// A JoinGroup request, whatever its version.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty for a member that joins for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member gets MEMBER_ID_REQUIRED and joins again with its id.
    pub require_known_member_id: bool,
    /// v9+: a static leader that rejoins a stable group is told to skip the assignment.
    pub supports_skip_assignment: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinResponse {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// The static leader rejoined a stable group: it gets the members but must not assign.
    pub skip_assignment: bool,
    pub member_id: String,
    /// Only for the leader.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    pub fn error(member_id: &str, error: ResponseError) -> Self {
        JoinResponse {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A SyncGroup request, whatever its version.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    /// v5+; None: not checked.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment, by member id.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncResponse {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ResponseError) -> Self {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDescription {
    pub state: ClassicState,
    pub protocol_type: String,
    /// The selected protocol, once Stable.
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The metadata of the selected protocol and the assignment, once Stable.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<oneshot::Sender<JoinResponse>>,
    awaiting_sync: Option<oneshot::Sender<SyncResponse>>,
    /// Has not been through a completed join phase yet.
    is_new: bool,
    /// Removed unless it heartbeats by then; None while it waits on the coordinator.
    session_deadline: Option<Instant>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    /// Joined with exactly these protocols and metadata.
    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn reply_join(&mut self, response: JoinResponse) {
        if let Some(reply) = self.awaiting_join.take() {
            let _ = reply.send(response);
        }
    }

    fn reply_sync(&mut self, response: SyncResponse) {
        if let Some(reply) = self.awaiting_sync.take() {
            let _ = reply.send(response);
        }
    }
}

/// The first rebalance of an empty group waits `group.initial.rebalance.delay.ms` for more
/// members, again each time one joins, up to the rebalance timeout in all.
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    delay: Duration,
    remaining: Duration,
    member_joined: bool,
}

#[derive(Debug)]
pub struct ClassicGroup {
    group_id: String,
    config: Arc<GroupConfig>,
    state: ClassicState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or time out.
    pending_members: HashMap<String, Instant>,
    /// Members that have not sent SyncGroup for the current generation.
    pending_sync_members: HashSet<String>,
    /// The topics the members subscribe to, if they use Kafka's consumer protocol.
    subscribed_topics: Option<HashSet<String>>,
    join_deadline: Option<Instant>,
    initial_delay: Option<InitialDelay>,
    sync_deadline: Option<Instant>,
    /// When the group last became empty, in milliseconds since the Unix epoch.
    empty_since_ms: i64,
    /// Its record as of the last time it settled or emptied, until the writer takes it.
    settled_record: Option<Option<Box<ClassicRecord>>>,
}

impl ClassicGroup {
    pub fn new(group_id: &str, config: Arc<GroupConfig>) -> Self {
        ClassicGroup {
            group_id: group_id.to_string(),
            config,
            state: ClassicState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync_members: HashSet::new(),
            subscribed_topics: None,
            join_deadline: None,
            initial_delay: None,
            sync_deadline: None,
            empty_since_ms: clock::now_ms(),
            settled_record: None,
        }
    }

    /// An empty group in the place of an empty group of the other protocol, whose record goes
    /// with it should the writer not have deleted it yet.
    pub fn replacing(group_id: &str, config: Arc<GroupConfig>) -> Self {
        ClassicGroup {
            settled_record: Some(None),
            ..ClassicGroup::new(group_id, config)
        }
    }

    /// The group as its record describes it, Stable, each member with a fresh session.
    pub fn from_record(
        group_id: &str,
        config: Arc<GroupConfig>,
        record: ClassicRecord,
        now: Instant,
    ) -> Self {
        let mut group = ClassicGroup::new(group_id, config);
        group.generation_id = record.generation_id;
        group.protocol_type = Some(record.protocol_type);
        group.protocol_name = Some(record.protocol_name);
        group.leader_id = Some(record.leader);
        for member in record.members {
            let session_timeout = Duration::from_millis(member.session_timeout_ms);
            if let Some(instance) = &member.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), member.member_id.clone());
            }
            let member = Member {
                member_id: member.member_id,
                group_instance_id: member.group_instance_id,
                client_id: member.client_id,
                client_host: member.client_host,
                session_timeout,
                rebalance_timeout: Duration::from_millis(member.rebalance_timeout_ms),
                protocols: member
                    .protocols
                    .into_iter()
                    .map(|(name, metadata)| (name, metadata.0))
                    .collect(),
                assignment: member.assignment.0,
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                session_deadline: Some(now + session_timeout),
            };
            group.members.insert(member.member_id.clone(), member);
        }
        if !group.members.is_empty() {
            group.state = ClassicState::Stable;
            group.subscribed_topics = group.read_subscriptions();
        }
        group
    }

    /// A consumer group of classic members only as a classic group (Kafka's online
    /// downgrade): its record is written, and the members rebalance, the coordinator's
    /// assignment giving way to their own assignor's.
    pub fn downgraded(
        group_id: &str,
        config: Arc<GroupConfig>,
        record: ClassicRecord,
        now: Instant,
    ) -> Self {
        let mut group = ClassicGroup::from_record(group_id, config, record, now);
        group.settle_record();
        group.prepare_rebalance(now, "the group was converted from a consumer group");
        group
    }

    /// The group as it is, for its conversion into a consumer group (Kafka's online
    /// upgrade): members waiting in JoinGroup or SyncGroup are told to join again. None
    /// unless its members are Kafka consumers.
    pub fn take_for_upgrade(&mut self) -> Option<ClassicRecord> {
        if self.protocol_type() != consumer_protocol::PROTOCOL_TYPE {
            return None;
        }
        for member in self.members.values_mut() {
            let member_id = member.member_id.clone();
            member.reply_join(JoinResponse::error(
                &member_id,
                ResponseError::RebalanceInProgress,
            ));
            member.reply_sync(SyncResponse::error(ResponseError::RebalanceInProgress));
        }
        self.record()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Whether it settled or emptied since its record was last taken.
    pub fn record_changed(&self) -> bool {
        self.settled_record.is_some()
    }

    /// Some when the group settled or emptied since the last call: its record as of then,
    /// None for an empty group, which keeps no record.
    pub fn take_record(&mut self) -> Option<Option<ClassicRecord>> {
        Some(self.settled_record.take()?.map(|record| *record))
    }

    /// Keeps the record of the group as it is now, settled (or empty): a rebalance that
    /// starts before the writer takes it must not reach the store half done.
    fn settle_record(&mut self) {
        self.settled_record = Some(self.record().map(Box::new));
    }

    fn record(&self) -> Option<ClassicRecord> {
        if self.members.is_empty() {
            return None;
        }
        let members = self
            .members
            .values()
            .map(|m| ClassicMemberRecord {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout.as_millis() as u64,
                rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                protocols: m
                    .protocols
                    .iter()
                    .map(|(name, metadata)| (name.clone(), HexBytes(metadata.clone())))
                    .collect(),
                assignment: HexBytes(m.assignment.clone()),
            })
            .collect();
        Some(ClassicRecord {
            protocol_type: self.protocol_type().to_string(),
            protocol_name: self.protocol_name.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            leader: self.leader_id.clone().unwrap_or_default(),
            members,
        })
    }

    pub fn state(&self) -> ClassicState {
        self.state
    }

    pub fn is_empty(&self) -> bool {
        self.state == ClassicState::Empty
    }

    /// The protocol type of its members ("consumer" for Kafka consumers), "" if none joined.
    pub fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or_default()
    }

    /// When the group became empty; None while it has members.
    pub fn empty_since_ms(&self) -> Option<i64> {
        self.is_empty().then_some(self.empty_since_ms)
    }

    pub fn join(
        &mut self,
        request: JoinRequest,
        now: Instant,
        reply: oneshot::Sender<JoinResponse>,
    ) {
        if !self.accepts_joining_member(&request.member_id) {
            let _ = reply.send(JoinResponse::error("", ResponseError::GroupMaxSizeReached));
        } else if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            let error = ResponseError::InconsistentGroupProtocol;
            let _ = reply.send(JoinResponse::error(&request.member_id, error));
        } else if request.member_id.is_empty() {
            self.join_new_member(request, now, reply);
        } else {
            self.join_existing_member(request, now, reply);
        }
    }

    fn join_new_member(
        &mut self,
        request: JoinRequest,
        now: Instant,
        reply: oneshot::Sender<JoinResponse>,
    ) {
        // Kafka's format: the instance id (or else the client id), a dash and a UUID.
        let prefix = request
            .group_instance_id
            .as_deref()
            .unwrap_or(&request.client_id);
        let member_id = format!("{prefix}-{}", Uuid::new_v4());
        let existing_static = request
            .group_instance_id
            .as_ref()
            .and_then(|instance| self.static_members.get(instance))
            .cloned();
        if let Some(old_member_id) = existing_static {
            self.replace_static_member(&old_member_id, member_id, request, now, reply);
        } else if request.group_instance_id.is_none() && request.require_known_member_id {
            self.pending_members
                .insert(member_id.clone(), now + request.session_timeout);
            let _ = reply.send(JoinResponse::error(
                &member_id,
                ResponseError::MemberIdRequired,
            ));
        } else {
            self.add_member_and_rebalance(member_id, request, now, reply);
        }
    }

    fn join_existing_member(
        &mut self,
        request: JoinRequest,
        now: Instant,
        reply: oneshot::Sender<JoinResponse>,
    ) {
        let member_id = request.member_id.clone();
        if self.pending_members.contains_key(&member_id) {
            self.add_member_and_rebalance(member_id, request, now, reply);
            return;
        }
        if let Err(error) = self.validate_member(&member_id, request.group_instance_id.as_deref()) {
            let _ = reply.send(JoinResponse::error(&member_id, error));
            return;
        }
        let member = &self.members[&member_id];
        let unchanged = member.matches(&request.protocols);
        let is_leader = self.leader_id.as_deref() == Some(member_id.as_str());
        match self.state {
            ClassicState::PreparingRebalance => {
                self.update_member_and_rebalance(request, now, reply)
            }
            // It missed the JoinGroup response: the same one again.
            ClassicState::CompletingRebalance if unchanged => {
                let members = if is_leader {
                    self.joined_members()
                } else {
                    Vec::new()
                };
                let _ = reply.send(self.joined(&member_id, members, false));
            }
            // A follower with unchanged metadata just syncs; the leader rejoins to force a
            // rebalance (for changes the metadata does not show, such as new partitions).
            ClassicState::Stable if unchanged && !is_leader => {
                let _ = reply.send(self.joined(&member_id, Vec::new(), false));
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                self.update_member_and_rebalance(request, now, reply)
            }
            ClassicState::Empty => {
                let _ = reply.send(JoinResponse::error(
                    &member_id,
                    ResponseError::UnknownMemberId,
                ));
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        request: JoinRequest,
        now: Instant,
        reply: oneshot::Sender<JoinResponse>,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        if let Some(instance) = &request.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        if let Some(delay) = &mut self.initial_delay {
            delay.member_joined = true;
        }
        self.pending_members.remove(&member_id);
        tracing::info!(group = %self.group_id, member = %member_id, state = self.state.as_str(), "member joins");
        self.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: request.group_instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                session_timeout: request.session_timeout,
                rebalance_timeout: request.rebalance_timeout,
                protocols: request.protocols,
                assignment: Bytes::new(),
                awaiting_join: Some(reply),
                awaiting_sync: None,
                is_new: true,
                // It cannot heartbeat before its JoinGroup is answered.
                session_deadline: Some(now + NEW_MEMBER_JOIN_TIMEOUT),
            },
        );
        self.maybe_prepare_rebalance(now, "a member joined");
        self.maybe_complete_join(now);
    }

    fn update_member_and_rebalance(
        &mut self,
        request: JoinRequest,
        now: Instant,
        reply: oneshot::Sender<JoinResponse>,
    ) {
        let member = self
            .members
            .get_mut(&request.member_id)
            .expect("validated member");
        member.protocols = request.protocols;
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        member.awaiting_join = Some(reply);
        self.maybe_prepare_rebalance(now, "a member rejoined");
        self.maybe_complete_join(now);
    }

    /// A static member restarted with a new member id: it takes the old one's place and
    /// assignment, and the old instance, if still around, is fenced.
    fn replace_static_member(
        &mut self,
        old_member_id: &str,
        new_member_id: String,
        request: JoinRequest,
        now: Instant,
        reply: oneshot::Sender<JoinResponse>,
    ) {
        let current_leader = self.leader_id.clone().unwrap_or_default();
        let supports_skip_assignment = request.supports_skip_assignment;
        let mut member = self.members.remove(old_member_id).expect("static member");
        member.reply_join(JoinResponse::error(
            old_member_id,
            ResponseError::FencedInstanceId,
        ));
        member.reply_sync(SyncResponse::error(ResponseError::FencedInstanceId));
        tracing::info!(group = %self.group_id, old = old_member_id, new = %new_member_id, state = self.state.as_str(), "static member replaced");
        member.member_id = new_member_id.clone();
        member.protocols = request.protocols;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        member.awaiting_join = Some(reply);
        member.session_deadline = Some(now + member.session_timeout);
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), new_member_id.clone());
        }
        if self.leader_id.as_deref() == Some(old_member_id) {
            self.leader_id = Some(new_member_id.clone());
        }
        if self.pending_sync_members.remove(old_member_id) {
            self.pending_sync_members.insert(new_member_id.clone());
        }
        self.members.insert(new_member_id.clone(), member);
        match self.state {
            // Nothing changes for the others unless the group's protocol would.
            ClassicState::Stable
                if self.protocol_name.as_deref() == Some(self.select_protocol()) =>
            {
                let is_leader = self.leader_id.as_deref() == Some(new_member_id.as_str());
                let response = if supports_skip_assignment {
                    let members = if is_leader {
                        self.joined_members()
                    } else {
                        Vec::new()
                    };
                    self.joined(&new_member_id, members, is_leader)
                } else {
                    // The old leader id, so that a leader does not see itself as one and
                    // send an assignment a stable group would not pass on.
                    JoinResponse {
                        leader: current_leader,
                        ..self.joined(&new_member_id, Vec::new(), false)
                    }
                };
                self.members
                    .get_mut(&new_member_id)
                    .expect("just inserted")
                    .reply_join(response);
                self.settle_record();
            }
            // The leader may have been sent the old member id: assign again. (Empty cannot
            // hold a static member; should it, a rebalance is still the safe answer.)
            ClassicState::Stable | ClassicState::CompletingRebalance | ClassicState::Empty => {
                self.prepare_rebalance(now, "a static member rejoined")
            }
            ClassicState::PreparingRebalance => self.maybe_complete_join(now),
        }
    }

    pub fn sync(
        &mut self,
        request: SyncRequest,
        now: Instant,
        reply: oneshot::Sender<SyncResponse>,
    ) {
        let member_id = request.member_id.as_str();
        let checked = self
            .validate_member(member_id, request.group_instance_id.as_deref())
            .and_then(|()| {
                let type_differs = request
                    .protocol_type
                    .as_ref()
                    .is_some_and(|t| self.protocol_type.as_ref() != Some(t));
                let name_differs = request
                    .protocol_name
                    .as_ref()
                    .is_some_and(|n| self.protocol_name.as_ref() != Some(n));
                if request.generation_id != self.generation_id {
                    Err(ResponseError::IllegalGeneration)
                } else if type_differs || name_differs {
                    Err(ResponseError::InconsistentGroupProtocol)
                } else {
                    Ok(())
                }
            });
        if let Err(error) = checked {
            let _ = reply.send(SyncResponse::error(error));
            return;
        }
        match self.state {
            ClassicState::Empty => {
                let _ = reply.send(SyncResponse::error(ResponseError::UnknownMemberId));
            }
            ClassicState::PreparingRebalance => {
                let _ = reply.send(SyncResponse::error(ResponseError::RebalanceInProgress));
            }
            ClassicState::CompletingRebalance => {
                self.members
                    .get_mut(member_id)
                    .expect("validated member")
                    .awaiting_sync = Some(reply);
                self.synced(member_id);
                if self.leader_id.as_deref() == Some(member_id) {
                    tracing::info!(group = %self.group_id, generation = self.generation_id, members = self.members.len(), "assignment received from the leader");
                    let mut assignments: HashMap<String, Bytes> =
                        request.assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment =
                            assignments.remove(&member.member_id).unwrap_or_default();
                    }
                    self.propagate_assignment(now);
                    self.state = ClassicState::Stable;
                    self.settle_record();
                }
            }
            ClassicState::Stable => {
                self.synced(member_id);
                let response = self.synced_response(member_id);
                let member = self.members.get_mut(member_id).expect("validated member");
                member.session_deadline = Some(now + member.session_timeout);
                let _ = reply.send(response);
            }
        }
    }

    fn synced(&mut self, member_id: &str) {
        self.pending_sync_members.remove(member_id);
        if self.pending_sync_members.is_empty() {
            self.sync_deadline = None;
        }
    }

    fn synced_response(&self, member_id: &str) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members[member_id].assignment.clone(),
        }
    }

    /// Answers every member waiting in SyncGroup with its assignment.
    fn propagate_assignment(&mut self, now: Instant) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.synced_response(&id);
            let member = self.members.get_mut(&id).expect("listed member");
            if member.awaiting_sync.is_some() {
                member.reply_sync(response);
                member.session_deadline = Some(now + member.session_timeout);
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        self.validate_member(member_id, group_instance_id)?;
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        if self.state == ClassicState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        let member = self.members.get_mut(member_id).expect("validated member");
        member.session_deadline = Some(now + member.session_timeout);
        match self.state {
            ClassicState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// One member of a LeaveGroup request. An empty member id with a group.instance.id
    /// removes that static member (an administrator's request).
    pub fn leave(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        let member_id = if member_id.is_empty() {
            group_instance_id
                .and_then(|instance| self.static_members.get(instance))
                .cloned()
                .ok_or(ResponseError::UnknownMemberId)?
        } else if self.pending_members.remove(member_id).is_some() {
            self.maybe_complete_join(now);
            return Ok(());
        } else {
            self.validate_member(member_id, group_instance_id)?;
            member_id.to_string()
        };
        tracing::info!(group = %self.group_id, member = %member_id, "member leaves");
        self.remove_member_and_rebalance(&member_id, now, "a member left");
        Ok(())
    }

    /// Kafka's checks of an OffsetCommit's generation and member. A negative generation
    /// (a tool, or a consumer that assigns partitions itself) may commit to an empty group.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        if generation_id < 0 && self.is_empty() {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if !self.is_empty() {
            return Err(ResponseError::UnknownMemberId);
        }
        if self.state == ClassicState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// For OffsetDelete on a group with members: the topics they subscribe to (None: every
    /// topic, as the subscriptions cannot be read). Err(NON_EMPTY_GROUP) unless the members
    /// use Kafka's consumer protocol.
    pub fn subscribed_topics(&self) -> Result<Option<&HashSet<String>>, ResponseError> {
        if self.protocol_type.as_deref() != Some(consumer_protocol::PROTOCOL_TYPE) {
            return Err(ResponseError::NonEmptyGroup);
        }
        Ok(self.subscribed_topics.as_ref())
    }

    pub fn describe(&self) -> GroupDescription {
        let protocol_name = match self.state {
            ClassicState::Stable => self.protocol_name.clone().unwrap_or_default(),
            _ => String::new(),
        };
        let members = self
            .members
            .values()
            .map(|member| {
                let stable = self.state == ClassicState::Stable;
                MemberDescription {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    metadata: if stable {
                        member.metadata(&protocol_name)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        member.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                }
            })
            .collect();
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type().to_string(),
            protocol_name,
            members,
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self.members.values().filter_map(|m| m.session_deadline);
        let pending = self.pending_members.values().copied();
        [self.join_deadline, self.sync_deadline]
            .into_iter()
            .flatten()
            .chain(members)
            .chain(pending)
            .min()
    }

    /// Handles every deadline that has passed.
    pub fn expire(&mut self, now: Instant) {
        let pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for member_id in &pending {
            tracing::info!(group = %self.group_id, member = %member_id, "pending member did not join within its session timeout");
            self.pending_members.remove(member_id);
        }
        if !pending.is_empty() {
            self.maybe_complete_join(now);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline.is_some_and(|deadline| deadline <= now))
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in expired {
            let member = self.members.get_mut(&member_id).expect("listed member");
            if !member.is_new && (member.awaiting_join.is_some() || member.awaiting_sync.is_some())
            {
                // It waits on the coordinator; its session restarts with the answer.
                member.session_deadline = None;
                continue;
            }
            tracing::info!(group = %self.group_id, member = %member_id, "member failed to heartbeat within its session timeout, removing it");
            self.remove_member_and_rebalance(&member_id, now, "a member's session timed out");
        }
        if self.join_deadline.is_some_and(|deadline| deadline <= now) {
            self.join_deadline_passed(now);
        }
        if self.sync_deadline.is_some_and(|deadline| deadline <= now) {
            self.sync_deadline = None;
            if matches!(
                self.state,
                ClassicState::CompletingRebalance | ClassicState::Stable
            ) {
                let late: Vec<String> = self.pending_sync_members.drain().collect();
                tracing::info!(group = %self.group_id, members = ?late, "removing members that did not send SyncGroup in time");
                for member_id in &late {
                    self.remove_member(member_id);
                }
                self.prepare_rebalance(now, "members did not sync in time");
            }
        }
    }

    fn join_deadline_passed(&mut self, now: Instant) {
        match self.initial_delay {
            Some(delay) if delay.member_joined && !delay.remaining.is_zero() => {
                let next = self.config.initial_rebalance_delay.min(delay.remaining);
                self.initial_delay = Some(InitialDelay {
                    delay: next,
                    remaining: delay.remaining.saturating_sub(delay.delay),
                    member_joined: false,
                });
                self.join_deadline = Some(now + next);
            }
            _ => self.complete_join(now),
        }
    }

    /// A member leaves or fails: the others rebalance without it.
    fn remove_member_and_rebalance(&mut self, member_id: &str, now: Instant, reason: &str) {
        self.remove_member(member_id);
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.prepare_rebalance(now, reason)
            }
            ClassicState::PreparingRebalance => self.maybe_complete_join(now),
            ClassicState::Empty => {}
        }
    }

    /// Removes a member, answering a request it still waits on with UNKNOWN_MEMBER_ID so
    /// that a live client joins again.
    fn remove_member(&mut self, member_id: &str) {
        let Some(mut member) = self.members.remove(member_id) else {
            return;
        };
        member.reply_join(JoinResponse::error("", ResponseError::UnknownMemberId));
        member.reply_sync(SyncResponse::error(ResponseError::UnknownMemberId));
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync_members.remove(member_id);
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
    }

    fn maybe_prepare_rebalance(&mut self, now: Instant, reason: &str) {
        if self.state != ClassicState::PreparingRebalance {
            self.prepare_rebalance(now, reason);
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, reason: &str) {
        if self.state == ClassicState::CompletingRebalance {
            // Whoever waits for an assignment must join again.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                member.reply_sync(SyncResponse::error(ResponseError::RebalanceInProgress));
            }
        }
        self.sync_deadline = None;
        if self.state == ClassicState::Empty {
            let delay = self.config.initial_rebalance_delay;
            self.initial_delay = Some(InitialDelay {
                delay,
                remaining: self.rebalance_timeout().saturating_sub(delay),
                member_joined: false,
            });
            self.join_deadline = Some(now + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline = Some(now + self.rebalance_timeout());
        }
        tracing::info!(group = %self.group_id, generation = self.generation_id, reason, "preparing to rebalance");
        self.state = ClassicState::PreparingRebalance;
        self.maybe_complete_join(now);
    }

    /// Completes the join phase once every member has joined, unless this is the first
    /// rebalance, which waits out its delay for more members.
    fn maybe_complete_join(&mut self, now: Instant) {
        let all_joined = self.pending_members.is_empty()
            && self.members.values().all(|m| m.awaiting_join.is_some());
        if self.state == ClassicState::PreparingRebalance
            && self.initial_delay.is_none()
            && all_joined
        {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        self.join_deadline = None;
        self.initial_delay = None;
        // Dynamic members that did not rejoin are gone; static ones keep their place.
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        if !missing.is_empty() {
            tracing::info!(group = %self.group_id, members = ?missing, "removing members that did not rejoin");
        }
        for member_id in &missing {
            self.remove_member(member_id);
        }
        if !self.members.is_empty() && !self.elect_joined_leader() {
            // Nobody rejoined: wait for their sessions to time out.
            self.join_deadline = Some(now + self.rebalance_timeout());
            return;
        }
        self.generation_id += 1;
        self.pending_sync_members.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = None;
            self.state = ClassicState::Empty;
            self.empty_since_ms = clock::now_ms();
            self.settle_record();
            tracing::info!(group = %self.group_id, generation = self.generation_id, "group is now empty");
            return;
        }
        self.protocol_name = Some(self.select_protocol().to_string());
        self.subscribed_topics = self.read_subscriptions();
        self.state = ClassicState::CompletingRebalance;
        tracing::info!(group = %self.group_id, generation = self.generation_id, members = self.members.len(), "stabilized group");
        let leader_members = self.joined_members();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader_id.as_deref() == Some(id.as_str());
            let members = if is_leader {
                leader_members.clone()
            } else {
                Vec::new()
            };
            let response = self.joined(&id, members, false);
            let member = self.members.get_mut(&id).expect("listed member");
            member.reply_join(response);
            member.session_deadline = Some(now + member.session_timeout);
            member.is_new = false;
            self.pending_sync_members.insert(id);
        }
        self.sync_deadline = Some(now + self.rebalance_timeout());
    }

    /// Keeps the leader if it rejoined, else picks a member that did; false if none did.
    fn elect_joined_leader(&mut self) -> bool {
        let joined = |m: &Member| m.awaiting_join.is_some();
        if let Some(leader) = self.leader_id.as_ref().and_then(|id| self.members.get(id)) {
            if joined(leader) {
                return true;
            }
        }
        match self.members.values().find(|m| joined(m)) {
            Some(member) => {
                self.leader_id = Some(member.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// The protocol every member supports that most members prefer.
    fn select_protocol(&self) -> &str {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            let vote = member
                .protocols
                .iter()
                .map(|(name, _)| name.as_str())
                .find(|name| self.members.values().all(|m| m.supports(name)));
            if let Some(vote) = vote {
                *votes.entry(vote).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, count)| *count)
            .map(|(name, _)| name)
            .unwrap_or_default()
    }

    /// The members' subscriptions, when they are Kafka consumers (for OffsetDelete).
    fn read_subscriptions(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some(consumer_protocol::PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for member in self.members.values() {
            let subscription = consumer_protocol::decode_subscription(&member.metadata(protocol))?;
            topics.extend(subscription.topics);
        }
        Some(topics)
    }

    fn joined(
        &self,
        member_id: &str,
        members: Vec<JoinedMember>,
        skip_assignment: bool,
    ) -> JoinResponse {
        JoinResponse {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            skip_assignment,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// What the leader needs to assign: every member's metadata for the selected protocol.
    fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    /// Kafka's check of a request's member id and group.instance.id.
    fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        match group_instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Err(ResponseError::UnknownMemberId),
                Some(current) if current != member_id => Err(ResponseError::FencedInstanceId),
                Some(_) => Ok(()),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// An empty group takes any non-empty protocol list; otherwise the protocol type must
    /// match and one protocol must be supported by every member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.members.values().all(|m| m.supports(name)))
    }

    /// Within `group.max.size`: counting those that rejoined while rebalancing, as members
    /// that do not rejoin will be removed.
    fn accepts_joining_member(&self, member_id: &str) -> bool {
        let max = self.config.max_size;
        let member = self.members.get(member_id);
        match self.state {
            ClassicState::Empty => true,
            ClassicState::PreparingRebalance => {
                member.is_some_and(|m| m.awaiting_join.is_some())
                    || self
                        .members
                        .values()
                        .filter(|m| m.awaiting_join.is_some())
                        .count()
                        < max
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                member.is_some() || self.members.len() < max
            }
        }
    }

    /// The longest rebalance timeout of the members.
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot::error::TryRecvError;

    use super::*;

    const SESSION: Duration = Duration::from_secs(10);
    const REBALANCE: Duration = Duration::from_secs(30);
    const DELAY: Duration = Duration::from_millis(100);

    fn group() -> ClassicGroup {
        let config = GroupConfig {
            initial_rebalance_delay: DELAY,
            ..GroupConfig::default()
        };
        ClassicGroup::new("g", Arc::new(config))
    }

    fn request(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: "client".to_string(),
            client_host: "/127.0.0.1".to_string(),
            session_timeout: SESSION,
            rebalance_timeout: REBALANCE,
            protocol_type: "consumer".to_string(),
            protocols: vec![("range".to_string(), Bytes::from_static(b"subscription"))],
            require_known_member_id: true,
            supports_skip_assignment: true,
        }
    }

    fn static_request(member_id: &str, instance: &str) -> JoinRequest {
        JoinRequest {
            group_instance_id: Some(instance.to_string()),
            ..request(member_id)
        }
    }

    fn join(
        group: &mut ClassicGroup,
        request: JoinRequest,
        now: Instant,
    ) -> oneshot::Receiver<JoinResponse> {
        let (reply, response) = oneshot::channel();
        group.join(request, now, reply);
        response
    }

    fn sync(
        group: &mut ClassicGroup,
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> oneshot::Receiver<SyncResponse> {
        let (reply, response) = oneshot::channel();
        let request = SyncRequest {
            member_id: member_id.to_string(),
            group_instance_id: None,
            generation_id,
            protocol_type: Some("consumer".to_string()),
            protocol_name: Some("range".to_string()),
            assignments,
        };
        group.sync(request, now, reply);
        response
    }

    /// A new dynamic member: MEMBER_ID_REQUIRED first, then it joins with its id.
    fn join_new(
        group: &mut ClassicGroup,
        now: Instant,
    ) -> (String, oneshot::Receiver<JoinResponse>) {
        let response = join(group, request(""), now).try_recv().unwrap();
        assert_eq!(response.error, Some(ResponseError::MemberIdRequired));
        assert!(
            response.member_id.starts_with("client-"),
            "{}",
            response.member_id
        );
        let member_id = response.member_id;
        let pending = join(group, request(&member_id), now);
        (member_id, pending)
    }

    /// A stable group of `n` members that synced; returns their ids, leader first.
    fn stable_group(n: usize, now: Instant) -> (ClassicGroup, Vec<String>) {
        let mut group = group();
        let mut pending: Vec<(String, _)> = (0..n).map(|_| join_new(&mut group, now)).collect();
        group.expire(now + DELAY);
        group.expire(now + 2 * DELAY);
        let responses: Vec<JoinResponse> = pending
            .iter_mut()
            .map(|(_, response)| response.try_recv().unwrap())
            .collect();
        let leader = responses[0].leader.clone();
        let mut ids: Vec<String> = pending.into_iter().map(|(id, _)| id).collect();
        ids.sort_by_key(|id| *id != leader);
        let assignments = ids
            .iter()
            .map(|id| (id.clone(), Bytes::from(format!("assignment of {id}"))))
            .collect();
        let generation = group.generation_id;
        sync(&mut group, &ids[0], generation, assignments, now)
            .try_recv()
            .unwrap();
        for id in &ids[1..] {
            sync(&mut group, id, generation, Vec::new(), now)
                .try_recv()
                .unwrap();
        }
        assert_eq!(group.state(), ClassicState::Stable);
        (group, ids)
    }

    #[test]
    fn members_join_get_a_leader_and_their_assignments() {
        let t0 = Instant::now();
        let mut group = group();
        let (a, mut a_joined) = join_new(&mut group, t0);
        assert_eq!(group.state(), ClassicState::PreparingRebalance);
        let (b, mut b_joined) = join_new(&mut group, t0 + DELAY / 2);
        // The first rebalance waits out its delay, longer as members keep coming.
        group.expire(t0 + DELAY);
        assert_eq!(a_joined.try_recv(), Err(TryRecvError::Empty));
        group.expire(t0 + 2 * DELAY);
        let (a_response, b_response) = (a_joined.try_recv().unwrap(), b_joined.try_recv().unwrap());
        assert_eq!(group.state(), ClassicState::CompletingRebalance);
        assert_eq!((a_response.error, a_response.generation_id), (None, 1));
        assert_eq!(a_response.leader, a);
        assert_eq!(a_response.protocol_name.as_deref(), Some("range"));
        let members: Vec<&str> = a_response
            .members
            .iter()
            .map(|m| m.member_id.as_str())
            .collect();
        assert_eq!(members.len(), 2);
        assert!(members.contains(&b.as_str()));
        assert!(
            b_response.members.is_empty(),
            "only the leader gets the members"
        );

        // A follower waits for the leader's assignment.
        let mut b_synced = sync(&mut group, &b, 1, Vec::new(), t0);
        assert_eq!(b_synced.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(group.heartbeat(&a, None, 1, t0), Ok(()));
        let assignments = vec![(a.clone(), Bytes::from("A")), (b.clone(), Bytes::from("B"))];
        let a_synced = sync(&mut group, &a, 1, assignments, t0).try_recv().unwrap();
        assert_eq!(a_synced.assignment, Bytes::from("A"));
        assert_eq!(b_synced.try_recv().unwrap().assignment, Bytes::from("B"));
        assert_eq!(group.state(), ClassicState::Stable);
        assert_eq!(group.next_deadline(), Some(t0 + SESSION));
        let description = group.describe();
        assert_eq!(
            (
                description.protocol_type.as_str(),
                description.protocol_name.as_str()
            ),
            ("consumer", "range")
        );
        assert!(description
            .members
            .iter()
            .all(|m| m.metadata == Bytes::from_static(b"subscription")));
    }

    #[test]
    fn heartbeats_tell_members_what_to_do() {
        let t0 = Instant::now();
        let (mut group, ids) = stable_group(2, t0);
        assert_eq!(group.heartbeat(&ids[1], None, 1, t0), Ok(()));
        assert_eq!(
            group.heartbeat("nobody", None, 1, t0),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            group.heartbeat(&ids[1], None, 0, t0),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            group.heartbeat(&ids[1], Some("instance"), 1, t0),
            Err(ResponseError::UnknownMemberId)
        );
        // The leader rejoining forces a rebalance, which the follower learns of.
        let _rejoined = join(&mut group, request(&ids[0]), t0);
        assert_eq!(group.state(), ClassicState::PreparingRebalance);
        assert_eq!(
            group.heartbeat(&ids[1], None, 1, t0),
            Err(ResponseError::RebalanceInProgress)
        );
        assert_eq!(
            sync(&mut group, &ids[1], 1, Vec::new(), t0)
                .try_recv()
                .unwrap()
                .error,
            Some(ResponseError::RebalanceInProgress)
        );
    }

    #[test]
    fn a_silent_member_is_removed_and_the_others_rebalance() {
        let t0 = Instant::now();
        let (mut group, ids) = stable_group(3, t0);
        let half = t0 + SESSION / 2;
        group.heartbeat(&ids[0], None, 1, half).unwrap();
        group.heartbeat(&ids[1], None, 1, half).unwrap();
        group.expire(t0 + SESSION);
        assert_eq!(group.state(), ClassicState::PreparingRebalance);
        assert_eq!(group.describe().members.len(), 2);
        // Both remaining members rejoin: the join phase completes at once.
        let mut a = join(&mut group, request(&ids[0]), t0 + SESSION);
        let mut b = join(&mut group, request(&ids[1]), t0 + SESSION);
        let (a, b) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        assert_eq!((a.generation_id, b.generation_id), (2, 2));
        assert_eq!(a.members.len() + b.members.len(), 2);
    }

    #[test]
    fn members_that_do_not_rejoin_in_time_are_removed() {
        let t0 = Instant::now();
        let (mut group, ids) = stable_group(2, t0);
        let mut leader = join(&mut group, request(&ids[0]), t0);
        // The follower keeps heart-beating but never rejoins.
        let mut now = t0;
        while now < t0 + REBALANCE {
            now += SESSION / 2;
            let _ = group.heartbeat(&ids[1], None, 1, now);
            group.expire(now);
        }
        let response = leader.try_recv().unwrap();
        assert_eq!(response.generation_id, 2);
        assert_eq!(response.members.len(), 1);
        assert_eq!(
            group.heartbeat(&ids[1], None, 1, now),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn a_leaving_member_starts_a_rebalance() {
        let t0 = Instant::now();
        let (mut group, ids) = stable_group(2, t0);
        assert_eq!(group.leave(&ids[1], None, t0), Ok(()));
        assert_eq!(
            group.leave(&ids[1], None, t0),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(group.state(), ClassicState::PreparingRebalance);
        let response = join(&mut group, request(&ids[0]), t0).try_recv().unwrap();
        assert_eq!((response.generation_id, response.members.len()), (2, 1));
        // The last one leaves: the group is empty and its offsets start to age.
        assert_eq!(group.leave(&ids[0], None, t0), Ok(()));
        assert!(group.is_empty());
        assert_eq!(group.generation_id, 3);
        assert!(group.empty_since_ms().is_some());
    }

    #[test]
    fn a_restarted_static_member_keeps_its_assignment_without_a_rebalance() {
        let t0 = Instant::now();
        let mut group = group();
        let mut s1 = join(&mut group, static_request("", "s1"), t0);
        let mut s2 = join(&mut group, static_request("", "s2"), t0);
        group.expire(t0 + DELAY);
        group.expire(t0 + 2 * DELAY);
        let (s1, s2) = (s1.try_recv().unwrap(), s2.try_recv().unwrap());
        assert!(s1.member_id.starts_with("s1-"), "{}", s1.member_id);
        let (leader, follower) = if s1.leader == s1.member_id {
            (s1, s2)
        } else {
            (s2, s1)
        };
        let assignments = vec![
            (leader.member_id.clone(), Bytes::from("L")),
            (follower.member_id.clone(), Bytes::from("F")),
        ];
        sync(&mut group, &leader.member_id, 1, assignments, t0)
            .try_recv()
            .unwrap();
        let follower_instance = if follower.member_id.starts_with("s1-") {
            "s1"
        } else {
            "s2"
        };

        // The follower restarts: a new member id, the same generation and assignment.
        let rejoined = join(&mut group, static_request("", follower_instance), t0)
            .try_recv()
            .unwrap();
        assert_eq!(rejoined.error, None);
        assert_ne!(rejoined.member_id, follower.member_id);
        assert_eq!(rejoined.generation_id, 1);
        assert_eq!(group.state(), ClassicState::Stable);
        let synced = sync(&mut group, &rejoined.member_id, 1, Vec::new(), t0)
            .try_recv()
            .unwrap();
        assert_eq!(synced.assignment, Bytes::from("F"));
        // The old instance is fenced; the leader carries on undisturbed.
        let mut old = static_request(&follower.member_id, follower_instance);
        old.protocols = rejoined_protocols();
        assert_eq!(
            join(&mut group, old, t0).try_recv().unwrap().error,
            Some(ResponseError::FencedInstanceId)
        );
        assert_eq!(group.heartbeat(&leader.member_id, None, 1, t0), Ok(()));

        // The leader restarts: v9 tells it to skip the assignment; older versions get
        // the old leader id so that it does not think it leads.
        let leader_instance = if follower_instance == "s1" {
            "s2"
        } else {
            "s1"
        };
        let response = join(&mut group, static_request("", leader_instance), t0)
            .try_recv()
            .unwrap();
        assert!(response.skip_assignment);
        assert_eq!(response.leader, response.member_id);
        assert_eq!(response.members.len(), 2);
        let old_version = JoinRequest {
            supports_skip_assignment: false,
            ..static_request("", leader_instance)
        };
        let response_v8 = join(&mut group, old_version, t0).try_recv().unwrap();
        assert!(!response_v8.skip_assignment);
        assert_eq!(response_v8.leader, response.member_id);
        assert!(response_v8.members.is_empty());
        assert_eq!(group.state(), ClassicState::Stable);
    }

    fn rejoined_protocols() -> Vec<(String, Bytes)> {
        request("").protocols
    }

    #[test]
    fn offset_commits_are_checked_like_kafka() {
        let t0 = Instant::now();
        let mut group = group();
        // Tools and self-assigning consumers commit to an empty group.
        assert_eq!(group.validate_offset_commit("", None, -1), Ok(()));
        let (a, _joined) = join_new(&mut group, t0);
        assert_eq!(
            group.validate_offset_commit("", None, -1),
            Err(ResponseError::UnknownMemberId)
        );
        group.expire(t0 + DELAY);
        assert_eq!(group.state(), ClassicState::CompletingRebalance);
        assert_eq!(
            group.validate_offset_commit(&a, None, 1),
            Err(ResponseError::RebalanceInProgress)
        );
        sync(&mut group, &a, 1, Vec::new(), t0).try_recv().unwrap();
        assert_eq!(group.validate_offset_commit(&a, None, 1), Ok(()));
        assert_eq!(
            group.validate_offset_commit(&a, None, 0),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            group.validate_offset_commit("x", None, 1),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn joins_that_do_not_fit_are_refused() {
        let t0 = Instant::now();
        let (mut group, _) = stable_group(1, t0);
        let mut other = request("");
        other.protocol_type = "connect".to_string();
        assert_eq!(
            join(&mut group, other, t0).try_recv().unwrap().error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        let mut unsupported = request("");
        unsupported.protocols = vec![("roundrobin".to_string(), Bytes::new())];
        assert_eq!(
            join(&mut group, unsupported, t0).try_recv().unwrap().error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        assert_eq!(
            join(&mut group, request("unknown"), t0)
                .try_recv()
                .unwrap()
                .error,
            Some(ResponseError::UnknownMemberId)
        );
        let config = GroupConfig {
            max_size: 1,
            ..GroupConfig::default()
        };
        group.config = Arc::new(config);
        assert_eq!(
            join(&mut group, request(""), t0).try_recv().unwrap().error,
            Some(ResponseError::GroupMaxSizeReached)
        );
    }

    #[test]
    fn a_group_in_the_place_of_another_deletes_its_record() {
        let mut replacing = ClassicGroup::replacing("g", Arc::new(GroupConfig::default()));
        assert!(replacing.record_changed());
        assert_eq!(replacing.take_record(), Some(None));
        assert_eq!(group().take_record(), None);
    }

    #[test]
    fn a_member_id_not_used_in_time_expires() {
        let t0 = Instant::now();
        let mut group = group();
        let response = join(&mut group, request(""), t0).try_recv().unwrap();
        assert_eq!(group.next_deadline(), Some(t0 + SESSION));
        group.expire(t0 + SESSION);
        assert_eq!(
            join(&mut group, request(&response.member_id), t0 + SESSION)
                .try_recv()
                .unwrap()
                .error,
            Some(ResponseError::UnknownMemberId)
        );
    }
}
