//! Throttling a connection (KIP-219): the response goes out at once carrying
//! `throttle_time_ms`, and the broker reads nothing more from the connection until the
//! throttle time has passed (Kafka mutes the channel).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto_compat::kafka_protocol::messages::ResponseKind;

/// When a connection may be read again; shared by the connection and its requests' tasks.
#[derive(Debug, Clone, Default)]
pub struct ChannelThrottle(Arc<Mutex<Option<Instant>>>);

impl ChannelThrottle {
    /// Mutes the connection for `time` from now (or longer, if already muted for longer).
    pub fn mute_for(&self, time: Duration) {
        if time.is_zero() {
            return;
        }
        let until = Instant::now() + time;
        let mut muted = self.0.lock().unwrap();
        if muted.is_none_or(|current| current < until) {
            *muted = Some(until);
        }
    }

    /// Returns once the connection is not muted.
    pub async fn unmuted(&self) {
        loop {
            let until = *self.0.lock().unwrap();
            match until {
                Some(until) if until > Instant::now() => {
                    tokio::time::sleep_until(until.into()).await
                }
                _ => return,
            }
        }
    }
}

/// Sets the response's `throttle_time_ms`, for every response type that carries one.
pub fn set_throttle_time(body: &mut ResponseKind, time: Duration) {
    let millis = time.as_millis().min(i32::MAX as u128) as i32;
    macro_rules! set {
        ($($kind:ident),* $(,)?) => {
            match body {
                $(ResponseKind::$kind(r) => r.throttle_time_ms = millis,)*
                _ => {}
            }
        };
    }
    set!(
        AddOffsetsToTxn,
        AddPartitionsToTxn,
        AlterClientQuotas,
        AlterConfigs,
        AlterPartitionReassignments,
        AlterReplicaLogDirs,
        AlterUserScramCredentials,
        ApiVersions,
        ConsumerGroupDescribe,
        ConsumerGroupHeartbeat,
        CreateAcls,
        CreateDelegationToken,
        CreatePartitions,
        CreateTopics,
        DeleteAcls,
        DeleteGroups,
        DeleteRecords,
        DeleteTopics,
        DescribeAcls,
        DescribeClientQuotas,
        DescribeCluster,
        DescribeConfigs,
        DescribeDelegationToken,
        DescribeGroups,
        DescribeLogDirs,
        DescribeProducers,
        DescribeTopicPartitions,
        DescribeTransactions,
        DescribeUserScramCredentials,
        ElectLeaders,
        EndTxn,
        ExpireDelegationToken,
        Fetch,
        FindCoordinator,
        GetTelemetrySubscriptions,
        Heartbeat,
        IncrementalAlterConfigs,
        InitProducerId,
        JoinGroup,
        LeaveGroup,
        ListGroups,
        ListOffsets,
        ListPartitionReassignments,
        ListTransactions,
        Metadata,
        OffsetCommit,
        OffsetDelete,
        OffsetFetch,
        OffsetForLeaderEpoch,
        Produce,
        PushTelemetry,
        RenewDelegationToken,
        ShareAcknowledge,
        ShareFetch,
        ShareGroupDescribe,
        ShareGroupHeartbeat,
        SyncGroup,
        TxnOffsetCommit,
        UpdateFeatures,
    );
}

#[cfg(test)]
mod tests {
    use proto_compat::kafka_protocol::messages::{FetchResponse, ProduceResponse};

    use super::*;

    #[test]
    fn throttle_time_is_set_on_responses_that_carry_it() {
        let mut produce = ResponseKind::Produce(ProduceResponse::default());
        set_throttle_time(&mut produce, Duration::from_millis(1234));
        let ResponseKind::Produce(produce) = produce else {
            unreachable!()
        };
        assert_eq!(produce.throttle_time_ms, 1234);
        let mut fetch = ResponseKind::Fetch(FetchResponse::default());
        set_throttle_time(&mut fetch, Duration::from_secs(1 << 40));
        let ResponseKind::Fetch(fetch) = fetch else {
            unreachable!()
        };
        assert_eq!(fetch.throttle_time_ms, i32::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_muted_channel_waits_for_the_longest_mute() {
        let throttle = ChannelThrottle::default();
        let start = tokio::time::Instant::now();
        throttle.mute_for(Duration::from_millis(300));
        throttle.mute_for(Duration::from_millis(100));
        throttle.unmuted().await;
        assert!(start.elapsed() >= Duration::from_millis(300));
    }
}
