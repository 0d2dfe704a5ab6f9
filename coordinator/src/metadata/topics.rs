//! Topics: creation, deletion, more partitions, and their configs.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::offsets::topic_offset_prefixes;
use super::records::{unchanged, Changes, Key, Record};
use super::Coordinator;
use crate::error::CoordinatorError;
use crate::metadata_store::{Guard, MetaStoreError};
use crate::topic_config::TopicConfig;
use crate::{ConfigAlteration, ConfigEntry, TopicMeta};

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;
/// Bounds the memory and the transaction one request can ask for.
const MAX_PARTITIONS: i32 = 100_000;

impl Coordinator {
    /// `partitions` -1 means `num.partitions`, as in Kafka's CreateTopics.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, CoordinatorError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.defaults.num_partitions
        } else {
            partitions
        };
        let guard = self.lock_writes().await;
        let (meta, changes) = {
            let state = self.read();
            if state.topic_ids.contains_key(name) {
                return Err(CoordinatorError::TopicAlreadyExists(format!(
                    "Topic '{name}' already exists."
                )));
            }
            if partitions < 1 {
                return Err(CoordinatorError::InvalidPartitions(
                    "Number of partitions must be larger than 0.".into(),
                ));
            }
            check_partition_limit(partitions)?;
            TopicConfig::resolve(&self.defaults, &configs)?;
            let meta = TopicMeta {
                name: name.to_string(),
                topic_id: Uuid::new_v4(),
                partitions,
                configs,
            };
            let changes = Changes {
                guards: vec![Guard::Absent(Key::Topic(name.to_string()).to_string())],
                ..Changes::put(Record::Topic(meta.clone()))
            };
            (meta, changes)
        };
        if !validate_only {
            match self.commit(guard, changes).await {
                Ok(()) => {}
                Err(CoordinatorError::Store(MetaStoreError::GuardFailed)) => {
                    return Err(CoordinatorError::TopicAlreadyExists(format!(
                        "Topic '{name}' already exists."
                    )))
                }
                Err(e) => return Err(e),
            }
            tracing::info!(topic = name, topic_id = %meta.topic_id, partitions, "created topic");
            self.assign_new_leaders().await;
        }
        Ok(meta)
    }

    /// New partitions get leaders at once where a broker is live; when this fails the active
    /// coordinator assigns them.
    async fn assign_new_leaders(&self) {
        if let Err(e) = self.assign_leaders().await {
            tracing::warn!(error = %e, "cannot assign leaders to new partitions yet");
        }
    }

    /// Removes the topic, every key of its partitions and the groups' offsets of it in one
    /// transaction.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicMeta, CoordinatorError> {
        let guard = self.lock_writes().await;
        let (meta, changes) = {
            let state = self.read();
            let topic = state.topic(name).ok_or_else(|| unknown_topic(name))?;
            let t = topic.meta.topic_id;
            let mut delete_prefixes = vec![format!("partitions/{t}/")];
            delete_prefixes.extend(topic_offset_prefixes(&state, name));
            let changes = Changes {
                guards: vec![unchanged(&Record::Topic(topic.meta.clone()))],
                deletes: vec![Key::Topic(name.to_string())],
                delete_prefixes,
                ..Changes::default()
            };
            (topic.meta.clone(), changes)
        };
        self.commit(guard, changes).await?;
        tracing::info!(topic = name, topic_id = %meta.topic_id, "deleted topic");
        Ok(meta)
    }

    /// Grows the topic to `total` partitions; new ones get leaders like a new topic's.
    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<TopicMeta, CoordinatorError> {
        let guard = self.lock_writes().await;
        let (meta, changes) = {
            let state = self.read();
            let topic = state.topic(name).ok_or_else(|| unknown_topic(name))?;
            let current = topic.meta.partitions;
            if total <= current {
                return Err(CoordinatorError::InvalidPartitions(format!(
                    "Topic currently has {current} partitions, which is higher than or equal to the requested {total}."
                )));
            }
            check_partition_limit(total)?;
            let meta = TopicMeta {
                partitions: total,
                ..topic.meta.clone()
            };
            let changes = Changes {
                guards: vec![unchanged(&Record::Topic(topic.meta.clone()))],
                ..Changes::put(Record::Topic(meta.clone()))
            };
            (meta, changes)
        };
        if !validate_only {
            self.commit(guard, changes).await?;
            tracing::info!(topic = name, partitions = total, "created partitions");
            self.assign_new_leaders().await;
        }
        Ok(meta)
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        Some(self.read().topic(name)?.meta.clone())
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        Some(self.read().topics.get(&id)?.meta.clone())
    }

    /// Every topic's name, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        self.read().topic_ids.keys().cloned().collect()
    }

    /// Grows whenever a topic is created or deleted: names matched against a pattern need
    /// matching again only when it moved.
    pub fn topic_name_changes(&self) -> u64 {
        self.read().topic_name_changes
    }

    /// By name.
    pub fn topics(&self) -> Vec<TopicMeta> {
        let state = self.read();
        state
            .topic_ids
            .values()
            .map(|id| state.topics[id].meta.clone())
            .collect()
    }

    /// The effective configs of a topic.
    pub fn topic_config(&self, name: &str) -> Result<TopicConfig, CoordinatorError> {
        let state = self.read();
        let topic = state.topic(name).ok_or_else(|| unknown_topic(name))?;
        TopicConfig::resolve(&self.defaults, &topic.meta.configs)
    }

    pub fn describe_topic_config(&self, name: &str) -> Result<Vec<ConfigEntry>, CoordinatorError> {
        let state = self.read();
        let topic = state.topic(name).ok_or_else(|| unknown_topic(name))?;
        self.defaults.describe_topic(&topic.meta.configs)
    }

    pub fn describe_broker_config(&self) -> Vec<ConfigEntry> {
        self.defaults.describe()
    }

    pub async fn alter_topic_configs(
        &self,
        name: &str,
        alteration: ConfigAlteration,
        validate_only: bool,
    ) -> Result<(), CoordinatorError> {
        let guard = self.lock_writes().await;
        let changes = {
            let state = self.read();
            let topic = state.topic(name).ok_or_else(|| unknown_topic(name))?;
            let meta = TopicMeta {
                configs: self
                    .defaults
                    .alter_overrides(&topic.meta.configs, alteration)?,
                ..topic.meta.clone()
            };
            Changes {
                guards: vec![unchanged(&Record::Topic(topic.meta.clone()))],
                ..Changes::put(Record::Topic(meta))
            }
        };
        if !validate_only {
            self.commit(guard, changes).await?;
            tracing::info!(topic = name, "altered topic configs");
        }
        Ok(())
    }
}

