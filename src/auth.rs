//! API keys and Bearer authentication with API-key-signed access tokens.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use parlor_signaling::{AccessToken, Claims, TokenError, TokenPurpose};
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::collections::BTreeMap;
use std::path::Path;

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

/// Load the dev key pair from `<data_dir>/dev-keys.toml`, generating it on first start.
pub fn load_or_create_dev_keys(data_dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let path = data_dir.join("dev-keys.toml");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(keys) = toml::from_str::<BTreeMap<String, String>>(&text) {
            if !keys.is_empty() {
                return Ok(keys);
            }
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let (k, s) = generate_key_pair();
    let mut keys = BTreeMap::new();
    keys.insert(k, s);
    let text = toml::to_string(&keys).map_err(std::io::Error::other)?;
    std::fs::write(
        &path,
        format!("# Generated dev API key (parlor keys generates more)\n{text}"),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(keys)
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
    let h = parts
        .headers
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

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| ApiError::unauthorized("missing Bearer token"))?;
        let claims = state
            .keys
            .verify(token, state.clock.unix_secs())
            .map_err(token_error)?;
        if claims.sub.is_empty() {
            return Err(ApiError::unauthorized("token has no identity (sub)"));
        }
        Ok(AuthUser { claims })
    }
}
