//! Response encoding: size prefix, response header and body, ready for the socket. A Fetch
//! response's record sets are not copied: the frame borrows them, as pieces of its own.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{api_version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub reason: String,
}

/// An encoded response: pieces to write in order (with vectored writes). The bytes the
/// encoder writes are copied into runs; a Fetch response's record sets are pieces of their
/// own, the very buffers the broker read them into.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pieces: Vec<Bytes>,
    len: usize,
}

impl Frame {
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame in one buffer (a copy).
    pub fn to_bytes(&self) -> Bytes {
        let mut bytes = BytesMut::with_capacity(self.len);
        for piece in &self.pieces {
            bytes.put_slice(piece);
        }
        bytes.freeze()
    }
}

/// A frame built elsewhere, in one piece.
impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        Self {
            len: bytes.len(),
            pieces: vec![bytes],
        }
    }
}

/// 4-byte size prefix + response header + body.
///
/// The header version comes from `api_key.response_header_version`, which is v0 for every
/// ApiVersions version: a client that does not yet know the broker's versions must be able
/// to read the answer (KIP-511).
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Frame, EncodeError> {
    let error = |reason: String| EncodeError {
        api_key,
        api_version,
        reason,
    };
    let body_size = match body_api_key_and_size(body, api_version) {
        Some((key, size)) if key == api_key => size.map_err(error)?,
        Some((key, _)) => return Err(error(format!("the body is a {key:?} response"))),
        None => return Err(error("the body is an unknown response type".to_owned())),
    };
    let header_version = api_key.response_header_version(api_version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_size = header
        .compute_size(header_version)
        .map_err(|e| error(format!("header v{header_version}: {e:#}")))?;

    let size = header_size + body_size;
    let prefix = i32::try_from(size)
        .map_err(|_| error(format!("{size} bytes exceed the i32 size prefix")))?;
    let borrowed = fetch_records(body);
    let copied = 4 + size - borrowed.iter().map(Bytes::len).sum::<usize>();
    let mut buf = FrameBuf::new(copied, &borrowed);
    buf.put_i32(prefix);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| error(format!("header v{header_version}: {e:#}")))?;
    match body {
        ResponseKind::Fetch(fetch) => fetch.encode(&mut buf, api_version),
        // Other responses have no record sets to borrow.
        body => body.encode(&mut buf.run, api_version),
    }
    .map_err(|e| error(format!("{e:#}")))?;
    if !buf.borrow.is_empty() {
        return Err(error(
            "a record set was not written where expected".to_owned(),
        ));
    }
    // A compute_size bug must never desynchronise the client's framing.
    if buf.offset() != 4 + size {
        let written = buf.offset() - 4;
        return Err(error(format!("{written} bytes written, {size} computed")));
    }
    Ok(buf.finish())
}

/// The record sets of a Fetch response (each one's pieces, when given in pieces), in the order
/// its encoder writes them.
fn fetch_records(body: &ResponseKind) -> Vec<Bytes> {
    let ResponseKind::Fetch(fetch) = body else {
        return Vec::new();
    };
    fetch
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .flat_map(|partition| {
            if partition.record_pieces.is_empty() {
                partition.records.as_slice()
            } else {
                partition.record_pieces.as_slice()
            }
        })
        .filter(|records| !records.is_empty())
        .cloned()
        .collect()
}

/// The encoder's buffer: copies what it is given into the current run, except the next
/// record set to borrow, which it recognises by its address when the encoder writes it.
struct FrameBuf<'a> {
    done: Vec<Bytes>,
    done_len: usize,
    run: BytesMut,
    borrow: &'a [Bytes],
}

impl<'a> FrameBuf<'a> {
    fn new(copied: usize, borrow: &'a [Bytes]) -> Self {
        Self {
            done: Vec::with_capacity(2 * borrow.len() + 1),
            done_len: 0,
            run: BytesMut::with_capacity(copied),
            borrow,
        }
    }

    fn finish(mut self) -> Frame {
        self.end_run();
        Frame {
            pieces: self.done,
            len: self.done_len,
        }
    }

