//! Brokers and partition leadership. A broker registers with a session key; every partition
//! has one leader broker and a leader epoch that grows whenever leadership changes hands.
//! Leadership moves off a broker only when its registration is gone (it left, or its session
//! expired) or when it hands a partition over itself, so a broker's commits can be fenced by
//! its own registration alone.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::bytes_in::PartitionRates;
use super::records::{unchanged, BrokerRegistration, Changes, Key, Record};
use super::state::State;
use super::{guard_value, Coordinator};
use crate::error::CoordinatorError;
use crate::etcd::MAX_TXN_OPERATIONS;
use crate::metadata_store::{Guard, MetaStoreError};
use crate::{BrokerInfo, PartitionLeader};

/// Leader moves per transaction: each takes two store operations, and etcd allows 128 by
/// default (the brokers' guards take the rest).
const MOVES_PER_TXN: usize = 50;

/// How the controller balances leadership: Kafka's `auto.leader.rebalance.enable` and
/// `leader.imbalance.per.broker.percentage`, and the bytes-in thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderBalance {
    /// When false, leadership moves only when a broker leaves or dies, or by hand.
    pub auto_rebalance: bool,
    /// A broker takes back the partitions assigned to it once more than this share of them
    /// (in percent) are led elsewhere.
    pub imbalance_per_broker_percentage: u32,
    /// Partitions move to even out bytes-in once the busiest broker takes more than this
    /// share (in percent) above the mean...
    pub bytes_in_imbalance_percentage: u32,
    /// ...and at least this many bytes per second more than the idlest.
    pub bytes_in_imbalance_min_rate: u64,
}

impl Default for LeaderBalance {
    fn default() -> Self {
        Self {
            auto_rebalance: true,
            imbalance_per_broker_percentage: 10,
            bytes_in_imbalance_percentage: 20,
            bytes_in_imbalance_min_rate: 1024 * 1024,
        }
    }
}

impl Coordinator {
    /// Registers this process as broker `info.broker_id` for as long as its session lasts;
    /// BrokerIdInUse while another registration of that id is live. Its commits to partition
    /// logs are guarded by this registration from now on.
    pub async fn register_broker(&self, info: BrokerInfo) -> Result<(), CoordinatorError> {
        let broker_id = info.broker_id;
        let registration = Record::Broker(BrokerRegistration {
            info,
            incarnation: Uuid::new_v4(),
        });
        let changes = Changes {
            guards: vec![Guard::Absent(registration.key().to_string())],
            session_puts: vec![registration.clone()],
            ..Changes::default()
        };
        let guard = self.lock_writes().await;
        match self.commit(guard, changes).await {
            Ok(()) => {}
            Err(CoordinatorError::Store(MetaStoreError::GuardFailed)) => {
                return Err(CoordinatorError::BrokerIdInUse(format!(
                    "broker id {broker_id} is registered by a live broker"
                )))
            }
            Err(e) => return Err(e),
        }
        *self.registration.lock().unwrap() = Some(registration);
        tracing::info!(broker_id, "registered broker");
        self.assign_leaders().await?;
        Ok(())
    }

    /// Ends this process's registration: its partitions move to the live brokers.
    pub async fn unregister_broker(&self) -> Result<(), CoordinatorError> {
        let Some(registration) = self.registration.lock().unwrap().take() else {
            return Ok(());
        };
        let changes = Changes {
            guards: vec![unchanged(&registration)],
            deletes: vec![registration.key()],
            ..Changes::default()
        };
        let guard = self.lock_writes().await;
        match self.commit(guard, changes).await {
            // Already gone with its session.
            Ok(()) | Err(CoordinatorError::Store(MetaStoreError::GuardFailed)) => {}
            Err(e) => return Err(e),
        }
        tracing::info!(key = %registration.key(), "unregistered broker");
        Ok(())
    }

    /// A broker id no other broker was given: the next of a counter in the store.
    pub async fn allocate_broker_id(&self) -> Result<i32, CoordinatorError> {
        self.commit_computed(|state| {
            let stored = state.next_broker_id;
            let id = stored.unwrap_or(0);
            let changes = Changes {
                guards: vec![guard_value(Record::NextBrokerId(id), stored.is_some())],
                ..Changes::put(Record::NextBrokerId(id + 1))
            };
            Ok((id, Some(changes)))
        })
        .await
    }

    /// The guard of this process's commits to partition logs: its registration is live.
    pub(super) fn registration_guard(&self) -> Result<Guard, CoordinatorError> {
        match &*self.registration.lock().unwrap() {
            Some(registration) => Ok(unchanged(registration)),
            None => Err(CoordinatorError::NotRegistered),
        }
    }

    /// This process's broker id, once registered.
    pub fn broker_id(&self) -> Option<i32> {
        match &*self.registration.lock().unwrap() {
            Some(Record::Broker(registration)) => Some(registration.info.broker_id),
            _ => None,
        }
    }

