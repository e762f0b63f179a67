//! LiveKit-format webhooks: the SFU's room events as LiveKit's server sends them, for receivers
//! written against LiveKit's server SDKs (`WebhookReceiver` of `livekit-api`, `livekit-server-sdk`).
//!
//! Owns the translation of [`SfuEvent`]s into `livekit.WebhookEvent`s (`room_started`,
//! `room_finished`, `participant_joined`, `participant_left`, `track_published`,
//! `track_unpublished`; proto3 JSON, `id` = `EV_…`, `created_at` = unix seconds of the event), the
//! consumer task that puts them on the delivery queue ([`super::Webhooks`]), and how an attempt is
//! signed: `Content-Type: application/webhook+json` and an `Authorization` header carrying a bare
//! JWT (no `Bearer`), HS256 with the API secret, `iss` = API key, `nbf`/`exp` (5 minutes), and
//! `sha256` = base64 (standard, padded) of the SHA-256 of the body — minted per attempt, so a retry
//! is not refused as expired. That is what LiveKit's `webhook.URLNotifier` sends and its
//! `webhook.Receive` / the SDKs' `WebhookReceiver` check.
//!
//! What the events carry: the room (`sid`, `name`, creation time, limits, counts of visible
//! participants); for `participant_*` the participant's full info (`participant_left`: state
//! DISCONNECTED, after a `track_unpublished` for each of its tracks); for `track_*` the
//! publisher's `sid` and `identity` and the track's info. Hidden participants (a recorder) send
//! nothing. Unlike LiveKit, `participant_joined` is sent when the participant joins the room (not
//! when its media connects) and there is no `participant_connection_aborted`.

use super::Webhooks;
use crate::config::WebhooksConfig;
use crate::sfu::{EventInfo, SfuEvent, SfuHandle};
use base64::Engine;
use parlor_signaling::protocol::proto;
use parlor_signaling::{AccessToken, Claims};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The body's media type (LiveKit's own, so a receiver checks the signature before parsing).
pub const CONTENT_TYPE: &str = "application/webhook+json";

/// How long a webhook's token is valid from the attempt (LiveKit's value).
pub const TOKEN_TTL_SECS: u64 = 5 * 60;

/// Why the LiveKit webhook key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignerError {
    #[error("webhooks.livekit_api_key {0:?} is not one of the configured API keys")]
    UnknownKey(String),
    #[error("webhooks.livekit_urls is set but no API key is configured to sign them")]
    NoKey,
}

/// The API key (and its secret) that signs LiveKit-format webhooks.
#[derive(Clone)]
pub struct Signer {
    key: String,
    secret: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key", &self.key).finish()
    }
}

impl Signer {
    pub fn new(key: impl Into<String>, secret: impl Into<String>) -> Signer {
        Signer {
            key: key.into(),
            secret: secret.into(),
        }
    }

