//! TURN REST API credentials ("time-limited long-term credentials").
//!
//! The scheme is the one of draft-uberti-behave-turn-rest-00 as implemented by coturn's
//! `use-auth-secret` / `static-auth-secret`:
//!
//! * username   = `"<unix expiry>:<user id>"`
//! * credential = `base64(HMAC-SHA1(shared secret, username))` (standard alphabet, padded)
//!
//! The TURN long-term key derived from it is `MD5(username ":" realm ":" credential)` (RFC 5389
//! §15.4). Several secrets may be configured for rotation: new credentials are minted with the
//! first, any of them is accepted.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

type HmacSha1 = Hmac<Sha1>;

/// Default credential lifetime (one day), as in the REST API of issue #4.
pub const DEFAULT_TTL_SECS: u64 = 86_400;

/// Longest USERNAME a STUN message may carry (RFC 5389 §15.3: < 513 bytes).
pub const MAX_USERNAME_LEN: usize = 512;

/// A minted TURN REST credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// `"<expiry>:<user id>"`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub credential: String,
    /// Lifetime in seconds the credential was minted with.
    pub ttl: u64,
    /// Unix time (seconds) after which the credential is refused.
    pub expires_at: u64,
}

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// No secret configured, or an empty secret.
    #[error("at least one non-empty shared secret is required")]
    NoSecret,
    /// The username is not `"<unix expiry>:<user id>"` (or too long).
    #[error("malformed TURN REST username")]
    MalformedUsername,
    /// The expiry encoded in the username is in the past.
    #[error("credential expired at {expired_at} (now {now})")]
    Expired {
        /// Expiry from the username.
        expired_at: u64,
        /// The clock reading it was compared with.
        now: u64,
    },
    /// The password matches none of the configured secrets.
    #[error("credential does not match any configured secret")]
    BadCredential,
}

/// The identity carried by a valid username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedUser {
    /// The user id part of the username (everything after the first `:`).
    pub user_id: String,
    /// Expiry (unix seconds) encoded in the username.
    pub expires_at: u64,
}

/// `base64(HMAC-SHA1(secret, username))`.
pub fn credential_for(secret: &[u8], username: &str) -> String {
    BASE64.encode(hmac_sha1(secret, username.as_bytes()))
}

fn hmac_sha1(secret: &[u8], msg: &[u8]) -> [u8; 20] {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha1::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any size"),
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Mint a credential for `user_id` valid for `ttl_secs` from `now_unix`.
///
/// `user_id` is used verbatim (it may itself contain `:`; parsing splits at the first one).
pub fn mint(secret: &[u8], user_id: &str, ttl_secs: u64, now_unix: u64) -> Credentials {
    let expires_at = now_unix.saturating_add(ttl_secs);
    let username = format!("{expires_at}:{user_id}");
    let credential = credential_for(secret, &username);
    Credentials {
        username,
        credential,
        ttl: ttl_secs,
        expires_at,
    }
}

/// Split `"<expiry>:<user>"`.
pub fn parse_username(username: &str) -> Result<ValidatedUser, CredentialError> {
    if username.len() > MAX_USERNAME_LEN {
        return Err(CredentialError::MalformedUsername);
    }
    let (expiry, user) = username
        .split_once(':')
        .ok_or(CredentialError::MalformedUsername)?;
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CredentialError::MalformedUsername);
    }
    let expires_at = expiry
        .parse::<u64>()
        .map_err(|_| CredentialError::MalformedUsername)?;
    Ok(ValidatedUser {
        user_id: user.to_owned(),
        expires_at,
    })
}

/// The RFC 5389 long-term key `MD5(username:realm:password)`.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Holds the shared secrets; mints with the first, accepts any (rotation).
#[derive(Clone)]
pub struct CredentialValidator {
    secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for CredentialValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialValidator")
            .field(
                "secrets",
                &format_args!("[REDACTED; {}]", self.secrets.len()),
            )
            .finish()
    }
}

