//! Access tokens: HS256 JWTs whose claims are compatible with LiveKit access tokens
//! (`iss` = API key, `sub` = identity, `video` grant, `name`, `metadata`, `exp`, `nbf`).
//!
//!
//! Every token is bound to one [`TokenPurpose`]: `aud` names it (absent = [`TokenPurpose::Access`], so
//! LiveKit SDK tokens, which carry no custom claims, are access tokens) and every purpose but Access is
//! signed with a key derived for that purpose from the API secret. A verifier asks for one purpose and
//! refuses every other, so a download link can never be used as a login and vice versa.
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
    #[error("token audience is not a Parlor token purpose")]
    UnknownPurpose,
    #[error("token is for {found}, not {expected}")]
    WrongPurpose {
        found: &'static str,
        expected: &'static str,
    },
}

/// What a token may be used for. Each endpoint verifies exactly one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenPurpose {
    /// Joining rooms (`/rtc`) and the REST/WebSocket APIs: LiveKit-compatible, no `aud` claim.
    Access,
    /// One recording file (`res` = `recording:<id>`), for the signed download URL.
    Download,
    /// A model (voice-assistant) session's auth (reserved: no endpoint yet).
    ModelSession,
    /// An embedded widget (reserved: no endpoint yet).
    Embed,
}

impl TokenPurpose {
    pub const ALL: [TokenPurpose; 4] = [
        TokenPurpose::Access,
        TokenPurpose::Download,
        TokenPurpose::ModelSession,
        TokenPurpose::Embed,
    ];

    /// The `aud` claim tokens of this purpose carry (Access tokens carry none).
    pub const fn audience(self) -> Option<&'static str> {
        match self {
            TokenPurpose::Access => None,
            TokenPurpose::Download => Some("parlor:download"),
            TokenPurpose::ModelSession => Some("parlor:model-session"),
            TokenPurpose::Embed => Some("parlor:embed"),
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            TokenPurpose::Access => "access",
            TokenPurpose::Download => "download",
            TokenPurpose::ModelSession => "model-session",
            TokenPurpose::Embed => "embed",
        }
    }

    fn from_audience(aud: Option<&str>) -> Result<Self, TokenError> {
        Self::ALL
            .into_iter()
            .find(|p| p.audience() == aud)
            .ok_or(TokenError::UnknownPurpose)
    }

    /// The HMAC key for this purpose: the API secret itself for Access (LiveKit compatibility),
    /// HMAC-SHA256(secret, "parlor-token-purpose/v1/<name>") for the others.
    fn signing_key(self, secret: &str) -> Vec<u8> {
        match self {
            TokenPurpose::Access => secret.as_bytes().to_vec(),
            other => sign(
                secret.as_bytes(),
                format!("parlor-token-purpose/v1/{}", other.name()).as_bytes(),
            ),
        }
    }
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
    /// May change its own name, metadata and attributes (LiveKit: absent means not allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_update_own_metadata: Option<bool>,
    /// A LiveKit Agents participant (its join) or worker (`/agent`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub agent: bool,
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
    /// The token's purpose (see [`TokenPurpose::audience`]); absent on access tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The one resource a purpose-bound token opens (e.g. `recording:<id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub res: Option<String>,
    /// LiveKit webhooks: base64 (standard, padded) of the SHA-256 of the request body the token
    /// signs, so a receiver can check the body is the one that was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// LiveKit participant kind, lower case (`"agent"`, `"standard"`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// LiveKit participant attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<std::collections::BTreeMap<String, String>>,
    /// LiveKit `roomConfig` (a `RoomConfiguration` in proto3 JSON, e.g. `{"agents": [...]}`),
    /// applied when this participant's join opens the room.
    #[serde(rename = "roomConfig", skip_serializing_if = "Option::is_none")]
    pub room_config: Option<serde_json::Value>,
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
    /// Sign `claims` with `secret` (HS256) as they are: an access token unless `aud` says otherwise
    /// (which then does not verify: use [`AccessToken::encode_for`] for other purposes).
    pub fn encode(claims: &Claims, secret: &str) -> String {
        encode_with_key(claims, secret.as_bytes())
    }

    /// Sign `claims` for `purpose`: sets `aud` and signs with the purpose's derived key.
    pub fn encode_for(purpose: TokenPurpose, claims: &Claims, secret: &str) -> String {
        let mut claims = claims.clone();
        claims.aud = purpose.audience().map(str::to_string);
        encode_with_key(&claims, &purpose.signing_key(secret))
    }

    /// Mint a token for `purpose` that opens only `resource`, valid from `now` for `ttl_secs`.
    pub fn for_resource(
        purpose: TokenPurpose,
        api_key: &str,
        secret: &str,
        identity: &str,
        resource: &str,
        now_unix: u64,
        ttl_secs: u64,
    ) -> String {
        let claims = Claims {
            iss: api_key.to_string(),
            sub: identity.to_string(),
            nbf: now_unix.saturating_sub(1),
            exp: now_unix + ttl_secs,
            res: Some(resource.to_string()),
            ..Default::default()
        };
        Self::encode_for(purpose, &claims, secret)
    }
}

