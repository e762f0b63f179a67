//! Access tokens: HS256 JWTs whose claims are compatible with LiveKit access tokens
//! (`iss` = API key, `sub` = identity, `video` grant, `name`, `metadata`, `exp`, `nbf`).
//!
//! Written on `hmac` + `sha2` rather than a JWT crate: we accept exactly one algorithm (HS256), so the
//! whole surface is ~100 lines that are easy to audit, and `alg` confusion attacks are impossible.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Largest token we try to decode; anything longer is rejected before base64/JSON work.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token algorithm is not HS256")]
    UnsupportedAlgorithm,
    #[error("token issuer (API key) is unknown")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token is too large")]
    TooLarge,
}

/// The LiveKit `video` grant. Field names follow LiveKit's JSON (camelCase).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct VideoGrant {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub room_join: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub room_create: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub room_admin: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub room_list: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub room_record: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_subscribe: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish_data: Option<bool>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

impl VideoGrant {
    /// A grant to join `room` with publish, subscribe and data permissions.
    pub fn join(room: impl Into<String>) -> Self {
        VideoGrant {
            room: Some(room.into()),
            room_join: true,
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            ..Default::default()
        }
    }
    /// LiveKit semantics: an absent permission means allowed.
    pub fn can_publish(&self) -> bool {
        self.can_publish.unwrap_or(true)
    }
    pub fn can_subscribe(&self) -> bool {
        self.can_subscribe.unwrap_or(true)
    }
    pub fn can_publish_data(&self) -> bool {
        self.can_publish_data.unwrap_or(true)
    }
}

/// JWT claims (LiveKit-compatible).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Claims {
    /// API key that signed the token.
    pub iss: String,
    /// Participant identity / user id.
    pub sub: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Not before, unix seconds.
    pub nbf: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoGrant>,
}

impl Claims {
    pub fn identity(&self) -> &str {
        &self.sub
    }
    pub fn video(&self) -> VideoGrant {
        self.video.clone().unwrap_or_default()
    }
}

/// Builder/codec for access tokens.
pub struct AccessToken;

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// Allowed clock skew when checking `nbf`/`exp`.
pub const LEEWAY_SECS: u64 = 10;

impl AccessToken {
    /// Sign `claims` with `secret` (HS256).
    pub fn encode(claims: &Claims, secret: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        // Serialising a plain struct of strings/ints cannot fail.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let sig = sign(secret.as_bytes(), signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Mint a join token valid from `now` for `ttl_secs`.
    pub fn for_join(
        api_key: &str,
        secret: &str,
        identity: &str,
        grant: VideoGrant,
        now_unix: u64,
        ttl_secs: u64,
    ) -> String {
        let claims = Claims {
            iss: api_key.to_string(),
            sub: identity.to_string(),
            nbf: now_unix.saturating_sub(1),
            exp: now_unix + ttl_secs,
            video: Some(grant),
            ..Default::default()
        };
        Self::encode(&claims, secret)
    }

    /// Read the unverified issuer so the caller can look up the secret.
    pub fn peek_issuer(token: &str) -> Result<String, TokenError> {
        let (_, payload, _) = split(token)?;
        let claims: Claims = decode_json(payload)?;
        Ok(claims.iss)
    }

    /// Verify signature and time validity; `secret_for` maps an API key to its secret.
    pub fn decode<'a>(
        token: &str,
        secret_for: impl Fn(&str) -> Option<&'a str>,
        now_unix: u64,
    ) -> Result<Claims, TokenError> {
        let (header_b64, payload_b64, sig_b64) = split(token)?;
        let header: Header = decode_json(header_b64)?;
        if header.alg != "HS256" {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let claims: Claims = decode_json(payload_b64)?;
        let secret = secret_for(&claims.iss).ok_or(TokenError::UnknownKey)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let signing_input_len = header_b64.len() + 1 + payload_b64.len();
        let expected = sign(secret.as_bytes(), &token.as_bytes()[..signing_input_len]);
        if !bool::from(expected.as_slice().ct_eq(&sig)) {
            return Err(TokenError::BadSignature);
        }
        if claims.exp == 0 || claims.exp.saturating_add(LEEWAY_SECS) < now_unix {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now_unix.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

fn split(token: &str) -> Result<(&str, &str, &str), TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok((h, p, s)),
        _ => Err(TokenError::Malformed("expected three dot-separated parts")),
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed("part is not valid JSON"))
}

fn sign(secret: &[u8], input: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn secret_for(k: &str) -> Option<&'static str> {
        (k == "APIdev").then_some("secret-secret-secret-secret-1234")
    }

    #[test]
    fn roundtrip() {
        let t = AccessToken::for_join(
            "APIdev",
            "secret-secret-secret-secret-1234",
            "alice",
            VideoGrant::join("r1"),
            NOW,
            600,
        );
        let c = AccessToken::decode(&t, secret_for, NOW + 5).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.video().room.as_deref(), Some("r1"));
        assert!(c.video().room_join);
    }

