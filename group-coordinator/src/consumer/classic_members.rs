//! Classic members in a consumer group, as Kafka serves them during an online migration
//! between the protocols: a Kafka consumer that speaks JoinGroup, SyncGroup and Heartbeat is
//! a member like the others, its subscription read from its JoinGroup, its partitions from
//! the server-side assignor handed out by SyncGroup, its member epoch its generation. It
//! learns of a new target assignment from REBALANCE_IN_PROGRESS on its heartbeat and joins
//! again; the partitions it still owns are in its subscription. Also the conversions of a
//! whole group: a classic group of Kafka consumers into a consumer group (upgrade) and a
//! consumer group of classic members only back into a classic group's record (downgrade).

use std::collections::{BTreeMap, BTreeSet};

use proto_compat::kafka_protocol::error::ResponseError;
use tokio::time::{Duration, Instant};
use uuid::Uuid;

use super::{ConsumerGroup, Member, MemberState, Topics};
use crate::assignor::Assignment;
use crate::classic::{ClassicGroup, JoinRequest, JoinResponse, SyncRequest, SyncResponse};
use crate::consumer_protocol;
use crate::group_record::{ClassicMemberRecord, ClassicProtocolRecord, ClassicRecord, HexBytes};

impl ConsumerGroup {
    /// JoinGroup of a classic member (Kafka's classicGroupJoinToConsumerGroup): its
    /// subscription updates the group as a heartbeat's would, it moves towards its target at
    /// once and is answered with its epoch as the generation. Nobody leads: the assignment is
    /// the coordinator's.
    pub fn classic_join(
        &mut self,
        request: JoinRequest,
        now: Instant,
        topics: &dyn Topics,
    ) -> JoinResponse {
        match self.try_classic_join(request, now, topics) {
            Ok(response) => response,
            Err((error, member_id)) => JoinResponse::error(&member_id, error),
        }
    }

    fn try_classic_join(
        &mut self,
        request: JoinRequest,
        now: Instant,
        topics: &dyn Topics,
    ) -> Result<JoinResponse, (ResponseError, String)> {
        let fail = |error: ResponseError| (error, request.member_id.clone());
        let subscription = (request.protocol_type == consumer_protocol::PROTOCOL_TYPE)
            .then(|| request.protocols.first())
            .flatten()
            .and_then(|(_, metadata)| consumer_protocol::decode_subscription(metadata))
            .ok_or_else(|| fail(ResponseError::InconsistentGroupProtocol))?;
        let (previous, mut member) = self.classic_joining_member(&request, now)?;
        if previous.is_none() && self.members.len() >= self.config.consumer_max_size {
            return Err(fail(ResponseError::GroupMaxSizeReached));
        }
        let member_id = member.member_id.clone();
        member.subscribed_topic_names = subscription.topics.iter().cloned().collect();
        member.subscribed_topic_regex = None;
        member.rebalance_timeout = request.rebalance_timeout;
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_deadline = now + request.session_timeout;
        member.classic = Some(ClassicProtocolRecord {
            session_timeout_ms: request.session_timeout.as_millis() as u64,
            protocols: request
                .protocols
                .iter()
                .map(|(name, metadata)| (name.clone(), HexBytes(metadata.clone())))
                .collect(),
        });
        let owned = topic_ids(&subscription.owned_partitions, topics);
        self.update_member(previous.as_ref(), member, Some(&owned), now, topics);
        let member = &self.members[&member_id];
        Ok(JoinResponse {
            error: None,
            generation_id: member.member_epoch,
            protocol_type: Some(consumer_protocol::PROTOCOL_TYPE.to_string()),
            protocol_name: request.protocols.first().map(|(name, _)| name.clone()),
            leader: String::new(),
            skip_assignment: false,
            member_id,
            members: Vec::new(),
        })
    }

    /// The member a JoinGroup names: (its state before, a copy to update). A new dynamic
    /// member of JoinGroup v4+ gets MEMBER_ID_REQUIRED with its id first; a static member
    /// that restarted (no member id) takes its predecessor's place under a new id.
    fn classic_joining_member(
        &mut self,
        request: &JoinRequest,
        now: Instant,
    ) -> Result<(Option<Member>, Member), (ResponseError, String)> {
        let instance = request.group_instance_id.as_deref();
        if request.member_id.is_empty() {
            let member_id = Uuid::new_v4().to_string();
            let predecessor = instance
                .and_then(|i| self.static_members.get(i))
                .and_then(|id| self.members.get(id))
                .cloned();
            if let Some(predecessor) = predecessor {
                tracing::info!(group = %self.group_id, old = %predecessor.member_id, new = %member_id, "static classic member replaced");
                self.remove_member(&predecessor.member_id);
                if let Some(target) = self.target.remove(&predecessor.member_id) {
                    self.target.insert(member_id.clone(), target);
                }
                let member = Member {
                    member_id,
                    ..predecessor.clone()
                };
                return Ok((Some(predecessor), member));
            }
            if instance.is_none() && request.require_known_member_id {
                return Err((ResponseError::MemberIdRequired, member_id));
            }
            let mut member = Member::new(member_id, now);
            member.instance_id = instance.map(str::to_string);
            tracing::info!(group = %self.group_id, member = %member.member_id, "classic member joins");
            return Ok((None, member));
        }
        let known = match self.members.get(&request.member_id) {
            // A member id handed out with MEMBER_ID_REQUIRED joins for the first time.
            None if instance.is_none() => {
                tracing::info!(group = %self.group_id, member = %request.member_id, "classic member joins");
                return Ok((None, Member::new(request.member_id.clone(), now)));
            }
            _ => self.classic_member(&request.member_id, instance),
        };
        let member = known.map_err(|e| (e, request.member_id.clone()))?;
        Ok((Some(member.clone()), member.clone()))
    }