    /// `[webhooks] livekit_api_key` among the API keys `keys`; empty: the primary (first) key.
    /// Ok(None) when there is no key and no LiveKit URL needs one.
    pub fn from_config(
        cfg: &WebhooksConfig,
        keys: &BTreeMap<String, String>,
    ) -> Result<Option<Signer>, SignerError> {
        let found = if cfg.livekit_api_key.is_empty() {
            keys.iter().next()
        } else {
            let k = keys.get_key_value(&cfg.livekit_api_key);
            if k.is_none() {
                return Err(SignerError::UnknownKey(cfg.livekit_api_key.clone()));
            }
            k
        };
        match found {
            Some((k, s)) => Ok(Some(Signer::new(k.clone(), s.clone()))),
            None if cfg.livekit_urls.is_empty() => Ok(None),
            None => Err(SignerError::NoKey),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Authorization` header value for `body` sent at `now` (unix seconds): a bare JWT.
    pub fn token(&self, body: &[u8], now: u64) -> String {
        let claims = Claims {
            iss: self.key.clone(),
            nbf: now,
            exp: now + TOKEN_TTL_SECS,
            sha256: Some(body_sha256(body)),
            ..Default::default()
        };
        AccessToken::encode(&claims, &self.secret)
    }
}

/// base64 (standard alphabet, padded) of SHA-256 of `body`: the token's `sha256` claim.
pub fn body_sha256(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body))
}

/// The LiveKit webhook for `ev` (None: an event LiveKit has no webhook for), with `id`.
pub fn webhook_event(ev: &SfuEvent, id: String) -> Option<proto::WebhookEvent> {
    let (name, at_ms, info): (&str, i64, &EventInfo) = match ev {
        SfuEvent::RoomCreated { at_ms, info, .. } => ("room_started", *at_ms, info),
        SfuEvent::RoomClosed { at_ms, info, .. } => ("room_finished", *at_ms, info),
        SfuEvent::ParticipantJoined { at_ms, info, .. } => ("participant_joined", *at_ms, info),
        SfuEvent::ParticipantLeft { at_ms, info, .. } => ("participant_left", *at_ms, info),
        SfuEvent::TrackPublished { at_ms, info, .. } => ("track_published", *at_ms, info),
        SfuEvent::TrackUnpublished { at_ms, info, .. } => ("track_unpublished", *at_ms, info),
        SfuEvent::MediaConnected { .. } => return None,
    };
    let track_event = matches!(
        ev,
        SfuEvent::TrackPublished { .. } | SfuEvent::TrackUnpublished { .. }
    );
    // Track webhooks name the publisher by sid and identity only, as LiveKit's do.
    let participant = match &info.participant {
        Some(p) if track_event => Some(proto::ParticipantInfo {
            sid: p.sid.clone(),
            identity: p.identity.clone(),
            ..Default::default()
        }),
        other => other.clone(),
    };
    Some(proto::WebhookEvent {
        event: name.to_string(),
        room: Some(info.room.clone()),
        participant,
        track: info.track.clone(),
        id,
        created_at: at_ms.div_euclid(1000),
        ..Default::default()
    })
}

fn room_of(ev: &SfuEvent) -> &str {
    match ev {
        SfuEvent::RoomCreated { room, .. }
        | SfuEvent::RoomClosed { room, .. }
        | SfuEvent::ParticipantJoined { room, .. }
        | SfuEvent::MediaConnected { room, .. }
        | SfuEvent::ParticipantLeft { room, .. }
        | SfuEvent::TrackPublished { room, .. }
        | SfuEvent::TrackUnpublished { room, .. } => room,
    }
}

/// Queue the LiveKit webhook of `ev`, if it has one.
async fn enqueue(webhooks: &Webhooks, ev: &SfuEvent) {
    let id = crate::ids::new_id("EV_");
    let Some(event) = webhook_event(ev, id.clone()) else {
        return;
    };
    let body = match serde_json::to_string(&event) {
        Ok(b) => b,
        Err(e) => {
            warn!(event = %event.event, error = %e, "cannot encode a LiveKit webhook");
            return;
        }
    };
    debug!(event = %event.event, room = room_of(ev), id = %id, "LiveKit webhook queued");
    webhooks
        .emit_livekit(room_of(ev), &event.event, &id, body)
        .await;
}

/// Spawn the task that turns SFU events into queued LiveKit webhooks (nothing when no LiveKit URL
/// is configured). It subscribes before returning, so no event emitted after this call is missed
/// unless it falls more than `sfu::EVENT_CHANNEL_CAPACITY` events behind; those are lost (LiveKit
/// also drops webhooks when its queue is full) and a warning says how many.
pub fn spawn_consumer(
    webhooks: Webhooks,
    sfu: &SfuHandle,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if !webhooks.livekit_enabled() {
        return None;
    }
    let mut rx = sfu.subscribe_events();
    Some(tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = rx.recv() => ev,
            };
            match ev {
                Ok(ev) => enqueue(&webhooks, &ev).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(
                        missed = n,
                        "LiveKit webhook consumer fell behind the SFU events: {n} events lost, \
                         their webhooks will not be sent"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn sha256_claim_matches_an_independent_digest() {
        // python3 -c "import hashlib,base64;print(base64.b64encode(hashlib.sha256(
        //   b'{\"event\":\"room_started\"}').digest()).decode())"
        assert_eq!(
            body_sha256(br#"{"event":"room_started"}"#),
            "w9NV0uLHjSON8P7eonnkKXDHY4ICORefbHDCviKIgX8="
        );
        // Standard alphabet, padded: the digest of nothing has `+`, `/` and a trailing `=`.
        assert_eq!(
            body_sha256(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    /// The token for `{"event":"room_started"}` at 1700000000 with key `APIkey` / secret `secret`,
    /// computed independently in Python (hmac + base64 over header `{"alg":"HS256","typ":"JWT"}`
    /// and claims `{"iss":"APIkey","sub":"","exp":1700000300,"nbf":1700000000,"sha256":"w9NV…"}`)
    /// and checked with PyJWT: `jwt.decode(T, "secret", algorithms=["HS256"], issuer="APIkey",
    /// options={"verify_exp": False, "verify_nbf": False})` returns those claims.
    const KNOWN_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
        eyJpc3MiOiJBUElrZXkiLCJzdWIiOiIiLCJleHAiOjE3MDAwMDAzMDAsIm5iZiI6MTcwMDAwMDAwMCwic2hhMjU2Ijoi\
        dzlOVjB1TEhqU09OOFA3ZW9ubmtLWERIWTRJQ09SZWZiSERDdmlLSWdYOD0ifQ.\
        BpYdgtpCnmGlxB94ba7OKv5LM_g8S_6Wwoh8juSuUYQ";

    #[test]
    fn token_is_a_bare_hs256_jwt_with_livekit_claims() {
        let s = Signer::new("APIkey", "secret");
        let t = s.token(br#"{"event":"room_started"}"#, 1_700_000_000);
        assert_eq!(t, KNOWN_TOKEN);
        let parts: Vec<&str> = t.split('.').collect();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "APIkey");
        assert_eq!(claims["nbf"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_000 + TOKEN_TTL_SECS);
        assert_eq!(
            claims["sha256"],
            body_sha256(br#"{"event":"room_started"}"#)
        );
        // Another body, another claim (and signature).
        assert_ne!(s.token(br#"{"event":"room_finished"}"#, 1_700_000_000), t);
    }

    #[test]
    fn signer_comes_from_the_configured_keys() {
        let keys: BTreeMap<String, String> = [("APIa", "sa"), ("APIb", "sb")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cfg = WebhooksConfig::default();
        assert_eq!(
            Signer::from_config(&cfg, &keys).unwrap().unwrap().key(),
            "APIa"
        );
        cfg.livekit_api_key = "APIb".into();
        let s = Signer::from_config(&cfg, &keys).unwrap().unwrap();
        assert_eq!((s.key(), s.secret.as_str()), ("APIb", "sb"));
        cfg.livekit_api_key = "APIc".into();
        assert_eq!(
            Signer::from_config(&cfg, &keys).unwrap_err(),
            SignerError::UnknownKey("APIc".into())
        );
        let cfg = WebhooksConfig {
            livekit_urls: vec!["http://x/".into()],
            ..Default::default()
        };
        assert_eq!(
            Signer::from_config(&cfg, &BTreeMap::new()).unwrap_err(),
            SignerError::NoKey
        );
        assert!(
            Signer::from_config(&WebhooksConfig::default(), &BTreeMap::new())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn events_become_livekit_webhooks_in_proto3_json() {
        let info = EventInfo {
            room: proto::Room {
                sid: "RM_1".into(),
                name: "r".into(),
                creation_time: 1_700_000_000,
                ..Default::default()
            },
            participant: Some(proto::ParticipantInfo {
                sid: "PA_1".into(),
                identity: "alice".into(),
                ..Default::default()
            }),
            track: Some(proto::TrackInfo {
                sid: "TR_1".into(),
                r#type: proto::TrackType::Video as i32,
                source: proto::TrackSource::Camera as i32,
                ..Default::default()
            }),
        };
        let ev = SfuEvent::TrackPublished {
            room: "r".into(),
            identity: "alice".into(),
            at_ms: 1_700_000_001_999,
            info: Box::new(info),
        };
        let w = webhook_event(&ev, "EV_x".into()).unwrap();
        let json: serde_json::Value = serde_json::to_value(&w).unwrap();
        assert_eq!(json["event"], "track_published");
        assert_eq!(json["id"], "EV_x");
        // proto3 JSON: int64 as a string, enums by name, camelCase names, default values left
        // out (as LiveKit's protojson does: a participant's STANDARD kind is absent).
        assert_eq!(json["createdAt"], "1700000001");
        assert_eq!(json["room"]["sid"], "RM_1");
        assert_eq!(json["room"]["creationTime"], "1700000000");
        assert_eq!(json["participant"]["identity"], "alice");
        assert_eq!(json["track"]["type"], "VIDEO");
        assert_eq!(json["track"]["source"], "CAMERA");
        assert!(json["participant"].get("kind").is_none(), "{json}");
        let media = SfuEvent::MediaConnected {
            room: "r".into(),
            identity: "alice".into(),
            at_ms: 0,
        };
        assert!(webhook_event(&media, "EV_y".into()).is_none());
    }
}