    #[test]
    fn rejects_expired_wrong_key_tampered() {
        let t = AccessToken::for_join(
            "APIdev",
            "secret-secret-secret-secret-1234",
            "a",
            VideoGrant::join("r"),
            NOW,
            60,
        );
        assert_eq!(
            AccessToken::decode(&t, secret_for, NOW + 60 + LEEWAY_SECS + 1),
            Err(TokenError::Expired)
        );
        let other = AccessToken::for_join(
            "APIdev",
            "another-secret",
            "a",
            VideoGrant::join("r"),
            NOW,
            60,
        );
        assert_eq!(
            AccessToken::decode(&other, secret_for, NOW),
            Err(TokenError::BadSignature)
        );
        let unknown = AccessToken::for_join("APIx", "s", "a", VideoGrant::join("r"), NOW, 60);
        assert_eq!(
            AccessToken::decode(&unknown, secret_for, NOW),
            Err(TokenError::UnknownKey)
        );
        // Swap the payload for one granting another room, keep the signature.
        let forged_payload =
            AccessToken::for_join("APIdev", "x", "a", VideoGrant::join("other"), NOW, 60);
        let parts: Vec<&str> = t.split('.').collect();
        let fparts: Vec<&str> = forged_payload.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], fparts[1], parts[2]);
        assert_eq!(
            AccessToken::decode(&forged, secret_for, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn rejects_alg_none_and_garbage() {
        let hdr = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let body = URL_SAFE_NO_PAD.encode(br#"{"iss":"APIdev","sub":"a","exp":9999999999}"#);
        assert_eq!(
            AccessToken::decode(&format!("{hdr}.{body}."), secret_for, NOW),
            Err(TokenError::UnsupportedAlgorithm)
        );
        for bad in ["", ".", "a.b", "a.b.c.d", "!!!.###.$$$", "eyJ.eyJ.x"] {
            assert!(AccessToken::decode(bad, secret_for, NOW).is_err(), "{bad}");
        }
        assert_eq!(
            AccessToken::decode(&"a".repeat(MAX_TOKEN_LEN + 1), secret_for, NOW),
            Err(TokenError::TooLarge)
        );
    }

    /// Interop vector: a token produced by LiveKit's Go `auth.AccessToken` shape decodes with our claims.
    #[test]
    fn livekit_claim_names() {
        let json = r#"{"iss":"k","sub":"id","exp":2,"nbf":1,"name":"N","video":{"room":"r","roomJoin":true,"canPublish":false,"canSubscribe":true,"canPublishData":true}}"#;
        let c: Claims = serde_json::from_str(json).unwrap();
        assert!(!c.video().can_publish());
        assert!(c.video().can_subscribe());
        assert_eq!(c.name.as_deref(), Some("N"));
    }

    /// Found with the `signed_token` fuzz body: a validly signed token whose `exp` is near `u64::MAX`
    /// overflowed `exp + LEEWAY_SECS` (a panic with overflow checks, "expired" without).
    /// Input: fuzz/corpus/signed_token/regress-exp-overflow.
    #[test]
    fn far_future_expiry_does_not_overflow() {
        for exp in [u64::MAX, u64::MAX - LEEWAY_SECS + 1] {
            let claims = Claims {
                iss: "APIdev".into(),
                sub: "a".into(),
                exp,
                ..Default::default()
            };
            let t = AccessToken::encode(&claims, "secret-secret-secret-secret-1234");
            assert_eq!(AccessToken::decode(&t, secret_for, NOW), Ok(claims));
        }
    }
}
