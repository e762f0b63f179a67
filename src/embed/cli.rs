//! `parlor assistant create`: an assistant (and optionally a public key for its web pages) written
//! straight into the server's store, for the account of the API key the server uses — the same
//! keys `parlor token` finds. Works whether or not the server is running (SQLite in WAL mode and
//! PostgreSQL both take a second writer).

use super::manage::{apply, check_origins, new_assistant, AssistantBody};
use super::new_public_key;
use crate::config::Config;
use crate::store::{AssistantRecord, PublicKeyRecord, Store};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// What to create.
pub struct NewAssistant {
    pub name: String,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub greeting: Option<String>,
    pub voice: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<i64>,
    pub price_per_minute: Option<f64>,
    pub record: bool,
    /// Allowed origins of a new public key (none: no key is created).
    pub origins: Vec<String>,
    /// A `pk_test_` key instead of `pk_live_`.
    pub test_key: bool,
}

/// Create the assistant (and key) for account `account` (an API key id) in `config`'s store.
pub async fn create(
    config: &Config,
    account: &str,
    now_ms: i64,
    n: NewAssistant,
) -> Result<(AssistantRecord, Option<PublicKeyRecord>), CliError> {
    let mut a = new_assistant(account, now_ms);
    let body = AssistantBody {
        name: Some(n.name),
        model: n.model,
        voice: n.voice.map(Some),
        system_prompt: n.system_prompt,
        greeting: n.greeting.map(Some),
        temperature: n.temperature,
        max_tokens: n.max_tokens,
        price_per_minute: n.price_per_minute,
        record: Some(n.record),
    };
    apply(&config.realtime.models, &mut a, body).map_err(|e| CliError::Invalid(e.message))?;
    if a.name.trim().is_empty() {
        return Err(CliError::Invalid("--name must not be empty".into()));
    }
    let origins = check_origins(config.embed.max_origins_per_key, &n.origins)
        .map_err(|e| CliError::Invalid(e.message))?;
    let store = Store::connect(&config.database_url(), 2).await?;
    store
        .ensure_account(account, &config.embed.currency, now_ms)
        .await?;
    store.insert_assistant(&a).await?;
    let key = if origins.is_empty() {
        None
    } else {
        let k = PublicKeyRecord {
            key: new_public_key(!n.test_key),
            account_id: account.to_string(),
            name: format!("{} key", a.name),
            allowed_origins: origins,
            created_at: now_ms,
            revoked_at: None,
        };
        store.insert_public_key(&k).await?;
        Some(k)
    };
    store.close().await;
    Ok((a, key))
}
