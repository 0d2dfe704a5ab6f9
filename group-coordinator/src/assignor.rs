//! The server-side assignors of the consumer protocol (KIP-848), with Kafka's names:
//! `uniform` spreads all subscribed partitions evenly and leaves a partition where it is
//! whenever balance allows, so that a rebalance moves as few as possible; `range` gives each
//! member a range of every topic it subscribes to, keeping what it had up to its share.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Uniform,
    Range,
}

/// One member as an assignor sees it.
#[derive(Debug, Clone)]
pub struct MemberSpec<'a> {
    pub member_id: &'a str,
    /// The topics it subscribes to that exist.
    pub topics: BTreeSet<Uuid>,
    /// Its current target assignment, which `uniform` keeps where it can.
    pub current: &'a Assignment,
}

impl Assignor {
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Assignor::Uniform, Assignor::Range]
            .into_iter()
            .find(|assignor| assignor.name() == name)
    }

    /// The target assignment of every member, given the partition count of every topic some
    /// member subscribes to. Each partition goes to exactly one subscriber.
    pub fn assign(
        self,
        members: &[MemberSpec],
        partitions: &BTreeMap<Uuid, i32>,
    ) -> BTreeMap<String, Assignment> {
        let mut sorted: Vec<&MemberSpec> = members.iter().collect();
        sorted.sort_by_key(|member| member.member_id);
        let owned = match self {
            Assignor::Uniform => uniform(&sorted, partitions),
            Assignor::Range => range(&sorted, partitions),
        };
        owned
            .into_iter()
            .map(|(member_id, partitions)| {
                let mut assignment = Assignment::new();
                for (topic, partition) in partitions {
                    assignment.entry(topic).or_default().insert(partition);
                }
                (member_id.to_string(), assignment)
            })
            .collect()
    }
}

type Owned<'a> = BTreeMap<&'a str, BTreeSet<(Uuid, i32)>>;

fn empty_owned<'a>(members: &[&MemberSpec<'a>]) -> Owned<'a> {
    members
        .iter()
        .map(|member| (member.member_id, BTreeSet::new()))
        .collect()
}

fn uniform<'a>(members: &[&MemberSpec<'a>], partitions: &BTreeMap<Uuid, i32>) -> Owned<'a> {
    let mut owned = empty_owned(members);
    // The subscribers of each topic, by member id.
    let mut subscribers: HashMap<Uuid, Vec<&'a str>> = HashMap::new();
    for member in members {
        for topic in &member.topics {
            subscribers
                .entry(*topic)
                .or_default()
                .push(member.member_id);
        }
    }
    // Sticky: each member keeps the partitions of its current target it may still have.
    let mut taken = BTreeSet::new();
    for member in members {
        for (topic, current) in member.current {
            let count = partitions.get(topic).copied().unwrap_or(0);
            if !member.topics.contains(topic) {
                continue;
            }
            for &partition in current.iter().filter(|&&p| p < count) {
                if taken.insert((*topic, partition)) {
                    owned
                        .get_mut(member.member_id)
                        .unwrap()
                        .insert((*topic, partition));
                }
            }
        }
    }
    // The rest go to the least loaded subscriber, partitions with the fewest subscribers first.
    let mut unassigned: Vec<(Uuid, i32)> = subscribers
        .keys()
        .flat_map(|topic| (0..partitions.get(topic).copied().unwrap_or(0)).map(|p| (*topic, p)))
        .filter(|tp| !taken.contains(tp))
        .collect();
    unassigned.sort_by_key(|(topic, partition)| (subscribers[topic].len(), *topic, *partition));
    for (topic, partition) in unassigned {
        let member = least_loaded(&owned, &subscribers[&topic]);
        owned.get_mut(member).unwrap().insert((topic, partition));
    }
    // Balance: move a partition while some subscriber of it has two fewer than its owner.
    while let Some((from, to, tp)) = next_move(&owned, &subscribers) {
        owned.get_mut(from).unwrap().remove(&tp);
        owned.get_mut(to).unwrap().insert(tp);
    }
    owned
}