    fn end_run(&mut self) {
        if !self.run.is_empty() {
            self.done_len += self.run.len();
            self.done.push(self.run.split().freeze());
        }
    }
}

unsafe impl BufMut for FrameBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.run.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of the chunk `run` gave it.
        unsafe { self.run.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.run.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.borrow.split_first() {
            Some((next, rest)) if next.as_ptr() == src.as_ptr() && next.len() == src.len() => {
                self.end_run();
                self.done.push(next.clone());
                self.done_len += next.len();
                self.borrow = rest;
            }
            _ => self.run.put_slice(src),
        }
    }
}

/// kafka-protocol's message encoders only append; seeking and patching stay within the
/// current run.
impl ByteBufMut for FrameBuf<'_> {
    fn offset(&self) -> usize {
        self.done_len + self.run.len()
    }

    fn seek(&mut self, offset: usize) {
        self.run.resize(offset - self.done_len, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        &mut self.run[r.start - self.done_len..r.end - self.done_len]
    }
}

/// kafka-protocol's `ResponseKind` has no `compute_size`, so dispatch over its variants,
/// which are named like their `ApiKey`. `None` for a variant newer than this list.
macro_rules! api_key_and_size {
    ($body:expr, $version:expr, [$($api:ident)*]) => {
        match $body {
            $(ResponseKind::$api(b) => Some((
                ApiKey::$api,
                b.compute_size($version).map_err(|e| format!("{e:#}")),
            )),)*
            _ => None,
        }
    };
}

