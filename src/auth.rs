//! API keys and Bearer authentication with API-key-signed access tokens.

use crate::clock::SharedClock;
use crate::error::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use parlor_signaling::{AccessToken, Claims, TokenError, TokenPurpose};
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// API key → secret.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, String>,
}

impl KeyRing {
    pub fn new(keys: BTreeMap<String, String>) -> Self {
        KeyRing { keys }
    }
    pub fn secret(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }
    /// The key/secret pair used to mint tokens (the first key).
    pub fn primary(&self) -> Option<(&str, &str)> {
        self.keys
            .iter()
            .next()
            .map(|(k, s)| (k.as_str(), s.as_str()))
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verify an access (join/API) token: what `/rtc`, the Bearer extractor and the presence socket
    /// accept. Tokens minted for any other purpose (download, model session, embed) are refused.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        self.verify_for(TokenPurpose::Access, token, now_unix)
    }

    /// Verify a room join token for `/rtc`: an access token, or an embed token (the join token of
    /// `POST /api/v1/embed/token`, which nothing but `/rtc` accepts).
    pub fn verify_join(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        match self.verify(token, now_unix) {
            Err(TokenError::WrongPurpose { found, .. }) if found == TokenPurpose::Embed.name() => {
                self.verify_for(TokenPurpose::Embed, token, now_unix)
            }
            other => other,
        }
    }

    /// Verify a token minted for `purpose` (and only that purpose).
    pub fn verify_for(
        &self,
        purpose: TokenPurpose,
        token: &str,
        now_unix: u64,
    ) -> Result<Claims, TokenError> {
        AccessToken::decode_for(purpose, token, |k| self.secret(k), now_unix)
    }
}

pub fn generate_key_pair() -> (String, String) {
    let mut rng = rand::thread_rng();
    let key: String = (&mut rng)
        .sample_iter(Alphanumeric)
        .take(12)
        .map(char::from)
        .collect();
    let secret: String = rng
        .sample_iter(Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    (format!("API{key}"), secret)
}

/// Where the API keys of a server came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `[keys]` of the configuration (file or `PARLOR_KEYS`).
    Config,
    /// The dev keys file in the data dir.
    DevFile(PathBuf),
}

/// The API keys a server on a given configuration uses, and where they came from.
#[derive(Debug, Clone)]
pub struct FoundKeys {
    pub keys: BTreeMap<String, String>,
    pub source: KeySource,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read dev keys file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("dev keys file {} is not a `key = \"secret\"` TOML table with at least one key{detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("cannot create dev keys file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Path of the dev keys file in `data_dir`.
pub fn dev_keys_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-keys.toml")
}

/// Find the API keys `serve` uses: the configured `[keys]`, else the dev keys file in the data
/// dir. Never writes anything; `Ok(None)` when neither exists. `serve` and `parlor token` both call
/// this, so a token is signed with a key the server accepts.
pub fn find_keys(
    configured: &BTreeMap<String, String>,
    data_dir: &Path,
) -> Result<Option<FoundKeys>, KeysError> {
    if !configured.is_empty() {
        return Ok(Some(FoundKeys {
            keys: configured.clone(),
            source: KeySource::Config,
        }));
    }
    let path = dev_keys_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeysError::Read { path, source }),
    };
    match toml::from_str::<BTreeMap<String, String>>(&text) {
        Ok(keys) if !keys.is_empty() => Ok(Some(FoundKeys {
            keys,
            source: KeySource::DevFile(path),
        })),
        Ok(_) => Err(KeysError::Invalid {
            path,
            detail: String::new(),
        }),
        Err(e) => Err(KeysError::Invalid {
            path,
            detail: format!(": {}", e.message()),
        }),
    }
}

