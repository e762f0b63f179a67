//! Fuzz bodies for what this crate decodes from the network, as plain `fn(&[u8])`.
//!
//! Not API (`#[doc(hidden)]`): `fuzz/` (cargo-fuzz) and the stable harness in the server crate's
//! `tests/fuzz_bodies.rs` run these same functions. A body panics only on a bug.
//!
//! - [`access_token`]: any string as a token (`peek_issuer`, `decode`).
//! - [`signed_token`]: arbitrary header and claims JSON, *validly signed*, so `decode` gets past
//!   the signature to the claims checks (expiry, not-before), which an attacker holding any
//!   valid key (or a token minted from user-controlled fields) reaches.
//! - [`signal_request`]: `SignalRequest` protobuf bytes through the bounded decoder and the JSON
//!   the SDKs embed in it (trickle candidates).
//! - [`join_request`]: the v1 URL's `join_request` parameter (base64 → `WrappedJoinRequest` →
//!   gzip or not → `JoinRequest`), as text and as the raw wrapper bytes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::protocol::{self, proto, CandidateInit};
use crate::token::{AccessToken, Claims, VideoGrant};

pub const API_KEY: &str = "APIfuzz";
pub const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-1234";
pub const NOW: u64 = 1_700_000_000;
/// `limits.max_signal_message_bytes` default.
pub const MAX_SIGNAL_BYTES: usize = 1 << 20;

fn secret_for(k: &str) -> Option<&'static str> {
    (k == API_KEY).then_some(SECRET)
}

/// Any string as an access token.
pub fn access_token(data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let _ = AccessToken::peek_issuer(&token);
    for now in [NOW, 0] {
        if let Ok(c) = AccessToken::decode(&token, secret_for, now) {
            let _ = c.video();
        }
    }
}

/// Input: header JSON, a 0xFF byte, claims JSON (or all claims if there is no 0xFF). The token
/// is signed with the fuzz key, so `decode` runs every check after the signature.
pub fn signed_token(data: &[u8]) {
    let (header, claims) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], data),
    };
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key size");
    mac.update(input.as_bytes());
    let token = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    for now in [NOW, 0] {
        if let Ok(c) = AccessToken::decode(&token, secret_for, now) {
            let v = c.video();
            let _ = (v.can_publish(), v.can_subscribe(), v.can_publish_data());
            // What verifies must re-encode to a token that verifies to the same claims.
            let again = AccessToken::encode(&c, SECRET);
            assert_eq!(
                AccessToken::decode(&again, secret_for, now).as_ref(),
                Ok(&c),
                "re-encoded token does not verify"
            );
        }
    }
}

/// `SignalRequest` bytes through the session's decoder; trickle candidates through their parser.
pub fn signal_request(data: &[u8]) {
    let Ok(req) = protocol::decode_request(data, MAX_SIGNAL_BYTES) else {
        return;
    };
    if let proto::signal_request::Message::Trickle(t) = &req {
        if let Ok(c) = CandidateInit::parse(&t.candidate_init) {
            let _ = CandidateInit::parse(&c.to_json());
        }
        let _ = protocol::Target::from_i32(t.target);
    }
    // Re-encoding what was decoded decodes again (the SDK-facing round trip).
    let bytes = protocol::encode_request(req);
    assert!(
        protocol::decode_request(&bytes, usize::MAX).is_ok(),
        "re-encoded request does not decode"
    );
}

/// A real publisher offer (Chromium, audio + video with simulcast), for seeds.
pub const CHROME_OFFER: &str = include_str!("fuzz_offer.sdp");