    /// A classic member, checked like Kafka: unknown or a consumer-protocol member:
    /// UNKNOWN_MEMBER_ID; another instance id: FENCED_INSTANCE_ID.
    fn classic_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<&Member, ResponseError> {
        let member = self
            .members
            .get(member_id)
            .filter(|m| m.classic.is_some())
            .ok_or(ResponseError::UnknownMemberId)?;
        if instance.is_some() && member.instance_id.as_deref() != instance {
            return Err(ResponseError::FencedInstanceId);
        }
        Ok(member)
    }

    /// SyncGroup of a classic member: its partitions as the coordinator assigned them.
    pub fn classic_sync(&mut self, request: &SyncRequest, now: Instant) -> SyncResponse {
        let member =
            match self.classic_member(&request.member_id, request.group_instance_id.as_deref()) {
                Ok(member) => member,
                Err(error) => return SyncResponse::error(error),
            };
        if request.generation_id != member.member_epoch {
            return SyncResponse::error(ResponseError::IllegalGeneration);
        }
        let protocol_name = member
            .classic
            .as_ref()
            .and_then(|c| c.protocols.first())
            .map(|(name, _)| name.clone());
        let type_differs = request
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != consumer_protocol::PROTOCOL_TYPE);
        let name_differs = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != protocol_name.as_ref());
        if type_differs || name_differs {
            return SyncResponse::error(ResponseError::InconsistentGroupProtocol);
        }
        let assignment = consumer_protocol::encode_assignment(self.topic_names(&member.assigned));
        let session = member.session_timeout(&self.config);
        if let Some(member) = self.members.get_mut(&request.member_id) {
            member.session_deadline = now + session;
        }
        SyncResponse {
            error: None,
            protocol_type: Some(consumer_protocol::PROTOCOL_TYPE.to_string()),
            protocol_name,
            assignment,
        }
    }

    /// Heartbeat of a classic member (Kafka's classicGroupHeartbeatToConsumerGroup):
    /// REBALANCE_IN_PROGRESS tells it to join again when the group moved to a newer epoch, it
    /// must revoke partitions, or the partitions it waits for were released.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        let member = self.classic_member(member_id, instance)?;
        if generation_id != member.member_epoch {
            return Err(ResponseError::IllegalGeneration);
        }
        let rejoin = member.member_epoch < self.group_epoch
            || member.state == MemberState::UnrevokedPartitions
            || (member.state == MemberState::UnreleasedPartitions
                && !self.waits_on_unreleased_partitions(member));
        let session = member.session_timeout(&self.config);
        if let Some(member) = self.members.get_mut(member_id) {
            member.session_deadline = now + session;
        }
        if rejoin {
            Err(ResponseError::RebalanceInProgress)
        } else {
            Ok(())
        }
    }

    /// Whether a partition of the member's target is still owned by another member.
    fn waits_on_unreleased_partitions(&self, member: &Member) -> bool {
        let Some(target) = self.target.get(&member.member_id) else {
            return false;
        };
        target.iter().any(|(topic, partitions)| {
            partitions.iter().any(|p| {
                let assigned = member.assigned.get(topic).is_some_and(|a| a.contains(p));
                !assigned && self.partition_epochs.contains_key(&(*topic, *p))
            })
        })
    }

    /// One member of a LeaveGroup: a classic member leaves the group (an empty member id
    /// with an instance id: that static member, an administrator's request).
    pub fn classic_leave(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), ResponseError> {
        let member_id = match (member_id, instance) {
            ("", Some(instance)) => self
                .static_members
                .get(instance)
                .cloned()
                .ok_or(ResponseError::UnknownMemberId)?,
            (member_id, _) => member_id.to_string(),
        };
        self.classic_member(&member_id, instance)?;
        tracing::info!(group = %self.group_id, member = %member_id, "classic member left");
        self.fence(&member_id);
        Ok(())
    }

    /// Whether the group has members and all speak the classic protocol.
    fn has_only_classic_members(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.classic.is_some())
    }

    /// A classic group of Kafka consumers as a consumer group (Kafka's online upgrade): each
    /// member keeps its subscription and partitions, with the generation as its epoch, and
    /// goes on with the classic protocol.
    pub fn from_classic_record(
        group_id: &str,
        config: std::sync::Arc<crate::config::GroupConfig>,
        record: ClassicRecord,
        topics: &dyn Topics,
        now: Instant,
    ) -> Self {
        let mut group = ConsumerGroup::new(group_id, config);
        let epoch = record.generation_id;
        group.group_epoch = epoch;
        group.assignment_epoch = epoch;
        for classic in record.members {
            let subscription = classic
                .protocols
                .iter()
                .find(|(name, _)| *name == record.protocol_name)
                .or(classic.protocols.first())
                .and_then(|(_, metadata)| consumer_protocol::decode_subscription(&metadata.0))
                .unwrap_or_default();
            let assigned = topic_ids(
                &consumer_protocol::decode_assignment(&classic.assignment.0),
                topics,
            );
            let mut member = Member::new(classic.member_id.clone(), now);
            member.instance_id = classic.group_instance_id;
            member.client_id = classic.client_id;
            member.client_host = classic.client_host;
            member.member_epoch = epoch;
            member.previous_member_epoch = epoch;
            member.rebalance_timeout = Duration::from_millis(classic.rebalance_timeout_ms);
            member.subscribed_topic_names = subscription.topics.into_iter().collect();
            member.session_deadline = now + Duration::from_millis(classic.session_timeout_ms);
            member.classic = Some(ClassicProtocolRecord {
                session_timeout_ms: classic.session_timeout_ms,
                protocols: classic.protocols,
            });
            group.target.insert(classic.member_id, assigned.clone());
            member.assigned = assigned;
            group.put_member(member);
        }
        group.subscribed_topics = group.subscribed_topic_metadata(topics);
        group.record_changed = true;
        group
    }

    /// The classic group this one becomes when the migration policy allows downgrades and
    /// every member speaks the classic protocol (Kafka's online downgrade, when the last
    /// consumer-protocol member left).
    pub fn downgrade(&self, now: Instant) -> Option<ClassicGroup> {
        if !self.config.migration_policy.downgrades() {
            return None;
        }
        let record = self.to_classic_record()?;
        tracing::info!(group = %self.group_id, members = record.members.len(), "converting the consumer group of classic members to a classic group");
        Some(ClassicGroup::downgraded(
            &self.group_id,
            self.config.clone(),
            record,
            now,
        ))
    }

    /// The record of the classic group this one becomes (Kafka's online downgrade): its
    /// members with their protocols and current partitions, at the group epoch as
    /// generation. None unless every member speaks the classic protocol.
    fn to_classic_record(&self) -> Option<ClassicRecord> {
        if !self.has_only_classic_members() {
            return None;
        }
        let members: Vec<ClassicMemberRecord> = self
            .members
            .values()
            .map(|m| {
                let classic = m.classic.clone().expect("classic members only");
                ClassicMemberRecord {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: classic.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    protocols: classic.protocols,
                    assignment: HexBytes(consumer_protocol::encode_assignment(
                        self.topic_names(&m.assigned),
                    )),
                }
            })
            .collect();
        Some(ClassicRecord {
            protocol_type: consumer_protocol::PROTOCOL_TYPE.to_string(),
            protocol_name: members[0]
                .protocols
                .first()
                .map(|(name, _)| name.clone())
                .unwrap_or_default(),
            generation_id: self.group_epoch,
            leader: members[0].member_id.clone(),
            members,
        })
    }

    /// An assignment by topic name, for the consumer protocol's bytes.
    fn topic_names(&self, assignment: &Assignment) -> Vec<(String, Vec<i32>)> {
        let names: BTreeMap<Uuid, &String> = self
            .subscribed_topics
            .iter()
            .map(|(name, (id, _))| (*id, name))
            .collect();
        assignment
            .iter()
            .filter_map(|(id, partitions)| {
                let name = names.get(id)?;
                Some(((*name).clone(), partitions.iter().copied().collect()))
            })
            .collect()
    }
}

/// Partitions by topic name as an assignment (topics that do not exist are left out).
fn topic_ids(partitions: &[(String, Vec<i32>)], topics: &dyn Topics) -> Assignment {
    let mut assignment = Assignment::new();
    for (name, partitions) in partitions {
        if let Some(topic) = topics.topic(name) {
            let entry: &mut BTreeSet<i32> = assignment.entry(topic.topic_id).or_default();
            entry.extend(
                partitions
                    .iter()
                    .copied()
                    .filter(|p| *p >= 0 && *p < topic.partitions),
            );
        }
    }
    assignment.retain(|_, p| !p.is_empty());
    assignment
}
