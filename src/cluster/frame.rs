//! Inter-broker frames: `[length u32 BE][items]`, each item `[kind u8]
//! [length u32 BE][bytes]`. One frame carries every message queued for a
//! peer since the last write. A partition group's message names its group:
//! `[topic length u16 BE][topic][partition u32 BE][raft message]`. Lengths
//! are checked against named bounds before anything is allocated.

use prost::Message as _;
use serde::{Deserialize, Serialize};

use super::NodeId;

/// The largest frame a peer may send (a Raft append carries at most 1 MiB
/// of entries; many messages may share a frame).
pub const FRAME_BYTES_MAX: usize = 32 << 20;
/// The frame length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;
const ITEM_HEADER_BYTES: usize = 5;
const KIND_RAFT: u8 = 1;
const KIND_CONTROL: u8 = 2;
const KIND_PARTITION: u8 = 3;
/// The longest topic name Kafka allows.
const TOPIC_BYTES_MAX: usize = 249;

/// What brokers tell each other.
#[derive(Debug, Clone, PartialEq)]
pub enum WireMessage {
    /// A message of the controller's Raft group (boxed: it is ten times
    /// the size of the other variant).
    Raft(Box<raft::prelude::Message>),
    Control(Control),
    /// A message of one replicated partition's Raft group.
    Partition(PartitionMessage),
}

/// A Raft message of the group of `topic`'s `partition`.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionMessage {
    pub topic: std::sync::Arc<str>,
    pub partition: u32,
    pub message: Box<raft::prelude::Message>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// A broker renews its lease with the controller leader and says where
    /// its clients connect.
    Heartbeat {
        node: NodeId,
        host: String,
        port: u16,
    },
    /// An encoded controller command for the leader to propose.
    Propose { command: Vec<u8> },
    /// ElectLeaders: the receiving broker, the partition's preferred
    /// replica, asks the partition's leader to hand over.
    ElectPreferred { topic: String, partition: u32 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("a frame of {0} bytes is larger than {FRAME_BYTES_MAX}")]
    TooLarge(usize),
    #[error("an item runs past the end of its frame")]
    Truncated,
    #[error("unknown item kind {0}")]
    UnknownKind(u8),
    #[error("undecodable item: {0}")]
    Undecodable(String),
}

/// Checks a frame's length prefix before its body is read.
pub fn body_length(header: [u8; FRAME_HEADER_BYTES]) -> Result<usize, FrameError> {
    let length = u32::from_be_bytes(header) as usize;
    if length > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(length));
    }
    Ok(length)
}

/// One frame with `messages`, length prefix included.
pub fn encode(messages: &[WireMessage]) -> Vec<u8> {
    let mut frame = vec![0; FRAME_HEADER_BYTES];
    for message in messages {
        let (kind, bytes) = match message {
            WireMessage::Raft(raft) => (KIND_RAFT, raft.encode_to_vec()),
            WireMessage::Control(control) => (
                KIND_CONTROL,
                serde_json::to_vec(control).expect("a control message of plain data serializes"),
            ),
            WireMessage::Partition(p) => {
                let mut bytes = Vec::with_capacity(6 + p.topic.len() + p.message.encoded_len());
                bytes.extend_from_slice(&(p.topic.len() as u16).to_be_bytes());
                bytes.extend_from_slice(p.topic.as_bytes());
                bytes.extend_from_slice(&p.partition.to_be_bytes());
                // Encoding into a Vec cannot fail.
                let _ = p.message.encode(&mut bytes);
                (KIND_PARTITION, bytes)
            }
        };
        frame.push(kind);
        frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        frame.extend_from_slice(&bytes);
    }
    let body = (frame.len() - FRAME_HEADER_BYTES) as u32;
    frame[..FRAME_HEADER_BYTES].copy_from_slice(&body.to_be_bytes());
    frame
}