fn body_api_key_and_size(
    body: &ResponseKind,
    version: i16,
) -> Option<(ApiKey, Result<usize, String>)> {
    api_key_and_size!(body, version, [
        Produce Fetch ListOffsets Metadata OffsetCommit OffsetFetch FindCoordinator JoinGroup
        Heartbeat LeaveGroup SyncGroup DescribeGroups ListGroups SaslHandshake ApiVersions
        CreateTopics DeleteTopics DeleteRecords InitProducerId OffsetForLeaderEpoch
        AddPartitionsToTxn AddOffsetsToTxn EndTxn WriteTxnMarkers TxnOffsetCommit DescribeAcls
        CreateAcls DeleteAcls DescribeConfigs AlterConfigs AlterReplicaLogDirs DescribeLogDirs
        SaslAuthenticate CreatePartitions CreateDelegationToken RenewDelegationToken
        ExpireDelegationToken DescribeDelegationToken DeleteGroups ElectLeaders
        IncrementalAlterConfigs AlterPartitionReassignments ListPartitionReassignments
        OffsetDelete DescribeClientQuotas AlterClientQuotas DescribeUserScramCredentials
        AlterUserScramCredentials Vote BeginQuorumEpoch EndQuorumEpoch DescribeQuorum
        AlterPartition UpdateFeatures Envelope FetchSnapshot DescribeCluster DescribeProducers
        BrokerRegistration BrokerHeartbeat UnregisterBroker DescribeTransactions ListTransactions
        AllocateProducerIds ConsumerGroupHeartbeat ConsumerGroupDescribe ControllerRegistration
        GetTelemetrySubscriptions PushTelemetry AssignReplicasToDirs ListConfigResources
        DescribeTopicPartitions ShareGroupHeartbeat ShareGroupDescribe ShareFetch
        ShareAcknowledge AddRaftVoter RemoveRaftVoter UpdateRaftVoter InitializeShareGroupState
        ReadShareGroupState WriteShareGroupState DeleteShareGroupState ReadShareGroupStateSummary
        DescribeShareGroupOffsets AlterShareGroupOffsets DeleteShareGroupOffsets
    ])
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{
        ApiVersionsResponse, FetchResponse, MetadataResponse, ProduceResponse, ProducerId,
        ResponseHeader, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, StrBytes};

    use super::*;
    use crate::api_versions::api_versions_response;

    /// Checks the size prefix and strips it.
    fn unframe(encoded: &Frame) -> Bytes {
        let mut bytes = encoded.to_bytes();
        let size = bytes.get_i32();
        assert_eq!(size as usize, bytes.len(), "size prefix");
        bytes
    }

    /// A decodable body of any API: a buffer filled with one of these bytes always parses
    /// (zeros for plain fields, ones for compact lengths, which must not be null).
    fn any_body(api_key: ApiKey, version: i16) -> ResponseKind {
        [0u8, 1, 2]
            .iter()
            .find_map(|&fill| {
                ResponseKind::decode(api_key, &mut Bytes::from(vec![fill; 4096]), version).ok()
            })
            .unwrap_or_else(|| panic!("no sample body for {api_key:?}"))
    }

    #[test]
    fn every_response_type_is_encodable() {
        for api_key in ApiKey::iter() {
            let version = api_key.valid_versions().min;
            let body = any_body(api_key, version);
            let encoded = encode_response(api_key, version, 3, &body)
                .unwrap_or_else(|e| panic!("{api_key:?}: {e}"));
            let mut bytes = unframe(&encoded);
            let header_version = api_key.response_header_version(version);
            assert_eq!(
                ResponseHeader::decode(&mut bytes, header_version)
                    .unwrap()
                    .correlation_id,
                3
            );
            assert_eq!(
                ResponseKind::decode(api_key, &mut bytes, version).unwrap(),
                body
            );
        }
    }

    #[test]
    fn apiversions_responses_use_header_v0_in_every_version() {
        for version in 0..=4 {
            assert_eq!(ApiKey::ApiVersions.response_header_version(version), 0);
            let body = ResponseKind::ApiVersions(api_versions_response(0));
            let encoded = encode_response(ApiKey::ApiVersions, version, 11, &body).unwrap();
            let mut bytes = unframe(&encoded);
            assert_eq!(bytes.get_i32(), 11, "correlation id");
            // No tagged-field byte after the correlation id: the body follows at once and
            // decodes to the end.
            let decoded = ApiVersionsResponse::decode(&mut bytes, version).unwrap();
            assert_eq!(ResponseKind::ApiVersions(decoded), body, "v{version}");
            assert!(bytes.is_empty(), "v{version}");
        }
    }

    #[test]
    fn flexible_versions_get_header_v1() {
        let body = ResponseKind::Metadata(MetadataResponse::default().with_throttle_time_ms(9));
        let encoded = encode_response(ApiKey::Metadata, 12, -5, &body).unwrap();
        let mut bytes = unframe(&encoded);
        let header = ResponseHeader::decode(&mut bytes, 1).unwrap();
        assert_eq!(header.correlation_id, -5);
        let decoded = MetadataResponse::decode(&mut bytes, 12).unwrap();
        assert_eq!(decoded.throttle_time_ms, 9);
        assert!(bytes.is_empty());
    }

    #[test]
    fn prefix_header_and_body_add_up() {
        let body = ResponseKind::Produce(ProduceResponse::default());
        let encoded = encode_response(ApiKey::Produce, 9, 1, &body).unwrap();
        let expected = 4 + 4 + 1 + ProduceResponse::default().compute_size(9).unwrap();
        assert_eq!(encoded.len(), expected);
    }

    /// What kafka-protocol's encoder writes for the frame, in one buffer.
    fn contiguous(version: i16, correlation_id: i32, body: &FetchResponse) -> Bytes {
        let header = ResponseHeader::default().with_correlation_id(correlation_id);
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, ApiKey::Fetch.response_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        buf.freeze()
    }

    /// A partition's data with every field `version` has.
    fn partition(version: i16, index: i32, records: Option<Bytes>) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(100 + i64::from(index))
            .with_last_stable_offset(90)
            .with_log_start_offset(if version >= 5 { 3 } else { -1 })
            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                .with_producer_id(ProducerId(7))
                .with_first_offset(11)]))
            .with_records(records)
    }

    /// Every Fetch version encodes byte for byte as kafka-protocol's encoder does, whether a
    /// partition's records are there, empty or null, and the record sets are borrowed, not
    /// copied.
    #[test]
    fn fetch_frames_borrow_the_record_sets_and_match_the_contiguous_encoding() {
        let records = Bytes::from((0..=255u8).cycle().take(3000).collect::<Vec<_>>());
        let other = Bytes::from(vec![9u8; 130]);
        let topic = |name: &str, partitions| {
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(name.to_owned())))
                .with_partitions(partitions)
        };
        let bodies = |version: i16| {
            let partition = |index, records| partition(version, index, records);
            let session_id = if version >= 7 { 17 } else { 0 };
            [
                FetchResponse::default(),
                FetchResponse::default().with_responses(vec![topic(
                    "empty",
                    vec![partition(0, Some(Bytes::new())), partition(1, None)],
                )]),
                FetchResponse::default()
                    .with_throttle_time_ms(5)
                    .with_session_id(session_id)
                    .with_responses(vec![
                        topic(
                            "a",
                            vec![
                                partition(0, Some(records.clone())),
                                partition(1, Some(Bytes::new())),
                                partition(2, Some(other.clone())),
                            ],
                        ),
                        topic(
                            "b",
                            vec![partition(0, None), partition(4, Some(records.clone()))],
                        ),
                    ]),
            ]
        };
        let versions = ApiKey::Fetch.valid_versions();
        for version in 4..=versions.max {
            for body in &bodies(version) {
                let frame = encode_response(
                    ApiKey::Fetch,
                    version,
                    42,
                    &ResponseKind::Fetch(body.clone()),
                )
                .unwrap();
                let expected = contiguous(version, 42, body);
                assert_eq!(frame.to_bytes(), expected, "v{version}");
                assert_eq!(frame.len(), expected.len(), "v{version}");
                let borrowed = frame
                    .pieces()
                    .iter()
                    .filter(|p| {
                        [&records, &other]
                            .iter()
                            .any(|r| r.as_ptr() == p.as_ptr() && r.len() == p.len())
                    })
                    .count();
                let present = fetch_records(&ResponseKind::Fetch(body.clone())).len();
                assert_eq!(borrowed, present, "v{version}: record sets copied");
            }
        }
    }

    /// A record set given in pieces goes out as the same bytes as the pieces joined, in every
    /// Fetch version, each non-empty piece borrowed as it is.
    #[test]
    fn record_sets_in_pieces_are_sent_from_their_pieces_as_one_record_set() {
        let first = Bytes::from((0..=255u8).cycle().take(700).collect::<Vec<_>>());
        let second = Bytes::from(vec![5u8; 300]);
        let joined = [first.clone(), second.clone()].concat();
        let versions = ApiKey::Fetch.valid_versions();
        for version in 4..=versions.max {
            let mut in_pieces = partition(version, 0, Some(Bytes::new()));
            in_pieces.record_pieces = vec![first.clone(), Bytes::new(), second.clone()];
            let topic = |partition| {
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![partition])
            };
            let body = FetchResponse::default().with_responses(vec![topic(in_pieces)]);
            let frame =
                encode_response(ApiKey::Fetch, version, 7, &ResponseKind::Fetch(body)).unwrap();
            let whole = FetchResponse::default().with_responses(vec![topic(partition(
                version,
                0,
                Some(Bytes::from(joined.clone())),
            ))]);
            assert_eq!(
                frame.to_bytes(),
                contiguous(version, 7, &whole),
                "v{version}"
            );
            for piece in [&first, &second] {
                let sent = frame
                    .pieces()
                    .iter()
                    .any(|p| p.as_ptr() == piece.as_ptr() && p.len() == piece.len());
                assert!(sent, "v{version}: a piece was copied");
            }
        }
    }

    #[test]
    fn body_of_another_api_is_refused() {
        let body = ResponseKind::Produce(ProduceResponse::default());
        let err = encode_response(ApiKey::Fetch, 4, 1, &body).unwrap_err();
        assert_eq!(err.api_key, ApiKey::Fetch);
        assert!(err.reason.contains("Produce"), "{err}");
    }

    #[test]
    fn unknown_version_is_an_error_not_a_panic() {
        let body = ResponseKind::Metadata(MetadataResponse::default());
        let err = encode_response(ApiKey::Metadata, 99, 1, &body).unwrap_err();
        assert_eq!(err.api_version, 99);
    }
}
