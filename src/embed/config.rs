//! `[embed]`: the embed front door (public keys, embed tokens) and voice-assistant accounts.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// Embed tokens one public key may mint per minute (`429 RATE_LIMIT_EXCEEDED` beyond).
    pub rate_limit_per_minute: u32,
    /// Lifetime of the join token an embed token response carries: the caller must connect within it.
    pub token_ttl_secs: u64,
    pub max_assistants_per_account: usize,
    pub max_public_keys_per_account: usize,
    pub max_origins_per_key: usize,
    /// Currency of accounts created on first use.
    pub currency: String,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            rate_limit_per_minute: 60,
            token_ttl_secs: 600,
            max_assistants_per_account: 100,
            max_public_keys_per_account: 20,
            max_origins_per_key: 50,
            currency: "USD".into(),
        }
    }
}