fn unknown_topic(name: &str) -> CoordinatorError {
    CoordinatorError::UnknownTopicOrPartition(format!("Topic '{name}' does not exist."))
}

fn check_partition_limit(partitions: i32) -> Result<(), CoordinatorError> {
    if partitions > MAX_PARTITIONS {
        return Err(CoordinatorError::InvalidPartitions(format!(
            "Number of partitions {partitions} is above Strata's limit of {MAX_PARTITIONS} per topic."
        )));
    }
    Ok(())
}

/// Kafka's rules for topic names.
fn validate_topic_name(name: &str) -> Result<(), CoordinatorError> {
    let reason = if name.is_empty() {
        "Topic name is illegal, it can't be empty".to_string()
    } else if name == "." || name == ".." {
        "Topic name cannot be \".\" or \"..\"".to_string()
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        format!("Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )
    } else {
        return Ok(());
    };
    Err(CoordinatorError::InvalidTopic(reason))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::test_support::{broker, chunk, commit, open, snapshot, TestStore};
    use crate::error::CoordinatorError;
    use crate::{AlterConfigOp, ConfigAlteration, ConfigSource, TimestampType};

    fn configs(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn create_describe_delete() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        coordinator.register_broker(broker(1)).await.unwrap();
        let meta = coordinator
            .create_topic("orders", 3, configs(&[("retention.ms", "1000")]), false)
            .await
            .unwrap();
        assert_eq!((meta.name.as_str(), meta.partitions), ("orders", 3));
        assert_eq!(coordinator.topic("orders"), Some(meta.clone()));
        assert_eq!(coordinator.topic_by_id(meta.topic_id), Some(meta.clone()));
        coordinator
            .create_topic("alpha", 1, BTreeMap::new(), false)
            .await
            .unwrap();
        let names: Vec<String> = coordinator.topics().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["alpha", "orders"]);
        assert_eq!(
            coordinator.topic_config("orders").unwrap().retention_ms,
            1000
        );

        let t = meta.topic_id;
        coordinator
            .commit_flush(vec![commit(t, 2, 0, chunk(0, 4))])
            .await
            .unwrap();
        assert_eq!(coordinator.delete_topic("orders").await.unwrap(), meta);
        assert_eq!(coordinator.topic("orders"), None);
        assert_eq!(coordinator.topic_by_id(t), None);
        assert_eq!(coordinator.leader(t, 0), None);
        assert_eq!(coordinator.partition_log(t, 2), None);
        // Every key of the topic is gone from the store, not just from memory.
        assert!(store
            .keys()
            .iter()
            .all(|key| !key.contains("orders") && !key.contains(&t.to_string())));

        let again = coordinator
            .create_topic("orders", 1, BTreeMap::new(), false)
            .await
            .unwrap();
        assert_ne!(again.topic_id, t);
        assert_eq!(
            coordinator
                .partition_log(again.topic_id, 0)
                .unwrap()
                .high_watermark,
            0
        );
    }

    #[tokio::test]
    async fn create_errors() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        coordinator
            .create_topic("a", 1, BTreeMap::new(), false)
            .await
            .unwrap();
        let create = |name: &str, partitions, configs| {
            let coordinator = coordinator.clone();
            let name = name.to_string();
            async move {
                coordinator
                    .create_topic(&name, partitions, configs, false)
                    .await
            }
        };
        let long = "x".repeat(250);
        for name in ["", ".", "..", "a/b", "a b", "ü", long.as_str()] {
            let result = create(name, 1, BTreeMap::new()).await;
            assert!(
                matches!(result, Err(CoordinatorError::InvalidTopic(_))),
                "{name:?}: {result:?}"
            );
        }
        assert!(create(&"x".repeat(249), 1, BTreeMap::new()).await.is_ok());
        let exists = create("a", 1, BTreeMap::new()).await.unwrap_err();
        assert!(matches!(exists, CoordinatorError::TopicAlreadyExists(_)));
        assert_eq!(exists.error_code(), 36);
        for partitions in [0, -2, 100_001] {
            let result = create("b", partitions, BTreeMap::new()).await;
            assert_eq!(result.unwrap_err().error_code(), 37, "{partitions}");
        }
        let bad_config = create("b", 1, configs(&[("cleanup.policy", "shred")]))
            .await
            .unwrap_err();
        assert_eq!(bad_config.error_code(), 40);
        assert!(
            bad_config.to_string().contains("cleanup.policy"),
            "{bad_config}"
        );
        assert_eq!(
            coordinator
                .delete_topic("b")
                .await
                .unwrap_err()
                .error_code(),
            3
        );
        assert!(coordinator.topic("b").is_none());
        // -1: the broker's num.partitions.
        assert_eq!(
            create("c", -1, BTreeMap::new()).await.unwrap().partitions,
            1
        );
    }

    #[tokio::test]
    async fn validate_only_writes_nothing() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        coordinator
            .create_topic("a", 1, BTreeMap::new(), false)
            .await
            .unwrap();
        let commits = store.commits();
        let meta = coordinator
            .create_topic("b", 2, BTreeMap::new(), true)
            .await
            .unwrap();
        assert_eq!(meta.partitions, 2);
        assert!(coordinator.topic("b").is_none());
        assert!(coordinator
            .create_topic("a", 1, BTreeMap::new(), true)
            .await
            .is_err());
        assert_eq!(
            coordinator
                .create_partitions("a", 4, true)
                .await
                .unwrap()
                .partitions,
            4
        );
        assert_eq!(coordinator.topic("a").unwrap().partitions, 1);
        let alteration = ConfigAlteration::Replace(configs(&[("retention.ms", "5")]));
        coordinator
            .alter_topic_configs("a", alteration, true)
            .await
            .unwrap();
        assert!(coordinator.topic("a").unwrap().configs.is_empty());
        assert_eq!(store.commits(), commits);
    }

    #[tokio::test]
    async fn create_partitions_grows_only() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        let meta = coordinator
            .create_topic("a", 2, BTreeMap::new(), false)
            .await
            .unwrap();
        for total in [1, 2] {
            let result = coordinator.create_partitions("a", total, false).await;
            assert!(
                matches!(result, Err(CoordinatorError::InvalidPartitions(_))),
                "{result:?}"
            );
        }
        let grown = coordinator.create_partitions("a", 5, false).await.unwrap();
        assert_eq!(
            grown,
            crate::TopicMeta {
                partitions: 5,
                ..meta.clone()
            }
        );
        assert_eq!(coordinator.topic("a").unwrap().partitions, 5);
        assert_eq!(
            coordinator
                .partition_log(meta.topic_id, 4)
                .unwrap()
                .high_watermark,
            0
        );
        let unknown = coordinator.create_partitions("zzz", 5, false).await;
        assert!(matches!(
            unknown,
            Err(CoordinatorError::UnknownTopicOrPartition(_))
        ));
    }

    #[tokio::test]
    async fn configs_describe_and_alter() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        coordinator
            .create_topic(
                "a",
                1,
                configs(&[("retention.ms", "1000"), ("segment.ms", "50")]),
                false,
            )
            .await
            .unwrap();
        let entries = coordinator.describe_topic_config("a").unwrap();
        assert_eq!(entries.len(), crate::topic_config::catalog::CONFIGS.len());
        let retention = entries.iter().find(|e| e.name == "retention.ms").unwrap();
        assert_eq!(
            (retention.value.as_deref(), retention.source),
            (Some("1000"), ConfigSource::TopicOverride)
        );
        assert!(coordinator
            .describe_broker_config()
            .iter()
            .any(|e| e.name == "num.partitions"));
        assert!(coordinator.describe_topic_config("zzz").is_err());
        assert!(coordinator.topic_config("zzz").is_err());

        let incremental = ConfigAlteration::Incremental(vec![
            ("retention.ms".into(), AlterConfigOp::Delete),
            (
                "message.timestamp.type".into(),
                AlterConfigOp::Set("LogAppendTime".into()),
            ),
        ]);
        coordinator
            .alter_topic_configs("a", incremental, false)
            .await
            .unwrap();
        assert_eq!(
            coordinator.topic("a").unwrap().configs,
            configs(&[
                ("message.timestamp.type", "LogAppendTime"),
                ("segment.ms", "50")
            ])
        );
        let config = coordinator.topic_config("a").unwrap();
        assert_eq!(config.retention_ms, 604_800_000);
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);

        let before = snapshot(&coordinator);
        for alteration in [
            ConfigAlteration::Replace(configs(&[("retention.ms", "-5")])),
            ConfigAlteration::Replace(configs(&[("unknown.key", "1")])),
            ConfigAlteration::Incremental(vec![(
                "cleanup.policy".into(),
                AlterConfigOp::Append("shred".into()),
            )]),
            ConfigAlteration::Incremental(vec![(
                "segment.ms".into(),
                AlterConfigOp::Subtract("50".into()),
            )]),
        ] {
            let result = coordinator
                .alter_topic_configs("a", alteration.clone(), false)
                .await;
            assert!(
                matches!(result, Err(CoordinatorError::InvalidConfig(_))),
                "{alteration:?}: {result:?}"
            );
        }
        assert_eq!(snapshot(&coordinator), before);

        let replace = ConfigAlteration::Replace(configs(&[("retention.bytes", "4096")]));
        coordinator
            .alter_topic_configs("a", replace, false)
            .await
            .unwrap();
        assert_eq!(
            coordinator.topic("a").unwrap().configs,
            configs(&[("retention.bytes", "4096")])
        );
        let missing = coordinator
            .alter_topic_configs("zzz", ConfigAlteration::Replace(BTreeMap::new()), false)
            .await;
        assert!(matches!(
            missing,
            Err(CoordinatorError::UnknownTopicOrPartition(_))
        ));
    }

    #[tokio::test]
    async fn failed_commit_creates_nothing() {
        let store = TestStore::new();
        let coordinator = open(&store).await;
        store.fail_commits(true);
        let result = coordinator
            .create_topic("a", 1, BTreeMap::new(), false)
            .await;
        assert!(matches!(result, Err(CoordinatorError::Store(_))));
        assert!(coordinator.topic("a").is_none());
        store.fail_commits(false);
        coordinator
            .create_topic("a", 1, BTreeMap::new(), false)
            .await
            .unwrap();
    }
}