/// Generate a dev key pair and store it in `<data_dir>/dev-keys.toml` (mode 0600), creating the
/// data dir. Only `serve` calls this, when [`find_keys`] found nothing.
pub fn create_dev_keys(data_dir: &Path) -> Result<FoundKeys, KeysError> {
    let path = dev_keys_path(data_dir);
    let write_err = |source| KeysError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(write_err)?;
    let (k, s) = generate_key_pair();
    let mut keys = BTreeMap::new();
    keys.insert(k, s);
    let text = toml::to_string(&keys)
        .map_err(std::io::Error::other)
        .map_err(write_err)?;
    std::fs::write(
        &path,
        format!("# Generated dev API key (parlor keys generates more)\n{text}"),
    )
    .map_err(write_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(FoundKeys {
        keys,
        source: KeySource::DevFile(path),
    })
}

/// LiveKit `VideoGrant` permission names `parlor token --grant` accepts.
pub const GRANT_NAMES: [&str; 9] = [
    "roomJoin",
    "roomCreate",
    "roomAdmin",
    "roomList",
    "roomRecord",
    "canPublish",
    "canSubscribe",
    "canPublishData",
    "hidden",
];

/// Turn on the grant named `name` (a LiveKit `VideoGrant` field name, see [`GRANT_NAMES`]).
pub fn add_grant(grant: &mut parlor_signaling::VideoGrant, name: &str) -> Result<(), String> {
    match name {
        "roomJoin" => grant.room_join = true,
        "roomCreate" => grant.room_create = true,
        "roomAdmin" => grant.room_admin = true,
        "roomList" => grant.room_list = true,
        "roomRecord" => grant.room_record = true,
        "canPublish" => grant.can_publish = Some(true),
        "canSubscribe" => grant.can_subscribe = Some(true),
        "canPublishData" => grant.can_publish_data = Some(true),
        "hidden" => grant.hidden = true,
        other => {
            let hint = crate::config::closest(other, GRANT_NAMES)
                .map(|g| format!(" (did you mean {g}?)"))
                .unwrap_or_default();
            return Err(format!(
                "unknown grant `{other}`{hint}; grants: {}",
                GRANT_NAMES.join(", ")
            ));
        }
    }
    Ok(())
}

/// The names of the grants `grant` turns on, in [`GRANT_NAMES`] order.
pub fn grant_names(g: &parlor_signaling::VideoGrant) -> Vec<&'static str> {
    let on = [
        g.room_join,
        g.room_create,
        g.room_admin,
        g.room_list,
        g.room_record,
        g.can_publish == Some(true),
        g.can_subscribe == Some(true),
        g.can_publish_data == Some(true),
        g.hidden,
    ];
    GRANT_NAMES
        .iter()
        .zip(on)
        .filter_map(|(n, on)| on.then_some(*n))
        .collect()
}

/// An authenticated caller: the verified claims of its Bearer token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub claims: Claims,
}

impl AuthUser {
    pub fn id(&self) -> &str {
        &self.claims.sub
    }
}

pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_header(&parts.headers)
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_header(headers: &axum::http::HeaderMap) -> Option<&str> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn token_error(e: TokenError) -> ApiError {
    ApiError::unauthorized(match e {
        TokenError::Expired => "token has expired".to_string(),
        other => format!("invalid token: {other}"),
    })
}

/// What the [`AuthUser`] extractor needs from the router's state: the API keys and the clock
/// (token expiry). A router state provides it with `impl FromRef<State> for TokenVerifier`.
#[derive(Clone)]
pub struct TokenVerifier {
    pub keys: std::sync::Arc<KeyRing>,
    pub clock: SharedClock,
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    TokenVerifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| ApiError::unauthorized("missing Bearer token"))?;
        let v = TokenVerifier::from_ref(state);
        let claims = v
            .keys
            .verify(token, v.clock.unix_secs())
            .map_err(token_error)?;
        if claims.sub.is_empty() {
            return Err(ApiError::unauthorized("token has no identity (sub)"));
        }
        Ok(AuthUser { claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_keys_never_writes_and_prefers_configured_keys() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert!(find_keys(&BTreeMap::new(), &data).unwrap().is_none());
        assert!(!data.exists(), "find_keys created the data dir");
        let created = create_dev_keys(&data).unwrap();
        let found = find_keys(&BTreeMap::new(), &data).unwrap().unwrap();
        assert_eq!(found.keys, created.keys);
        assert_eq!(found.source, KeySource::DevFile(data.join("dev-keys.toml")));
        let mut configured = BTreeMap::new();
        configured.insert("APIc".to_string(), "s".to_string());
        let found = find_keys(&configured, &data).unwrap().unwrap();
        assert_eq!((found.keys, found.source), (configured, KeySource::Config));
        // A damaged dev keys file is an error, not silently replaced.
        std::fs::write(data.join("dev-keys.toml"), "not toml [").unwrap();
        assert!(matches!(
            find_keys(&BTreeMap::new(), &data),
            Err(KeysError::Invalid { .. })
        ));
    }

    #[test]
    fn grants_by_livekit_name() {
        let mut g = parlor_signaling::VideoGrant::default();
        for n in GRANT_NAMES {
            add_grant(&mut g, n).unwrap();
        }
        assert_eq!(grant_names(&g), GRANT_NAMES.to_vec());
        let e = add_grant(&mut g, "roomAdmn").unwrap_err();
        assert!(
            e.contains("did you mean roomAdmin?") && e.contains("roomList"),
            "{e}"
        );
    }
}