impl CredentialValidator {
    /// `secrets[0]` mints; every entry is accepted. Errors if empty or any secret is empty.
    pub fn new<I, S>(secrets: I) -> Result<Self, CredentialError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let secrets: Vec<Vec<u8>> = secrets.into_iter().map(|s| s.as_ref().to_vec()).collect();
        if secrets.is_empty() || secrets.iter().any(|s| s.is_empty()) {
            return Err(CredentialError::NoSecret);
        }
        Ok(Self { secrets })
    }

    /// Number of configured secrets.
    pub fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    /// Mint with the primary (first) secret.
    pub fn mint(&self, user_id: &str, ttl_secs: u64, now_unix: u64) -> Credentials {
        mint(&self.secrets[0], user_id, ttl_secs, now_unix)
    }

    /// Check a username/credential pair as a REST client would present it: well-formed, not
    /// expired at `now_unix`, and equal (constant-time) to the HMAC under one of the secrets.
    pub fn validate(
        &self,
        username: &str,
        credential: &str,
        now_unix: u64,
    ) -> Result<ValidatedUser, CredentialError> {
        let user = self.check_expiry(username, now_unix)?;
        let presented = credential.as_bytes();
        let mut ok = subtle::Choice::from(0u8);
        // Every secret is tried (no early exit) so timing does not reveal which one matched.
        for secret in &self.secrets {
            let expected = credential_for(secret, username);
            ok |= expected.as_bytes().ct_eq(presented);
        }
        if bool::from(ok) {
            Ok(user)
        } else {
            Err(CredentialError::BadCredential)
        }
    }

    /// Parse `username` and refuse it if expired at `now_unix` (expiry == now is still valid,
    /// like coturn).
    pub fn check_expiry(
        &self,
        username: &str,
        now_unix: u64,
    ) -> Result<ValidatedUser, CredentialError> {
        let user = parse_username(username)?;
        if user.expires_at < now_unix {
            return Err(CredentialError::Expired {
                expired_at: user.expires_at,
                now: now_unix,
            });
        }
        Ok(user)
    }

    /// The candidate long-term keys for `username` in `realm` (one per secret), after the
    /// expiry check. The TURN server verifies MESSAGE-INTEGRITY against each of them.
    pub fn long_term_keys(
        &self,
        username: &str,
        realm: &str,
        now_unix: u64,
    ) -> Result<(ValidatedUser, Vec<[u8; 16]>), CredentialError> {
        let user = self.check_expiry(username, now_unix)?;
        let keys = self
            .secrets
            .iter()
            .map(|s| long_term_key(username, realm, &credential_for(s, username)))
            .collect();
        Ok((user, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently of this code, with:
    //   printf '%s' "1700000000:alice" | openssl dgst -sha1 -hmac "north-wind-secret" -binary | base64
    //   python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(b"rotated-2",
    //       b"1700086400:bob@example", hashlib.sha1).digest()).decode())'
    //   (same for b"s" / "4102444800:user:with:colons")
    //   python3 -c 'import hashlib; print(hashlib.md5(b"1700000000:alice:parlor:r/l6ttQtMIfbS2lfULS0mDRRNUg=").hexdigest())'
    const V1_CRED: &str = "r/l6ttQtMIfbS2lfULS0mDRRNUg=";
    const V2_CRED: &str = "J3UUQgFcoZ5kvfsLEywUgJARoIo=";
    const V3_CRED: &str = "/64wsVUX2PU98v8gX0M+UW2HpCo=";
    const V1_KEY_HEX: &str = "32d99a458c495cf72ddd22c690544f3c";

    #[test]
    fn mint_matches_fixed_vectors() {
        let c = mint(b"north-wind-secret", "alice", 86_400, 1_699_913_600);
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.credential, V1_CRED);
        assert_eq!(c.ttl, 86_400);
        assert_eq!(c.expires_at, 1_700_000_000);

        let c = mint(b"rotated-2", "bob@example", 3600, 1_700_082_800);
        assert_eq!(c.username, "1700086400:bob@example");
        assert_eq!(c.credential, V2_CRED);

        let c = mint(b"s", "user:with:colons", 4_102_444_800, 0);
        assert_eq!(c.username, "4102444800:user:with:colons");
        assert_eq!(c.credential, V3_CRED);
    }

    #[test]
    fn long_term_key_matches_fixed_vector() {
        let key = long_term_key("1700000000:alice", "parlor", V1_CRED);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, V1_KEY_HEX);
    }

    #[test]
    fn validator_mints_with_first_accepts_any() {
        let v = CredentialValidator::new(["rotated-2", "north-wind-secret"]).unwrap();
        let c = v.mint("bob@example", 3600, 1_700_082_800);
        assert_eq!(c.credential, V2_CRED);
        // Old secret still accepted.
        let u = v
            .validate("1700000000:alice", V1_CRED, 1_699_999_999)
            .unwrap();
        assert_eq!(u.user_id, "alice");
        assert_eq!(u.expires_at, 1_700_000_000);
        // A validator that only knows the new secret refuses the old credential.
        let only_new = CredentialValidator::new(["rotated-2"]).unwrap();
        assert_eq!(
            only_new.validate("1700000000:alice", V1_CRED, 1_699_999_999),
            Err(CredentialError::BadCredential)
        );
    }

    #[test]
    fn expiry_uses_injected_now() {
        let v = CredentialValidator::new(["north-wind-secret"]).unwrap();
        assert!(v
            .validate("1700000000:alice", V1_CRED, 1_700_000_000)
            .is_ok());
        assert_eq!(
            v.validate("1700000000:alice", V1_CRED, 1_700_000_001),
            Err(CredentialError::Expired {
                expired_at: 1_700_000_000,
                now: 1_700_000_001
            })
        );
    }

    #[test]
    fn rejects_wrong_password_and_malformed() {
        let v = CredentialValidator::new(["north-wind-secret"]).unwrap();
        assert_eq!(
            v.validate("1700000000:alice", "r/l6ttQtMIfbS2lfULS0mDRRNUh=", 0),
            Err(CredentialError::BadCredential)
        );
        assert_eq!(
            v.validate("1700000000:alice", "", 0),
            Err(CredentialError::BadCredential)
        );
        // Tampered user id.
        assert_eq!(
            v.validate("1700000000:mallory", V1_CRED, 0),
            Err(CredentialError::BadCredential)
        );
        for bad in [
            "alice",
            ":alice",
            "17x:alice",
            "-5:alice",
            "99999999999999999999999:a",
        ] {
            assert_eq!(
                v.validate(bad, V1_CRED, 0),
                Err(CredentialError::MalformedUsername),
                "{bad}"
            );
        }
        let long = format!("1:{}", "a".repeat(MAX_USERNAME_LEN));
        assert_eq!(
            v.validate(&long, "x", 0),
            Err(CredentialError::MalformedUsername)
        );
    }

    #[test]
    fn no_secrets_is_an_error() {
        assert_eq!(
            CredentialValidator::new(Vec::<String>::new()).unwrap_err(),
            CredentialError::NoSecret
        );
        assert_eq!(
            CredentialValidator::new(["a", ""]).unwrap_err(),
            CredentialError::NoSecret
        );
    }

    #[test]
    fn long_term_keys_one_per_secret() {
        let v = CredentialValidator::new(["north-wind-secret", "other"]).unwrap();
        let (u, keys) = v.long_term_keys("1700000000:alice", "parlor", 5).unwrap();
        assert_eq!(u.user_id, "alice");
        assert_eq!(keys.len(), 2);
        let hex: String = keys[0].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, V1_KEY_HEX);
    }
}