    /// Gives every partition without a live leader one: its preferred leader if that is live,
    /// else the live broker leading the fewest, with the next leader epoch. A move is guarded
    /// by the old leader's registration being gone, the new one's being live and the leader
    /// being unchanged, so brokers and coordinators may run it at once. Returns how many
    /// partitions it moved.
    pub async fn assign_leaders(&self) -> Result<usize, CoordinatorError> {
        let mut moved = 0;
        loop {
            let guard = self.lock_writes().await;
            let changes = {
                let state = self.read();
                leader_moves(&state)
            };
            let Some(changes) = changes else {
                return Ok(moved);
            };
            let count = changes.puts.len();
            match self.commit(guard, changes).await {
                Ok(()) => moved += count,
                Err(CoordinatorError::Store(MetaStoreError::GuardFailed)) => {
                    self.wait_for_change().await
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Balances leadership through handovers (at most [`MOVES_PER_TXN`] under way at once),
    /// as `policy` allows: a live broker takes back the partitions assigned to it once too
    /// many of them are led elsewhere (Kafka's automatic preferred leader election), and the
    /// partitions assigned to no live broker spread evenly by count (while one broker leads
    /// two or more more than another, one of the busiest moves to the idlest), then, with
    /// `bytes_in` and no handover under way, by bytes-in (see [`bytes_in_moves`]). Handovers
    /// whose target is no longer live are dropped. The leader then hands each over (see
    /// [`Coordinator::release_leadership`]). Returns how many handovers it started.
    pub async fn balance_leaders(
        &self,
        policy: LeaderBalance,
        bytes_in: Option<&PartitionRates>,
    ) -> Result<usize, CoordinatorError> {
        let guard = self.lock_writes().await;
        let (started, changes) = {
            let state = self.read();
            match balance_moves(&state, policy, bytes_in) {
                Some(moves) => moves,
                None => return Ok(0),
            }
        };
        match self.commit(guard, changes).await {
            Ok(()) => Ok(started),
            // Leadership changed meanwhile: the next pass sees it.
            Err(CoordinatorError::Store(MetaStoreError::GuardFailed)) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The partitions this broker leads that are marked to move to another broker.
    pub fn handovers(&self) -> Vec<(Uuid, i32, PartitionLeader)> {
        let Some(broker_id) = self.broker_id() else {
            return Vec::new();
        };
        self.read()
            .leaders()
            .filter_map(|(topic_id, partition, leader)| {
                let leader = leader?;
                (leader.broker_id == broker_id && leader.moving_to.is_some())
                    .then_some((topic_id, partition, leader))
            })
            .collect()
    }

    /// The leader's last step of a handover, once it committed everything it buffered: the
    /// partition passes to the target at the next leader epoch. FencedLeaderEpoch if this
    /// broker no longer leads it at `leader_epoch` (or its registration is gone), and
    /// UnknownTopicOrPartition if the handover was called off.
    pub async fn release_leadership(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
    ) -> Result<(), CoordinatorError> {
        let (t, p) = (topic_id, partition);
        let registered = self.registration_guard()?;
        let broker_id = self.broker_id();
        let guard = self.lock_writes().await;
        let (target_id, changes) = {
            let state = self.read();
            let leader = state.partition(t, p).and_then(|log| log.leader);
            let Some(old) =
                leader.filter(|l| Some(l.broker_id) == broker_id && l.leader_epoch == leader_epoch)
            else {
                return Err(CoordinatorError::FencedLeaderEpoch(format!(
                    "this broker does not lead {t}-{p} at epoch {leader_epoch}"
                )));
            };
            let Some(target) = old.moving_to.and_then(|id| state.brokers.get(&id)) else {
                return Err(CoordinatorError::UnknownTopicOrPartition(format!(
                    "{t}-{p} is not being handed over to a live broker"
                )));
            };
            let new_leader = PartitionLeader {
                broker_id: target.info.broker_id,
                leader_epoch: leader_epoch + 1,
                moving_to: None,
                preferred: old.preferred,
            };
            let changes = Changes {
                guards: vec![
                    registered,
                    unchanged(&Record::Leader(t, p, old)),
                    unchanged(&Record::Broker(target.clone())),
                ],
                ..Changes::put(Record::Leader(t, p, new_leader))
            };
            (new_leader.broker_id, changes)
        };
        self.commit(guard, changes).await.map_err(|e| match e {
            CoordinatorError::Store(MetaStoreError::GuardFailed) => {
                CoordinatorError::FencedLeaderEpoch(format!(
                    "the leadership of {t}-{p} changed during its handover"
                ))
            }
            other => other,
        })?;
        tracing::info!(topic_id = %t, partition = p, to = target_id, "handed leadership over");
        Ok(())
    }

    /// Stands for election as the active coordinator under `name`: true when this process
    /// holds it now, for as long as its session lasts.
    pub async fn campaign(&self, name: &str) -> Result<bool, CoordinatorError> {
        let record = Record::Controller(name.to_string());
        if self.read().controller.as_deref() == Some(name) {
            return Ok(true);
        }
        let changes = Changes {
            guards: vec![Guard::Absent(record.key().to_string())],
            session_puts: vec![record],
            ..Changes::default()
        };
        let guard = self.lock_writes().await;
        match self.commit(guard, changes).await {
            Ok(()) => Ok(true),
            Err(CoordinatorError::Store(MetaStoreError::GuardFailed)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The active coordinator's name, while one holds the election.
    pub fn active_controller(&self) -> Option<String> {
        self.read().controller.clone()
    }

    /// Live brokers by id.
    pub fn brokers(&self) -> Vec<BrokerInfo> {
        self.read()
            .brokers
            .values()
            .map(|registration| registration.info.clone())
            .collect()
    }

    /// How many partitions `broker_id` leads.
    pub fn partitions_led(&self, broker_id: i32) -> usize {
        self.read()
            .leaders()
            .filter(|(_, _, leader)| leader.is_some_and(|l| l.broker_id == broker_id))
            .count()
    }

    /// The lowest live broker id, -1 if none.
    pub fn controller_id(&self) -> i32 {
        self.read().brokers.keys().next().copied().unwrap_or(-1)
    }

    /// The broker that coordinates consumer group `group_id`, as Kafka places groups: the
    /// group id's Java hash code modulo the number of choices, here the live brokers by id.
    /// None while no broker is live.
    pub fn group_coordinator(&self, group_id: &str) -> Option<BrokerInfo> {
        let state = self.read();
        let count = state.brokers.len().max(1);
        let index = (java_hash_code(group_id) & 0x7fff_ffff) as usize % count;
        state
            .brokers
            .values()
            .nth(index)
            .map(|registration| registration.info.clone())
    }

    /// None for an unknown partition, or one no broker has led yet. The leader may be a
    /// broker that is not live (see [`Coordinator::brokers`]) while no live one can take over.
    pub fn leader(&self, topic_id: Uuid, partition: i32) -> Option<PartitionLeader> {
        self.read().partition(topic_id, partition)?.leader
    }
}

/// The next batch of leader moves (at most [`MOVES_PER_TXN`]) with their guards; None when
/// every partition has a live leader or no broker is live.
fn leader_moves(state: &State) -> Option<Changes> {
    let live: BTreeSet<i32> = state.brokers.keys().copied().collect();
    let mut assigner = LeaderAssigner::new(state, &live);
    let mut changes = Changes::default();
    let mut departed = BTreeSet::new();
    let mut assignees = BTreeSet::new();
    for (topic_id, partition, leader) in state.leaders() {
        if leader.is_some_and(|leader| live.contains(&leader.broker_id)) {
            continue;
        }
        let preferred = leader.and_then(|leader| leader.preferred);
        let broker_id = match preferred.filter(|id| live.contains(id)) {
            Some(preferred) => assigner.take(preferred),
            None => assigner.assign()?,
        };
        // A move is a put and a guard, and every broker the transaction names a guard more:
        // with many brokers that, not the moves, reaches etcd's limit.
        let brokers_named = departed.len()
            + usize::from(leader.is_some_and(|l| !departed.contains(&l.broker_id)))
            + assignees.len()
            + usize::from(!assignees.contains(&broker_id));
        if 2 * (changes.puts.len() + 1) + brokers_named > MAX_TXN_OPERATIONS {
            break;
        }
        let new_leader = PartitionLeader {
            broker_id,
            leader_epoch: leader.map_or(0, |leader| leader.leader_epoch + 1),
            moving_to: None,
            preferred,
        };
        let old = leader.map(|leader| Record::Leader(topic_id, partition, leader));
        changes.guards.push(match &old {
            Some(old) => unchanged(old),
            None => Guard::Absent(Key::Leader(topic_id, partition).to_string()),
        });
        departed.extend(leader.map(|leader| leader.broker_id));
        assignees.insert(broker_id);
        changes
            .puts
            .push(Record::Leader(topic_id, partition, new_leader));
        if changes.puts.len() == MOVES_PER_TXN {
            break;
        }
    }
    if changes.puts.is_empty() {
        return None;
    }
    changes.guards.extend(
        departed
            .into_iter()
            .map(|broker_id| Guard::Absent(Key::Broker(broker_id).to_string())),
    );
    changes.guards.extend(
        assignees
            .into_iter()
            .map(|broker_id| unchanged(&Record::Broker(state.brokers[&broker_id].clone()))),
    );
    tracing::info!(moves = changes.puts.len(), "assigning partition leaders");
    Some(changes)
}

/// The next balancing step (see [`Coordinator::balance_leaders`]) with its guards, and how
/// many handovers it starts; None when there is nothing to do.
fn balance_moves(
    state: &State,
    policy: LeaderBalance,
    bytes_in: Option<&PartitionRates>,
) -> Option<(usize, Changes)> {
    let live = &state.brokers;
    let rate = |topic_id: Uuid, partition: i32| {
        bytes_in
            .and_then(|rates| rates.get(&(topic_id, partition)).copied())
            .unwrap_or(0.0)
    };
    let mut changes = Changes::default();
    let mut load: BTreeMap<i32, Load> = live.keys().map(|id| (*id, Load::default())).collect();
    let mut in_flight = 0;
    // Partitions the count balancing may move, by leader: assigned to no live broker.
    let mut movable: BTreeMap<i32, Vec<(Uuid, i32, PartitionLeader)>> = BTreeMap::new();
    let mut assigned: BTreeMap<i32, Assigned> = BTreeMap::new();
    for (topic_id, partition, leader) in state.leaders() {
        let Some(leader) = leader.filter(|l| live.contains_key(&l.broker_id)) else {
            continue;
        };
        let preferred = leader.preferred.filter(|id| live.contains_key(id));
        if let Some(preferred) = preferred {
            let assigned = assigned.entry(preferred).or_default();
            assigned.count += 1;
            if leader.broker_id != preferred && leader.moving_to != Some(preferred) {
                assigned.led_elsewhere += 1;
                if leader.moving_to.is_none() {
                    assigned.to_bring_back.push((topic_id, partition, leader));
                }
            }
        }
        let partition_load = Load {
            partitions: 1,
            bytes_in: rate(topic_id, partition),
        };
        match leader.moving_to {
            Some(target) if live.contains_key(&target) => {
                in_flight += 1;
                load.get_mut(&target).expect("live").add(partition_load);
            }
            Some(_) => {
                // Its target left: the leader keeps it.
                let old = Record::Leader(topic_id, partition, leader);
                changes.guards.push(unchanged(&old));
                let kept = PartitionLeader {
                    moving_to: None,
                    ..leader
                };
                changes.puts.push(Record::Leader(topic_id, partition, kept));
                load.get_mut(&leader.broker_id)
                    .expect("live")
                    .add(partition_load);
            }
            None => {
                load.get_mut(&leader.broker_id)
                    .expect("live")
                    .add(partition_load);
                if preferred.is_none() {
                    movable
                        .entry(leader.broker_id)
                        .or_default()
                        .push((topic_id, partition, leader));
                }
            }
        }
    }
    let mut handovers = Handovers {
        changes,
        targets: BTreeSet::new(),
        started: 0,
        room: MOVES_PER_TXN.saturating_sub(in_flight),
    };
    if policy.auto_rebalance {
        for (&broker_id, assigned) in &assigned {
            let percentage = policy.imbalance_per_broker_percentage as usize;
            if assigned.led_elsewhere * 100 <= assigned.count * percentage {
                continue;
            }
            for &(topic_id, partition, leader) in &assigned.to_bring_back {
                if !handovers.start(topic_id, partition, leader, broker_id) {
                    break;
                }
                let moved = Load {
                    partitions: 1,
                    bytes_in: rate(topic_id, partition),
                };
                move_load(&mut load, leader.broker_id, broker_id, moved);
            }
        }
        loop {
            let counts = load.iter().map(|(id, load)| (*id, load.partitions));
            let busiest = counts.clone().max_by_key(|(id, count)| (*count, -*id));
            let idlest = counts.min_by_key(|(id, count)| (*count, *id));
            let (Some((busiest, most)), Some((idlest, least))) = (busiest, idlest) else {
                break;
            };
            if most <= least + 1 {
                break;
            }
            let Some((topic_id, partition, leader)) = movable.get_mut(&busiest).and_then(Vec::pop)
            else {
                break;
            };
            if !handovers.start(topic_id, partition, leader, idlest) {
                break;
            }
            let moved = Load {
                partitions: 1,
                bytes_in: rate(topic_id, partition),
            };
            move_load(&mut load, busiest, idlest, moved);
        }
        if bytes_in.is_some() && in_flight == 0 && handovers.started == 0 {
            bytes_in_moves(&mut handovers, &mut load, &mut movable, rate, policy);
        }
    }
    let Handovers {
        mut changes,
        targets,
        started,
        ..
    } = handovers;
    if changes.puts.is_empty() {
        return None;
    }
    changes.guards.extend(
        targets
            .into_iter()
            .map(|broker_id| unchanged(&Record::Broker(state.brokers[&broker_id].clone()))),
    );
    tracing::info!(handovers = started, "balancing partition leaders");
    Some((started, changes))
}

/// Moves partitions from the broker taking the most bytes-in (the hottest) to the one taking
/// the least (the coldest) while the hottest takes more than
/// `bytes_in_imbalance_percentage` above the mean and at least `bytes_in_imbalance_min_rate`
/// more than the coldest. Each step moves the hottest's partition that leaves the two
/// closest; when the coldest would then lead more partitions than the hottest, the coldest
/// gives back its idlest partition in exchange, so the count balance stays as it was. A step
/// that closes less than a tenth of the gap is not worth its handovers: that margin, the
/// thresholds and a minute's rates keep noise from moving partitions back and forth.
fn bytes_in_moves(
    handovers: &mut Handovers,
    load: &mut BTreeMap<i32, Load>,
    movable: &mut BTreeMap<i32, Vec<(Uuid, i32, PartitionLeader)>>,
    rate: impl Fn(Uuid, i32) -> f64,
    policy: LeaderBalance,
) {
    let rate_of =
        |&(topic_id, partition, _): &(Uuid, i32, PartitionLeader)| rate(topic_id, partition);
    loop {
        let by_rate = |a: &(&i32, &Load), b: &(&i32, &Load)| a.1.bytes_in.total_cmp(&b.1.bytes_in);
        let (Some((&hot, &hottest)), Some((&cold, &coldest))) =
            (load.iter().max_by(by_rate), load.iter().min_by(by_rate))
        else {
            return;
        };
        let mean = load.values().map(|l| l.bytes_in).sum::<f64>() / load.len() as f64;
        let gap = hottest.bytes_in - coldest.bytes_in;
        let tolerated = mean * (1.0 + f64::from(policy.bytes_in_imbalance_percentage) / 100.0);
        if gap < policy.bytes_in_imbalance_min_rate as f64 || hottest.bytes_in <= tolerated {
            return;
        }
        let exchange = if hottest.partitions > coldest.partitions {
            None
        } else {
            let idlest = movable.get(&cold).and_then(|partitions| {
                (0..partitions.len())
                    .min_by(|&a, &b| rate_of(&partitions[a]).total_cmp(&rate_of(&partitions[b])))
            });
            match idlest {
                Some(index) => Some(index),
                None => return,
            }
        };
        let back = exchange.map_or(0.0, |index| rate_of(&movable[&cold][index]));
        // What is left of the gap after moving a partition (and the exchange back).
        let left = |partition: &(Uuid, i32, PartitionLeader)| {
            (gap - 2.0 * (rate_of(partition) - back)).abs()
        };
        let best = movable.get(&hot).and_then(|partitions| {
            (0..partitions.len())
                .min_by(|&a, &b| left(&partitions[a]).total_cmp(&left(&partitions[b])))
        });
        let Some(index) = best.filter(|&index| left(&movable[&hot][index]) <= 0.9 * gap) else {
            return;
        };
        let moves = 1 + usize::from(exchange.is_some());
        if !handovers.has_room(moves, &[cold, hot][..moves]) {
            return;
        }
        tracing::info!(
            from = hot,
            to = cold,
            exchange = exchange.is_some(),
            bytes_in_gap = gap,
            "moving a partition to even out bytes-in"
        );
        let mut start = |from: i32, to: i32, index: usize| {
            let partition = movable.get_mut(&from).expect("movable").swap_remove(index);
            let (topic_id, partition_id, leader) = partition;
            assert!(
                handovers.start(topic_id, partition_id, leader, to),
                "room checked"
            );
            let moved = Load {
                partitions: 1,
                bytes_in: rate(topic_id, partition_id),
            };
            move_load(load, from, to, moved);
        };
        start(hot, cold, index);
        if let Some(index) = exchange {
            start(cold, hot, index);
        }
    }
}

/// What a live broker leads, counting the partitions moving to it and not those moving away.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    partitions: usize,
    /// Bytes per second.
    bytes_in: f64,
}

impl Load {
    fn add(&mut self, other: Load) {
        self.partitions += other.partitions;
        self.bytes_in += other.bytes_in;
    }
}

fn move_load(load: &mut BTreeMap<i32, Load>, from: i32, to: i32, moved: Load) {
    let from = load.get_mut(&from).expect("live");
    from.partitions -= moved.partitions;
    from.bytes_in -= moved.bytes_in;
    load.get_mut(&to).expect("live").add(moved);
}

/// The partitions assigned to one live broker (its preferred ones).
#[derive(Default)]
struct Assigned {
    count: usize,
    /// Led by another broker and not moving to this one.
    led_elsewhere: usize,
    /// Those of them not moving anywhere yet.
    to_bring_back: Vec<(Uuid, i32, PartitionLeader)>,
}

/// The handovers one balancing step starts, within one transaction's room.
struct Handovers {
    changes: Changes,
    targets: BTreeSet<i32>,
    started: usize,
    /// How many more may start.
    room: usize,
}

impl Handovers {
    /// Whether `moves` more handovers to `targets` fit.
    fn has_room(&self, moves: usize, targets: &[i32]) -> bool {
        let new_targets = targets
            .iter()
            .filter(|target| !self.targets.contains(target))
            .count();
        // A put and a guard each, and a guard on each target's registration new here.
        let operations = self.changes.puts.len()
            + self.changes.guards.len()
            + self.targets.len()
            + 2 * moves
            + new_targets;
        self.room >= moves
            && self.changes.puts.len() + moves <= MOVES_PER_TXN
            && operations <= MAX_TXN_OPERATIONS
    }

    /// Marks the partition to move to `target`; false when there is no room left.
    fn start(
        &mut self,
        topic_id: Uuid,
        partition: i32,
        leader: PartitionLeader,
        target: i32,
    ) -> bool {
        if !self.has_room(1, &[target]) {
            return false;
        }
        self.changes
            .guards
            .push(unchanged(&Record::Leader(topic_id, partition, leader)));
        let moving = PartitionLeader {
            moving_to: Some(target),
            ..leader
        };
        self.changes
            .puts
            .push(Record::Leader(topic_id, partition, moving));
        self.targets.insert(target);
        self.started += 1;
        self.room -= 1;
        true
    }
}

/// Java's `String.hashCode`, over UTF-16 code units.
fn java_hash_code(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Picks leaders: the live broker leading the fewest partitions, the lowest id on a tie.
struct LeaderAssigner {
    load: BTreeMap<i32, usize>,
}

impl LeaderAssigner {
    fn new(state: &State, live: &BTreeSet<i32>) -> Self {
        let mut load: BTreeMap<i32, usize> = live.iter().map(|broker_id| (*broker_id, 0)).collect();
        for (_, _, leader) in state.leaders() {
            if let Some(count) = leader.and_then(|leader| load.get_mut(&leader.broker_id)) {
                *count += 1;
            }
        }
        LeaderAssigner { load }
    }

    /// None when no broker is live.
    fn assign(&mut self) -> Option<i32> {
        let (&broker_id, _) = self.load.iter().min_by_key(|(_, count)| **count)?;
        Some(self.take(broker_id))
    }

    /// Counts one more partition for the live broker `broker_id`; returns it.
    fn take(&mut self, broker_id: i32) -> i32 {
        *self.load.get_mut(&broker_id).expect("a live broker") += 1;
        broker_id
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::test_support::{
        broker, caught_up, chunk, commit, expire_session, open, two_brokers, TestStore,
    };
    use uuid::Uuid;

    use super::super::Coordinator;
    use super::LeaderBalance;
    use crate::error::CoordinatorError;
    use crate::PartitionLeader;
    use crate::PartitionRates;

    fn leader(broker_id: i32, leader_epoch: i32) -> Option<PartitionLeader> {
        Some(PartitionLeader {
            broker_id,
            leader_epoch,
            moving_to: None,
            preferred: None,
        })
    }

    #[tokio::test]
    async fn leadership_changes_follow_brokers_and_leaders_but_not_flush_commits() {
        let (store, one, _two, t) = two_brokers(2).await;
        let mut changes = one.leadership_changes();
        changes.mark_unchanged();
        let epoch = one.leader(t, 0).unwrap().leader_epoch;
        for base in [0, 10] {
            one.commit_flush(vec![commit(t, 0, epoch, chunk(base, base + 9))])
                .await
                .unwrap();
        }
        caught_up(&one, &store).await;
        assert!(
            !changes.has_changed().unwrap(),
            "flush commits are not leadership changes"
        );

        expire_session(&store, 2).await;
        caught_up(&one, &store).await;
        assert!(changes.has_changed().unwrap(), "a broker left");
        changes.mark_unchanged();
        one.assign_leaders().await.unwrap();
        assert!(
            changes.has_changed().unwrap(),
            "its partition has a new leader"
        );
        assert_eq!(one.leader(t, 1).unwrap().broker_id, 1);
    }

    #[tokio::test]
    async fn groups_are_placed_by_their_java_hash_code() {
        assert_eq!(super::java_hash_code("hello"), 99_162_322);
        assert_eq!(super::java_hash_code("polygenelubricants"), i32::MIN);
        let store = TestStore::new();
        let one = open(&store).await;
        assert_eq!(one.group_coordinator("a"), None);
        one.register_broker(broker(1)).await.unwrap();
        let two = open(&store).await;
        two.register_broker(broker(2)).await.unwrap();
        caught_up(&one, &store).await;
        for coordinator in [&one, &two] {
            let placed = |group| coordinator.group_coordinator(group).map(|b| b.broker_id);
            // 97 % 2 = 1: the second live broker.
            assert_eq!(placed("a"), Some(2));
            assert_eq!(placed("hello"), Some(1));
            assert_eq!(placed("polygenelubricants"), Some(1));
        }
    }

    /// Many brokers in one transaction: each one named costs a guard, so the moves stop
    /// short of etcd's 128 operations (the test store refuses more, as etcd does).
    #[tokio::test]
    async fn leader_moves_fit_etcds_operation_limit_with_many_brokers() {
        let store = TestStore::new();
        let first = open(&store).await;
        first.register_broker(broker(0)).await.unwrap();
        let topic = first
            .create_topic("a", 120, BTreeMap::new(), false)
            .await
            .unwrap();
        let t = topic.topic_id;
        let mut others = Vec::new();
        for id in 1..60 {
            let other = open(&store).await;
            other.register_broker(broker(id)).await.unwrap();
            others.push(other);
        }
        caught_up(&first, &store).await;
        // Broker 0 leads all 120: the handovers go to 59 brokers, more than one transaction
        // can name.
        let mut started = 0;
        while started < 118 {
            let now = first
                .balance_leaders(LeaderBalance::default(), None)
                .await
                .unwrap();
            assert!(now > 0, "balancing stopped after {started} handovers");
            started += now;
            for p in 0..120 {
                if first.leader(t, p).unwrap().moving_to.is_some() {
                    first.release_leadership(t, p, 0).await.unwrap();
                }
            }
        }
        // Half the brokers die at once: their partitions move in transactions that fit.
        for id in 30..60 {
            expire_session(&store, id).await;
        }
        caught_up(&first, &store).await;
        assert!(first.assign_leaders().await.unwrap() >= 58);
        let live: Vec<i32> = first.brokers().iter().map(|b| b.broker_id).collect();
        for p in 0..120 {
            let leader = first.leader(t, p).unwrap().broker_id;
            assert!(
                live.contains(&leader),
                "partition {p} led by gone broker {leader}"
            );
        }
    }

    #[tokio::test]
    async fn partitions_spread_over_live_brokers() {
        let store = TestStore::new();
        let two = open(&store).await;
        assert_eq!(two.controller_id(), -1);
        two.register_broker(broker(2)).await.unwrap();
        let one = open(&store).await;
        one.register_broker(broker(1)).await.unwrap();
        assert_eq!(one.controller_id(), 1);
        assert_eq!(one.brokers(), vec![broker(1), broker(2)]);

        let topic = one
            .create_topic("a", 3, BTreeMap::new(), false)
            .await
            .unwrap();
        let leaders: Vec<_> = (0..3).map(|p| one.leader(topic.topic_id, p)).collect();
        assert_eq!(leaders, [leader(1, 0), leader(2, 0), leader(1, 0)]);
        // Broker 2 leads fewer, so it gets the next one; then they alternate.
        one.create_partitions("a", 6, false).await.unwrap();
        let leaders: Vec<_> = (3..6).map(|p| one.leader(topic.topic_id, p)).collect();
        assert_eq!(leaders, [leader(2, 0), leader(1, 0), leader(2, 0)]);
        assert_eq!(one.leader(topic.topic_id, 6), None);
        // Every process sees the same leaders.
        caught_up(&two, &store).await;
        assert_eq!(two.leader(topic.topic_id, 5), leader(2, 0));
    }

    #[tokio::test]
    async fn leaderless_partitions_get_a_leader_when_a_broker_registers() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let topic = coordinator
            .create_topic("a", 2, BTreeMap::new(), false)
            .await
            .unwrap();
        assert_eq!(coordinator.leader(topic.topic_id, 0), None);
        coordinator.register_broker(broker(5)).await.unwrap();
        assert_eq!(coordinator.leader(topic.topic_id, 0), leader(5, 0));
        assert_eq!(coordinator.leader(topic.topic_id, 1), leader(5, 0));
    }

    #[tokio::test]
    async fn a_broker_id_is_registered_once_while_live() {
        let store = TestStore::new();
        let first = open(&store).await;
        first.register_broker(broker(1)).await.unwrap();
        let second = open(&store).await;
        let refused = second.register_broker(broker(1)).await;
        assert!(
            matches!(refused, Err(CoordinatorError::BrokerIdInUse(_))),
            "{refused:?}"
        );
        // Once the first one's session is over, the id is free again.
        expire_session(&store, 1).await;
        caught_up(&second, &store).await;
        second.register_broker(broker(1)).await.unwrap();
        assert_eq!(second.broker_id(), Some(1));
    }

    #[tokio::test]
    async fn a_fenced_broker_commits_nothing_and_its_partitions_move() {
        let store = TestStore::new();
        let one = open(&store).await;
        one.register_broker(broker(1)).await.unwrap();
        let topic = one
            .create_topic("a", 2, BTreeMap::new(), false)
            .await
            .unwrap();
        let t = topic.topic_id;
        one.commit_flush(vec![commit(t, 0, 0, chunk(0, 9))])
            .await
            .unwrap();
        let two = open(&store).await;
        two.register_broker(broker(2)).await.unwrap();
        // Broker 2 joining does not move anything.
        assert_eq!(two.leader(t, 1), leader(1, 0));

        // Broker 1's session expires (it paused, say): its commits are refused by the store
        // even before its partitions move.
        expire_session(&store, 1).await;
        let fenced = one.commit_flush(vec![commit(t, 0, 0, chunk(10, 19))]).await;
        assert!(
            matches!(fenced, Err(CoordinatorError::BrokerFenced(_))),
            "{fenced:?}"
        );
        assert_eq!(fenced.unwrap_err().error_code(), 6);

        caught_up(&two, &store).await;
        assert_eq!(two.assign_leaders().await.unwrap(), 2);
        assert_eq!(two.leader(t, 0), leader(2, 1));
        assert_eq!(two.leader(t, 1), leader(2, 1));
        // The new leader continues the committed log; the old epoch is refused.
        let stale = two.commit_flush(vec![commit(t, 0, 0, chunk(10, 19))]).await;
        assert!(
            matches!(stale, Err(CoordinatorError::FencedLeaderEpoch(_))),
            "{stale:?}"
        );
        two.commit_flush(vec![commit(t, 0, 1, chunk(10, 19))])
            .await
            .unwrap();
        assert_eq!(two.partition_log(t, 0).unwrap().high_watermark, 20);
        assert_eq!(two.assign_leaders().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_leaving_broker_hands_its_partitions_over() {
        let store = TestStore::new();
        let one = open(&store).await;
        one.register_broker(broker(1)).await.unwrap();
        let topic = one
            .create_topic("a", 2, BTreeMap::new(), false)
            .await
            .unwrap();
        let t = topic.topic_id;
        let two = open(&store).await;
        two.register_broker(broker(2)).await.unwrap();
        one.unregister_broker().await.unwrap();
        caught_up(&two, &store).await;
        assert_eq!(two.brokers(), vec![broker(2)]);
        two.assign_leaders().await.unwrap();
        assert_eq!(two.leader(t, 0), leader(2, 1));
        // With no broker live, leaders stay where they are until one registers.
        two.unregister_broker().await.unwrap();
        assert_eq!(two.assign_leaders().await.unwrap(), 0);
        assert_eq!(two.controller_id(), -1);
        let three = open(&store).await;
        three.register_broker(broker(3)).await.unwrap();
        assert_eq!(three.leader(t, 0), leader(3, 2));
    }

    #[tokio::test]
    async fn the_election_has_one_winner_until_its_session_ends() {
        let store = TestStore::new();
        let first = open(&store).await;
        let second = open(&store).await;
        assert!(first.campaign("first").await.unwrap());
        assert!(first.campaign("first").await.unwrap());
        caught_up(&second, &store).await;
        assert!(!second.campaign("second").await.unwrap());
        assert_eq!(second.active_controller().as_deref(), Some("first"));
        let txn = crate::metadata_store::Txn {
            deletes: vec!["controller".into()],
            ..Default::default()
        };
        crate::metadata_store::MetadataStore::commit(store.as_ref(), txn)
            .await
            .unwrap();
        caught_up(&second, &store).await;
        assert!(second.campaign("second").await.unwrap());
    }

    #[tokio::test]
    async fn failed_registration_changes_nothing() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let topic = coordinator
            .create_topic("a", 1, BTreeMap::new(), false)
            .await
            .unwrap();
        store.fail_commits(true);
        let result = coordinator.register_broker(broker(2)).await;
        assert!(
            matches!(result, Err(CoordinatorError::Store(_))),
            "{result:?}"
        );
        assert!(coordinator.brokers().is_empty());
        assert_eq!(coordinator.broker_id(), None);
        assert_eq!(coordinator.leader(topic.topic_id, 0), None);
    }

    #[tokio::test]
    async fn broker_ids_are_allocated_once() {
        let store = TestStore::new();
        let one = open(&store).await;
        let two = open(&store).await;
        let (a, b) = tokio::join!(one.allocate_broker_id(), two.allocate_broker_id());
        let mut ids = [a.unwrap(), b.unwrap()];
        ids.sort();
        assert_eq!(ids, [0, 1]);
        assert_eq!(one.allocate_broker_id().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_new_broker_takes_its_share_through_handovers() {
        let store = TestStore::new();
        let one = open(&store).await;
        one.register_broker(broker(1)).await.unwrap();
        let topic = one
            .create_topic("a", 4, BTreeMap::new(), false)
            .await
            .unwrap();
        let t = topic.topic_id;
        one.commit_flush(vec![commit(t, 3, 0, chunk(0, 9))])
            .await
            .unwrap();
        let two = open(&store).await;
        two.register_broker(broker(2)).await.unwrap();
        caught_up(&one, &store).await;

        // Two of broker 1's four partitions are marked to move; the rest stays.
        assert_eq!(
            one.balance_leaders(LeaderBalance::default(), None)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            one.balance_leaders(LeaderBalance::default(), None)
                .await
                .unwrap(),
            0
        );
        let moving: Vec<_> = one
            .handovers()
            .iter()
            .map(|(_, p, l)| (*p, l.moving_to))
            .collect();
        assert_eq!(moving, [(2, Some(2)), (3, Some(2))]);
        assert!(two.handovers().is_empty());

        // The old leader commits what it buffered at its epoch, then passes it on.
        one.commit_flush(vec![commit(t, 3, 0, chunk(10, 19))])
            .await
            .unwrap();
        one.release_leadership(t, 3, 0).await.unwrap();
        assert_eq!(one.leader(t, 3), leader(2, 1));
        let late = one.commit_flush(vec![commit(t, 3, 0, chunk(20, 29))]).await;
        assert!(
            matches!(late, Err(CoordinatorError::FencedLeaderEpoch(_))),
            "{late:?}"
        );
        caught_up(&two, &store).await;
        two.commit_flush(vec![commit(t, 3, 1, chunk(20, 29))])
            .await
            .unwrap();
        assert_eq!(two.partition_log(t, 3).unwrap().high_watermark, 30);

        // A handover whose target left is called off: the leader keeps the partition.
        expire_session(&store, 2).await;
        caught_up(&one, &store).await;
        let called_off = one.release_leadership(t, 2, 0).await;
        assert!(
            matches!(
                called_off,
                Err(CoordinatorError::UnknownTopicOrPartition(_))
            ),
            "{called_off:?}"
        );
        one.assign_leaders().await.unwrap();
        one.balance_leaders(LeaderBalance::default(), None)
            .await
            .unwrap();
        assert_eq!(one.leader(t, 2), leader(1, 0));
        assert_eq!(one.leader(t, 3), leader(1, 2));
        assert!(one.handovers().is_empty());
    }

    const MIB: f64 = 1024.0 * 1024.0;

    /// Partition leaders and where they are moving, by partition.
    fn moves(coordinator: &Coordinator, t: Uuid, partitions: i32) -> Vec<(i32, Option<i32>)> {
        (0..partitions)
            .map(|p| {
                let leader = coordinator.leader(t, p).unwrap();
                (leader.broker_id, leader.moving_to)
            })
            .collect()
    }

    #[tokio::test]
    async fn hot_partitions_spread_by_bytes_in_and_counts_stay_even() {
        let (store, one, two, t) = two_brokers(4).await;
        assert_eq!(
            moves(&one, t, 4),
            [(1, None), (2, None), (1, None), (2, None)]
        );
        // Broker 1 takes 14 MiB/s, broker 2 0.6 MiB/s.
        let rates: PartitionRates = [(0, 8.0), (1, 0.5), (2, 6.0), (3, 0.1)]
            .into_iter()
            .map(|(p, rate)| ((t, p), rate * MIB))
            .collect();
        let balance = LeaderBalance::default();

        // Without rates, or below the thresholds, or with balancing off, nothing moves.
        assert_eq!(one.balance_leaders(balance, None).await.unwrap(), 0);
        let slow: PartitionRates = rates.iter().map(|(k, r)| (*k, r / 100.0)).collect();
        assert_eq!(one.balance_leaders(balance, Some(&slow)).await.unwrap(), 0);
        let tolerant = LeaderBalance {
            bytes_in_imbalance_percentage: 200,
            ..balance
        };
        assert_eq!(
            one.balance_leaders(tolerant, Some(&rates)).await.unwrap(),
            0
        );
        let off = LeaderBalance {
            auto_rebalance: false,
            ..balance
        };
        assert_eq!(one.balance_leaders(off, Some(&rates)).await.unwrap(), 0);

        // The partition of 6 MiB/s goes to broker 2 (8.1 against 6.5 MiB/s is within 20% of
        // the mean), and broker 2's idlest comes back in exchange: two partitions each still.
        assert_eq!(one.balance_leaders(balance, Some(&rates)).await.unwrap(), 2);
        assert_eq!(
            moves(&one, t, 4),
            [(1, None), (2, None), (1, Some(2)), (2, Some(1))]
        );
        // Nothing more while those are under way.
        assert_eq!(one.balance_leaders(balance, Some(&rates)).await.unwrap(), 0);
        one.release_leadership(t, 2, 0).await.unwrap();
        caught_up(&two, &store).await;
        two.release_leadership(t, 3, 0).await.unwrap();
        caught_up(&one, &store).await;
        assert_eq!(
            moves(&one, t, 4),
            [(1, None), (2, None), (2, None), (1, None)]
        );
        // Balanced: the same rates move nothing back.
        assert_eq!(one.balance_leaders(balance, Some(&rates)).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_hot_broker_leading_more_partitions_gives_one_away() {
        let (_store, one, _two, t) = two_brokers(5).await;
        // Broker 1 leads 0, 2 and 4, each 4 MiB/s; broker 2 leads 1 and 3, idle.
        let rates: PartitionRates = [0, 2, 4].map(|p| ((t, p), 4.0 * MIB)).into();
        assert_eq!(
            one.balance_leaders(LeaderBalance::default(), Some(&rates))
                .await
                .unwrap(),
            1
        );
        // One move leaves 8 against 4 MiB/s, and three partitions to two: moving another
        // (with an idle one back) would only swap the two.
        assert_eq!(
            moves(&one, t, 5),
            [(1, Some(2)), (2, None), (1, None), (2, None), (1, None)]
        );
    }
}