fn least_loaded<'a>(owned: &Owned<'a>, candidates: &[&'a str]) -> &'a str {
    candidates
        .iter()
        .copied()
        .min_by_key(|member| (owned[member].len(), *member))
        .expect("every topic with partitions to assign has a subscriber")
}

/// A partition of the most loaded member that can go to a subscriber owning at least two
/// fewer; its highest partitions move first.
fn next_move<'a>(
    owned: &Owned<'a>,
    subscribers: &HashMap<Uuid, Vec<&'a str>>,
) -> Option<(&'a str, &'a str, (Uuid, i32))> {
    let mut by_load: Vec<(&'a str, usize)> = owned.iter().map(|(m, p)| (*m, p.len())).collect();
    by_load.sort_by_key(|(member, count)| (usize::MAX - count, *member));
    by_load.into_iter().find_map(|(from, count)| {
        owned[from].iter().rev().find_map(|tp| {
            let to = least_loaded(owned, &subscribers[&tp.0]);
            (owned[to].len() + 1 < count).then_some((from, to, *tp))
        })
    })
}

/// Kafka's sticky range: per topic, each subscriber keeps up to its quota of its current
/// partitions (lowest first), then the free ones are handed out in ranges.
fn range<'a>(members: &[&MemberSpec<'a>], partitions: &BTreeMap<Uuid, i32>) -> Owned<'a> {
    let mut owned = empty_owned(members);
    for (topic, &count) in partitions {
        let subscribers: Vec<&MemberSpec> = members
            .iter()
            .copied()
            .filter(|member| member.topics.contains(topic))
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let quota = count as usize / subscribers.len();
        // How many members get one partition more than the quota.
        let mut extra = count as usize % subscribers.len();
        let mut taken = BTreeSet::new();
        let mut unfilled = Vec::new();
        for member in subscribers {
            let current: Vec<i32> = member
                .current
                .get(topic)
                .into_iter()
                .flatten()
                .copied()
                .filter(|p| *p < count)
                .collect();
            let mut keep = current.len().min(quota);
            if current.len() > quota && extra > 0 {
                extra -= 1;
                keep += 1;
            } else {
                unfilled.push((member.member_id, quota.saturating_sub(current.len())));
            }
            for &partition in &current[..keep] {
                taken.insert(partition);
                owned
                    .get_mut(member.member_id)
                    .unwrap()
                    .insert((*topic, partition));
            }
        }
        let mut free = (0..count).filter(|p| !taken.contains(p));
        for (member_id, mut wanted) in unfilled {
            if extra > 0 {
                extra -= 1;
                wanted += 1;
            }
            let partitions = owned.get_mut(member_id).unwrap();
            partitions.extend(free.by_ref().take(wanted).map(|p| (*topic, p)));
        }
    }
    owned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn member<'a>(id: &'a str, topics: &[Uuid], current: &'a Assignment) -> MemberSpec<'a> {
        MemberSpec {
            member_id: id,
            topics: topics.iter().copied().collect(),
            current,
        }
    }

    fn counts(assignment: &BTreeMap<String, Assignment>) -> Vec<usize> {
        assignment
            .values()
            .map(|a| a.values().map(BTreeSet::len).sum())
            .collect()
    }

    /// Every partition of the subscribed topics is assigned exactly once.
    fn assert_complete(
        assignment: &BTreeMap<String, Assignment>,
        partitions: &BTreeMap<Uuid, i32>,
    ) {
        let mut seen = BTreeSet::new();
        for a in assignment.values() {
            for (t, ps) in a {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}-{p} assigned twice");
                }
            }
        }
        let all: BTreeSet<(Uuid, i32)> = partitions
            .iter()
            .flat_map(|(t, n)| (0..*n).map(|p| (*t, p)))
            .collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn uniform_balances_and_moves_only_what_it_must() {
        let t = topic(1);
        let partitions = BTreeMap::from([(t, 6)]);
        let none = Assignment::new();
        let three = [
            member("a", &[t], &none),
            member("b", &[t], &none),
            member("c", &[t], &none),
        ];
        let first = Assignor::Uniform.assign(&three, &partitions);
        assert_complete(&first, &partitions);
        assert_eq!(counts(&first), [2, 2, 2]);

        // "c" leaves: "a" and "b" keep theirs and share c's.
        let two = [
            member("a", &[t], &first["a"]),
            member("b", &[t], &first["b"]),
        ];
        let second = Assignor::Uniform.assign(&two, &partitions);
        assert_complete(&second, &partitions);
        assert_eq!(counts(&second), [3, 3]);
        for m in ["a", "b"] {
            assert!(
                first[m][&t].is_subset(&second[m][&t]),
                "{m} lost a partition"
            );
        }

        // "d" joins: it takes one from each, the others keep the rest.
        let three = [
            member("a", &[t], &second["a"]),
            member("b", &[t], &second["b"]),
            member("d", &[t], &none),
        ];
        let third = Assignor::Uniform.assign(&three, &partitions);
        assert_complete(&third, &partitions);
        assert_eq!(counts(&third), [2, 2, 2]);
        for m in ["a", "b"] {
            assert!(third[m][&t].is_subset(&second[m][&t]));
        }
    }

    #[test]
    fn uniform_respects_different_subscriptions() {
        let (x, y) = (topic(1), topic(2));
        let partitions = BTreeMap::from([(x, 4), (y, 2)]);
        let none = Assignment::new();
        let members = [
            member("a", &[x, y], &none),
            member("b", &[x], &none),
            member("c", &[], &none),
        ];
        let assignment = Assignor::Uniform.assign(&members, &partitions);
        assert_complete(&assignment, &partitions);
        assert_eq!(counts(&assignment), [3, 3, 0]);
        assert!(!assignment["b"].contains_key(&y));
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let (x, y) = (topic(1), topic(2));
        let partitions = BTreeMap::from([(x, 5), (y, 2)]);
        let none = Assignment::new();
        let members = [member("b", &[x, y], &none), member("a", &[x, y], &none)];
        let assignment = Assignor::Range.assign(&members, &partitions);
        assert_complete(&assignment, &partitions);
        let set = |ps: &[i32]| ps.iter().copied().collect::<BTreeSet<i32>>();
        assert_eq!(
            assignment["a"],
            BTreeMap::from([(x, set(&[0, 1, 2])), (y, set(&[0]))])
        );
        assert_eq!(
            assignment["b"],
            BTreeMap::from([(x, set(&[3, 4])), (y, set(&[1]))])
        );
        assert_eq!(Assignor::from_name("range"), Some(Assignor::Range));

        // "a" leaves: "b" keeps its partitions and takes the rest.
        let one = [member("b", &[x, y], &assignment["b"])];
        let after = Assignor::Range.assign(&one, &partitions);
        assert_eq!(
            after["b"],
            BTreeMap::from([(x, set(&[0, 1, 2, 3, 4])), (y, set(&[0, 1]))])
        );
        // "c" joins: "b" keeps the lowest of its partitions up to its share.
        let two = [
            member("b", &[x, y], &after["b"]),
            member("c", &[x, y], &none),
        ];
        let again = Assignor::Range.assign(&two, &partitions);
        assert_complete(&again, &partitions);
        assert_eq!(
            again["b"],
            BTreeMap::from([(x, set(&[0, 1, 2])), (y, set(&[0]))])
        );
        assert_eq!(Assignor::from_name("sticky"), None);
    }
}
