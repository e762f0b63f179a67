//! The LiveKit signal protocol (v0, dual peer connection) as Parlor speaks it.
//!
//! Types come from the `livekit-protocol` crate (pre-generated prost code of livekit/protocol 1.52.1, the
//! version livekit-client 2.23 uses). This module adds bounded decoding and the small JSON shapes the SDKs
//! embed in protobuf strings (trickle candidates).

pub use livekit_protocol as proto;
use prost::Message;
use serde::{Deserialize, Serialize};

/// Protocol version we announce in `ServerInfo.protocol`.
pub const PROTOCOL_VERSION: i32 = 16;
/// Version string in `ServerInfo.version`; JS refuses RPC below 1.8.0 and needs it non-empty.
pub const SERVER_VERSION: &str = "1.9.0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("signal message too large ({0} bytes)")]
    TooLarge(usize),
    #[error("malformed signal message: {0}")]
    Malformed(String),
    #[error("signal message has no content")]
    Empty,
}

/// Decode a client `SignalRequest`, refusing oversize frames before parsing.
pub fn decode_request(
    bytes: &[u8],
    max_len: usize,
) -> Result<proto::signal_request::Message, ProtocolError> {
    if bytes.len() > max_len {
        return Err(ProtocolError::TooLarge(bytes.len()));
    }
    let req =
        proto::SignalRequest::decode(bytes).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    req.message.ok_or(ProtocolError::Empty)
}

pub fn encode_response(msg: proto::signal_response::Message) -> Vec<u8> {
    proto::SignalResponse { message: Some(msg) }.encode_to_vec()
}

pub fn encode_request(msg: proto::signal_request::Message) -> Vec<u8> {
    proto::SignalRequest { message: Some(msg) }.encode_to_vec()
}

pub fn decode_response(bytes: &[u8]) -> Result<proto::signal_response::Message, ProtocolError> {
    let resp = proto::SignalResponse::decode(bytes)
        .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    resp.message.ok_or(ProtocolError::Empty)
}

/// `RTCIceCandidateInit` as the SDKs serialise it inside `TrickleRequest.candidate_init` (camelCase).
/// Both fields `sdpMid` and `sdpMLineIndex` are always sent: the Rust SDK unwraps them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CandidateInit {
    pub candidate: String,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

impl CandidateInit {
    pub fn parse(json: &str) -> Result<CandidateInit, ProtocolError> {
        if json.len() > 4096 {
            return Err(ProtocolError::TooLarge(json.len()));
        }
        serde_json::from_str(json).map_err(|e| ProtocolError::Malformed(e.to_string()))
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Signal target of trickle/offer messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Publisher,
    Subscriber,
}

impl Target {
    pub fn from_i32(v: i32) -> Target {
        if v == proto::SignalTarget::Subscriber as i32 {
            Target::Subscriber
        } else {
            Target::Publisher
        }
    }
    pub fn as_i32(self) -> i32 {
        match self {
            Target::Publisher => proto::SignalTarget::Publisher as i32,
            Target::Subscriber => proto::SignalTarget::Subscriber as i32,
        }
    }
}

/// The msid the subscriber offer carries for a forwarded track: stream `PA_x|TR_y`, track `TR_y`.
/// A LeaveRequest telling the client why it is disconnected and whether to reconnect (any action
/// but DISCONNECT lets it try again).
pub fn leave_response(
    reason: proto::DisconnectReason,
    action: proto::leave_request::Action,
) -> proto::signal_response::Message {
    proto::signal_response::Message::Leave(proto::LeaveRequest {
        can_reconnect: action != proto::leave_request::Action::Disconnect,
        reason: reason as i32,
        action: action as i32,
        regions: None,
    })
}

pub fn subscriber_stream_id(participant_sid: &str, track_sid: &str) -> String {
    format!("{participant_sid}|{track_sid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_bounds_and_garbage() {
        assert_eq!(
            decode_request(&[0u8; 10], 5),
            Err(ProtocolError::TooLarge(10))
        );
        assert!(matches!(
            decode_request(&[0xff, 0xff, 0xff], 100),
            Err(ProtocolError::Malformed(_))
        ));
        assert_eq!(decode_request(&[], 100), Err(ProtocolError::Empty));
        let ping = encode_request(proto::signal_request::Message::Ping(42));
        assert_eq!(
            decode_request(&ping, 100),
            Ok(proto::signal_request::Message::Ping(42))
        );
    }

    #[test]
    fn candidate_json_matches_sdks() {
        let j = r#"{"sdpMid":"7","sdpMLineIndex":0,"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host"}"#;
        let c = CandidateInit::parse(j).unwrap();
        assert_eq!(c.sdp_mid.as_deref(), Some("7"));
        assert_eq!(c.sdp_mline_index, Some(0));
        let back = c.to_json();
        assert!(
            back.contains("\"sdpMLineIndex\":0") && back.contains("\"sdpMid\":\"7\""),
            "{back}"
        );
        assert!(CandidateInit::parse("{").is_err());
    }

    #[test]
    fn no_panic_on_random_bytes() {
        // A deterministic sweep of pseudo-random frames through the decoder.
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for len in 0..2000usize {
            let mut buf = Vec::with_capacity(len % 300);
            for _ in 0..(len % 300) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = decode_request(&buf, 1 << 20);
        }
    }
}