fn encode_with_key(claims: &Claims, key: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    // Serialising a plain struct of strings/ints cannot fail.
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = sign(key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

impl AccessToken {
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

    /// Verify an access token (signature, time validity, no other purpose); `secret_for` maps an
    /// API key to its secret.
    pub fn decode<'a>(
        token: &str,
        secret_for: impl Fn(&str) -> Option<&'a str>,
        now_unix: u64,
    ) -> Result<Claims, TokenError> {
        Self::decode_for(TokenPurpose::Access, token, secret_for, now_unix)
    }

    /// Verify a token of `purpose`: one of another purpose is refused before its signature is checked
    /// (and would fail it: each purpose has its own key).
    pub fn decode_for<'a>(
        purpose: TokenPurpose,
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
        let found = TokenPurpose::from_audience(claims.aud.as_deref())?;
        if found != purpose {
            return Err(TokenError::WrongPurpose {
                found: found.name(),
                expected: purpose.name(),
            });
        }
        let secret = secret_for(&claims.iss).ok_or(TokenError::UnknownKey)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        let signing_input_len = header_b64.len() + 1 + payload_b64.len();
        let expected = sign(
            &purpose.signing_key(secret),
            &token.as_bytes()[..signing_input_len],
        );
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

    /// Every purpose verifies only as itself; a token without `aud` (LiveKit's) is an access token.
    #[test]
    fn purposes_are_not_interchangeable() {
        const S: &str = "secret-secret-secret-secret-1234";
        for minted in TokenPurpose::ALL {
            let t =
                AccessToken::for_resource(minted, "APIdev", S, "alice", "recording:r1", NOW, 60);
            for wanted in TokenPurpose::ALL {
                let got = AccessToken::decode_for(wanted, &t, secret_for, NOW);
                if minted == wanted {
                    let c = got.unwrap();
                    assert_eq!(c.res.as_deref(), Some("recording:r1"));
                    assert_eq!(c.aud.as_deref(), minted.audience());
                } else {
                    assert_eq!(
                        got,
                        Err(TokenError::WrongPurpose {
                            found: minted.name(),
                            expected: wanted.name()
                        }),
                        "{minted:?} token accepted as {wanted:?}"
                    );
                }
            }
        }
        let join = AccessToken::for_join("APIdev", S, "a", VideoGrant::join("r"), NOW, 60);
        assert!(!join.is_empty());
        let c = AccessToken::decode(&join, secret_for, NOW).unwrap();
        assert_eq!(c.aud, None);
        // A download audience signed with the plain API secret (not the derived key) is refused:
        // an `aud` claim alone does not make a token.
        let claims = Claims {
            iss: "APIdev".into(),
            sub: "a".into(),
            exp: NOW + 60,
            aud: Some("parlor:download".into()),
            ..Default::default()
        };
        assert_eq!(
            AccessToken::decode_for(
                TokenPurpose::Download,
                &AccessToken::encode(&claims, S),
                secret_for,
                NOW
            ),
            Err(TokenError::BadSignature)
        );
        // An audience that is no Parlor purpose is refused everywhere.
        let other = AccessToken::encode(
            &Claims {
                aud: Some("something-else".into()),
                ..claims
            },
            S,
        );
        for p in TokenPurpose::ALL {
            assert_eq!(
                AccessToken::decode_for(p, &other, secret_for, NOW),
                Err(TokenError::UnknownPurpose)
            );
        }
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
