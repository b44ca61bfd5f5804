//! The Fetch response, encoded by hand as a list of pieces: small header
//! pieces we write, and the stored record batches as they are. kafka-protocol's
//! encoder would copy every record byte into one buffer; this way record
//! bytes are never re-encoded or copied on their way to the socket.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::storage::txn_index::AbortedTxn;

/// The first Fetch version with flexible (tagged-field) encoding.
const FIRST_FLEXIBLE_VERSION: i16 = 12;
/// From v13 topics are named by id (KIP-516).
const FIRST_TOPIC_ID_VERSION: i16 = 13;
/// KIP-951: a partition's `current_leader` (tag 1) from v12, the
/// response's `node_endpoints` (tag 0) from v16.
const CURRENT_LEADER_TAG: u32 = 1;
const NODE_ENDPOINTS_TAG: u32 = 0;
const FIRST_NODE_ENDPOINTS_VERSION: i16 = 16;

/// A broker a response names as a leader (KIP-951).
pub struct NodeEndpoint<'a> {
    pub node: i32,
    pub host: &'a str,
    pub port: i32,
}

pub struct PartitionAnswer {
    pub index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// read_committed: the aborted transactions of the records returned
    /// (`None`, a null array, for read_uncommitted).
    pub aborted: Option<Vec<AbortedTxn>>,
    pub records: Vec<Bytes>,
    /// KIP-951: (leader id, leader epoch) for a client at the wrong broker.
    pub current_leader: Option<(i32, i32)>,
}

pub struct TopicAnswer<'a> {
    pub name: &'a str,
    pub id: Uuid,
    pub partitions: Vec<PartitionAnswer>,
}

/// Writes pieces into `chunks`, cutting the header buffer wherever record
/// bytes are spliced in.
struct Writer {
    chunks: Vec<Bytes>,
    current: BytesMut,
    flexible: bool,
}

impl Writer {
    fn unsigned_varint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.current.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        self.current.put_u8(value as u8);
    }

    fn array_len(&mut self, len: usize) {
        if self.flexible {
            self.unsigned_varint(len as u32 + 1);
        } else {
            self.current.put_i32(len as i32);
        }
    }

    fn null_array(&mut self) {
        if self.flexible {
            self.unsigned_varint(0);
        } else {
            self.current.put_i32(-1);
        }
    }

    fn string(&mut self, s: &str) {
        if self.flexible {
            self.unsigned_varint(s.len() as u32 + 1);
        } else {
            self.current.put_i16(s.len() as i16);
        }
        self.current.put_slice(s.as_bytes());
    }

    fn no_tagged_fields(&mut self) {
        if self.flexible {
            self.unsigned_varint(0);
        }
    }

    /// A tagged-field section holding one field (flexible versions only).
    fn one_tagged_field(&mut self, tag: u32, value: &[u8]) {
        self.unsigned_varint(1);
        self.unsigned_varint(tag);
        self.unsigned_varint(value.len() as u32);
        self.current.put_slice(value);
    }

    fn records(&mut self, batches: &[Bytes]) {
        let len: usize = batches.iter().map(Bytes::len).sum();
        if self.flexible {
            self.unsigned_varint(len as u32 + 1);
        } else {
            self.current.put_i32(len as i32);
        }
        if len > 0 {
            self.chunks.push(self.current.split().freeze());
            self.chunks.extend(batches.iter().cloned());
        }
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.chunks.push(self.current.split().freeze());
        }
        let total: usize = self.chunks.iter().map(Bytes::len).sum();
        self.chunks
            .insert(0, Bytes::copy_from_slice(&(total as i32).to_be_bytes()));
        self.chunks
    }
}