/// `join_request`: `data` as the parameter text, and as the wrapper bytes base64-encoded (so the
/// mutator reaches the protobuf and gzip layers); small limits keep each input cheap. A decoded
/// request must re-encode and decode to itself.
pub fn join_request(data: &[u8]) {
    use crate::join_request::{decode, encode, Limits};
    let limits = Limits {
        max_encoded: 64 * 1024,
        max_decoded: 256 * 1024,
    };
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode(text, limits);
    }
    let text = base64::engine::general_purpose::URL_SAFE.encode(data);
    if let Ok(req) = decode(&text, limits) {
        for gzip in [false, true] {
            let again = decode(&encode(&req, gzip), Limits::default());
            assert_eq!(again.as_ref(), Ok(&req), "re-encoded JoinRequest differs");
        }
    }
}

/// Seed inputs for `target` ("access_token", "signed_token", "signal_request", "join_request"), from real
/// messages: a join token as the server mints it, and the requests a livekit-client session sends.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let claims = Claims {
        iss: API_KEY.into(),
        sub: "alice".into(),
        nbf: NOW - 1,
        exp: NOW + 3600,
        name: Some("Alice".into()),
        metadata: Some("{\"k\":1}".into()),
        video: Some(VideoGrant::join("room-1")),
        ..Default::default()
    };
    let token = AccessToken::encode(&claims, SECRET);
    match target {
        "access_token" => vec![token.into_bytes(), b"a.b.c".to_vec()],
        "signed_token" => {
            let json = serde_json::to_vec(&claims).unwrap_or_default();
            let mut with_header = br#"{"alg":"HS256"}"#.to_vec();
            with_header.push(0xFF);
            with_header.extend_from_slice(&json);
            vec![json, with_header]
        }
        "signal_request" => {
            use proto::signal_request::Message as Req;
            let sd = |t: &str| proto::SessionDescription {
                r#type: t.into(),
                sdp: CHROME_OFFER.into(),
                ..Default::default()
            };
            let reqs = [
                Req::AddTrack(proto::AddTrackRequest {
                    cid: "TR_local_mic".into(),
                    name: "microphone".into(),
                    r#type: proto::TrackType::Audio as i32,
                    source: proto::TrackSource::Microphone as i32,
                    ..Default::default()
                }),
                Req::Offer(sd("offer")),
                Req::Trickle(proto::TrickleRequest {
                    candidate_init: r#"{"candidate":"candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host generation 0","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}"#.into(),
                    target: proto::SignalTarget::Publisher as i32,
                    ..Default::default()
                }),
                Req::Mute(proto::MuteTrackRequest {
                    sid: "TR_x".into(),
                    muted: true,
                }),
                Req::Subscription(proto::UpdateSubscription {
                    track_sids: vec!["TR_x".into()],
                    subscribe: true,
                    ..Default::default()
                }),
                Req::TrackSetting(proto::UpdateTrackSettings {
                    track_sids: vec!["TR_x".into()],
                    quality: proto::VideoQuality::High as i32,
                    ..Default::default()
                }),
                Req::PingReq(proto::Ping {
                    timestamp: 1,
                    rtt: 20,
                }),
                Req::Leave(proto::LeaveRequest::default()),
            ];
            reqs.into_iter().map(protocol::encode_request).collect()
        }
        "join_request" => {
            let req = proto::JoinRequest {
                publisher_offer: Some(proto::SessionDescription {
                    r#type: "offer".into(),
                    sdp: CHROME_OFFER.into(),
                    ..Default::default()
                }),
                connection_settings: Some(proto::ConnectionSettings {
                    auto_subscribe: true,
                    adaptive_stream: true,
                    ..Default::default()
                }),
                client_info: Some(proto::ClientInfo {
                    sdk: proto::client_info::Sdk::Js as i32,
                    version: "2.23.0".into(),
                    protocol: 16,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let text = |gzip| crate::join_request::encode(&req, gzip).into_bytes();
            // The wrapper bytes (the harness base64-encodes them) and the texts as sent.
            let wrapped = |gzip| {
                base64::engine::general_purpose::URL_SAFE
                    .decode(crate::join_request::encode(&req, gzip))
                    .unwrap_or_default()
            };
            vec![wrapped(false), wrapped(true), text(false), text(true)]
        }
        _ => Vec::new(),
    }
}