/// The messages of one frame body (after its length prefix).
pub fn decode(mut body: &[u8]) -> Result<Vec<WireMessage>, FrameError> {
    let mut messages = Vec::new();
    while !body.is_empty() {
        let header = body.get(..ITEM_HEADER_BYTES).ok_or(FrameError::Truncated)?;
        let kind = header[0];
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let item = body
            .get(ITEM_HEADER_BYTES..ITEM_HEADER_BYTES.saturating_add(length))
            .ok_or(FrameError::Truncated)?;
        let message = match kind {
            KIND_RAFT => raft::prelude::Message::decode(item)
                .map(|m| WireMessage::Raft(Box::new(m)))
                .map_err(|e| FrameError::Undecodable(e.to_string()))?,
            KIND_CONTROL => serde_json::from_slice(item)
                .map(WireMessage::Control)
                .map_err(|e| FrameError::Undecodable(e.to_string()))?,
            KIND_PARTITION => WireMessage::Partition(decode_partition(item)?),
            other => return Err(FrameError::UnknownKind(other)),
        };
        messages.push(message);
        body = &body[ITEM_HEADER_BYTES + length..];
    }
    Ok(messages)
}

fn decode_partition(item: &[u8]) -> Result<PartitionMessage, FrameError> {
    let undecodable = |what: &str| FrameError::Undecodable(what.to_string());
    let length = item.get(..2).ok_or(FrameError::Truncated)?;
    let length = u16::from_be_bytes([length[0], length[1]]) as usize;
    if length == 0 || length > TOPIC_BYTES_MAX {
        return Err(undecodable("a topic name of a bad length"));
    }
    let topic = item.get(2..2 + length).ok_or(FrameError::Truncated)?;
    let topic = std::str::from_utf8(topic).map_err(|_| undecodable("a topic name not in UTF-8"))?;
    let partition = item
        .get(2 + length..6 + length)
        .ok_or(FrameError::Truncated)?;
    let partition = u32::from_be_bytes([partition[0], partition[1], partition[2], partition[3]]);
    let message = raft::prelude::Message::decode(&item[6 + length..])
        .map_err(|e| FrameError::Undecodable(e.to_string()))?;
    Ok(PartitionMessage {
        topic: topic.into(),
        partition,
        message: Box::new(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_in_one_frame() {
        let raft = raft::prelude::Message {
            from: 1,
            to: 2,
            term: 3,
            ..Default::default()
        };
        let messages = vec![
            WireMessage::Raft(Box::new(raft)),
            WireMessage::Control(Control::Heartbeat {
                node: 1,
                host: "127.0.0.1".into(),
                port: 9092,
            }),
            WireMessage::Control(Control::ElectPreferred {
                topic: "orders".into(),
                partition: 2,
            }),
            WireMessage::Partition(PartitionMessage {
                topic: "orders".into(),
                partition: 7,
                message: Box::new(raft::prelude::Message {
                    from: 2,
                    to: 3,
                    term: 4,
                    ..Default::default()
                }),
            }),
        ];
        let frame = encode(&messages);
        let header: [u8; 4] = frame[..4].try_into().unwrap();
        assert_eq!(body_length(header).unwrap(), frame.len() - 4);
        assert_eq!(decode(&frame[4..]).unwrap(), messages);
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert_eq!(
            body_length(u32::MAX.to_be_bytes()),
            Err(FrameError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(decode(&[1, 0, 0, 0, 9, 0]), Err(FrameError::Truncated));
        assert_eq!(decode(&[1, 255, 255, 255, 255]), Err(FrameError::Truncated));
        assert_eq!(decode(&[9, 0, 0, 0, 0]), Err(FrameError::UnknownKind(9)));
        // A partition message with a topic longer than its item.
        assert_eq!(
            decode(&[3, 0, 0, 0, 3, 0, 9, b'x']),
            Err(FrameError::Truncated)
        );
        assert!(matches!(
            decode(&[3, 0, 0, 0, 2, 0, 0]),
            Err(FrameError::Undecodable(_))
        ));
        assert!(matches!(
            decode(&[2, 0, 0, 0, 1, b'x']),
            Err(FrameError::Undecodable(_))
        ));
    }
}