/// Encodes a whole Fetch response frame (length prefix included).
pub fn encode(
    correlation_id: i32,
    version: i16,
    error_code: i16,
    session_id: i32,
    topics: &[TopicAnswer<'_>],
    node_endpoints: &[NodeEndpoint<'_>],
) -> Vec<Bytes> {
    let flexible = version >= FIRST_FLEXIBLE_VERSION;
    let mut w = Writer {
        chunks: Vec::new(),
        current: BytesMut::with_capacity(256),
        flexible,
    };
    // Response header: v1 (with tagged fields) for flexible versions.
    w.current.put_i32(correlation_id);
    w.no_tagged_fields();
    w.current.put_i32(0); // throttle_time_ms
    if version >= 7 {
        w.current.put_i16(error_code);
        w.current.put_i32(session_id);
    }
    w.array_len(topics.len());
    for topic in topics {
        if version >= FIRST_TOPIC_ID_VERSION {
            w.current.put_slice(topic.id.as_bytes());
        } else {
            w.string(topic.name);
        }
        w.array_len(topic.partitions.len());
        for p in &topic.partitions {
            w.current.put_i32(p.index);
            w.current.put_i16(p.error_code);
            w.current.put_i64(p.high_watermark);
            w.current.put_i64(p.last_stable_offset);
            if version >= 5 {
                w.current.put_i64(p.log_start_offset);
            }
            match &p.aborted {
                None => w.null_array(),
                Some(aborted) => {
                    w.array_len(aborted.len());
                    for txn in aborted {
                        w.current.put_i64(txn.producer_id);
                        w.current.put_i64(txn.first_offset.get());
                        w.no_tagged_fields();
                    }
                }
            }
            if version >= 11 {
                w.current.put_i32(-1); // preferred_read_replica
            }
            w.records(&p.records);
            match p.current_leader {
                Some((leader, epoch)) if flexible => {
                    let mut value = BytesMut::with_capacity(9);
                    value.put_i32(leader);
                    value.put_i32(epoch);
                    value.put_u8(0); // its own tagged fields
                    w.one_tagged_field(CURRENT_LEADER_TAG, &value);
                }
                _ => w.no_tagged_fields(),
            }
        }
        w.no_tagged_fields();
    }
    if version >= FIRST_NODE_ENDPOINTS_VERSION && !node_endpoints.is_empty() {
        let value = encode_node_endpoints(node_endpoints);
        w.one_tagged_field(NODE_ENDPOINTS_TAG, &value);
    } else {
        w.no_tagged_fields();
    }
    w.finish()
}

/// `node_endpoints` as a compact array (its value in the tagged field).
fn encode_node_endpoints(endpoints: &[NodeEndpoint<'_>]) -> BytesMut {
    let mut w = Writer {
        chunks: Vec::new(),
        current: BytesMut::with_capacity(32 * endpoints.len()),
        flexible: true,
    };
    w.array_len(endpoints.len());
    for e in endpoints {
        w.current.put_i32(e.node);
        w.string(e.host);
        w.current.put_i32(e.port);
        w.unsigned_varint(0); // rack: null
        w.no_tagged_fields();
    }
    w.current
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, HeaderVersion};

    fn decode(chunks: &[Bytes], version: i16) -> (i32, FetchResponse) {
        let mut joined = BytesMut::new();
        for c in chunks {
            joined.extend_from_slice(c);
        }
        let mut frame = joined.freeze();
        let length = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(length as usize, frame.len() - 4);
        let _ = bytes::Buf::get_i32(&mut frame);
        let header =
            ResponseHeader::decode(&mut frame, FetchResponse::header_version(version)).unwrap();
        let response = FetchResponse::decode(&mut frame, version).unwrap();
        assert!(
            frame.is_empty(),
            "v{version}: {} bytes left over",
            frame.len()
        );
        (header.correlation_id, response)
    }

    #[test]
    fn every_version_decodes_with_the_reference_codec() {
        let id = Uuid::from_u128(42);
        for version in 4..=16 {
            let topics = [TopicAnswer {
                name: "orders",
                id,
                partitions: vec![
                    PartitionAnswer {
                        index: 3,
                        error_code: 0,
                        high_watermark: 100,
                        last_stable_offset: 90,
                        log_start_offset: 7,
                        aborted: Some(vec![AbortedTxn {
                            producer_id: 11,
                            first_offset: crate::storage::Offset(20),
                            last_offset: crate::storage::Offset(30),
                            last_stable_offset: crate::storage::Offset(31),
                        }]),
                        records: vec![Bytes::from_static(b"batch-one"), Bytes::from_static(b"two")],
                        current_leader: None,
                    },
                    PartitionAnswer {
                        index: 4,
                        error_code: 6,
                        high_watermark: 5,
                        last_stable_offset: 5,
                        log_start_offset: 0,
                        aborted: None,
                        records: vec![],
                        current_leader: Some((2, 7)),
                    },
                ],
            }];
            let endpoints = [NodeEndpoint {
                node: 2,
                host: "broker-two",
                port: 9093,
            }];
            let chunks = encode(77, version, 0, 0, &topics, &endpoints);
            let (correlation_id, response) = decode(&chunks, version);
            assert_eq!(correlation_id, 77);
            let topic = &response.responses[0];
            if version >= 13 {
                assert_eq!(topic.topic_id, id);
            } else {
                assert_eq!(topic.topic.as_str(), "orders");
            }
            let p = &topic.partitions[0];
            assert_eq!((p.partition_index, p.high_watermark), (3, 100));
            assert_eq!(p.last_stable_offset, 90);
            let aborted = p.aborted_transactions.as_deref().expect("an aborted list");
            assert_eq!(
                (aborted[0].producer_id.0, aborted[0].first_offset),
                (11, 20)
            );
            assert!(topic.partitions[1].aborted_transactions.is_none());
            assert_eq!(p.records.as_deref(), Some(&b"batch-onetwo"[..]));
            if version >= 5 {
                assert_eq!(p.log_start_offset, 7);
            }
            assert_eq!(topic.partitions[1].error_code, 6);
            let leader = &topic.partitions[1].current_leader;
            if version >= 12 {
                assert_eq!((leader.leader_id.0, leader.leader_epoch), (2, 7));
            } else {
                assert_eq!(leader.leader_id.0, -1);
            }
            if version >= 16 {
                let e = &response.node_endpoints[0];
                assert_eq!(
                    (e.node_id.0, e.host.as_str(), e.port),
                    (2, "broker-two", 9093)
                );
                assert!(e.rack.is_none());
            } else {
                assert!(response.node_endpoints.is_empty());
            }
        }
    }

    #[test]
    fn record_bytes_are_passed_through_uncopied() {
        let batch = Bytes::from(vec![9u8; 4096]);
        let topics = [TopicAnswer {
            name: "t",
            id: Uuid::nil(),
            partitions: vec![PartitionAnswer {
                index: 0,
                error_code: 0,
                high_watermark: 1,
                last_stable_offset: 1,
                log_start_offset: 0,
                aborted: None,
                records: vec![batch.clone()],
                current_leader: None,
            }],
        }];
        let chunks = encode(1, 12, 0, 0, &topics, &[]);
        assert!(chunks
            .iter()
            .any(|c| c.as_ptr() == batch.as_ptr() && c.len() == batch.len()));
    }
}
