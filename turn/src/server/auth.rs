//! Authentication of TURN requests (long-term credentials, RFC 5389 §10.2.2 / RFC 8489 §9.2):
//! stateless HMAC nonces and MESSAGE-INTEGRITY checked against every configured secret.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use tracing::debug;

use super::{hex, Authed, Reply, Shared};
use crate::metrics::Metrics;
use crate::stun::*;

impl Shared {
    pub(super) fn make_nonce(&self) -> String {
        let expiry = (self.now() + self.cfg.nonce_lifetime).as_secs();
        format!("{expiry:016x}{}", hex(&self.nonce_mac(expiry)))
    }

    pub(super) fn nonce_mac(&self, expiry: u64) -> [u8; 8] {
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&self.nonce_key) else {
            unreachable!("HMAC takes keys of any size")
        };
        mac.update(&expiry.to_be_bytes());
        let out = mac.finalize().into_bytes();
        let mut t = [0u8; 8];
        t.copy_from_slice(&out[..8]);
        t
    }

    pub(super) fn nonce_valid(&self, nonce: &str) -> bool {
        if nonce.len() != 32 || !nonce.is_ascii() {
            return false;
        }
        let Ok(expiry) = u64::from_str_radix(&nonce[..16], 16) else {
            return false;
        };
        let expected = hex(&self.nonce_mac(expiry));
        let mac_ok: bool =
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), &nonce.as_bytes()[16..]).into();
        mac_ok && expiry >= self.now().as_secs()
    }

    pub(super) fn challenge(&self, m: &Message<'_>, code: u16, reason: &str) -> Reply {
        let mut b = self.error(m, code, reason);
        b.attr(ATTR_REALM, self.cfg.realm.as_bytes());
        b.attr(ATTR_NONCE, self.make_nonce().as_bytes());
        Reply::Plain(b)
    }

    pub(super) fn auth_failure(&self, m: &Message<'_>, why: &str) -> Reply {
        Metrics::inc(&self.metrics.auth_failures);
        debug!(why, "TURN authentication failed");
        self.challenge(m, 401, "Unauthorized")
    }

    pub(super) fn authenticate(&self, m: &Message<'_>) -> Result<Authed, Reply> {
        if !m.has(ATTR_MESSAGE_INTEGRITY) {
            return Err(self.challenge(m, 401, "Unauthorized"));
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            m.get_str(ATTR_USERNAME),
            m.get_str(ATTR_REALM),
            m.get_str(ATTR_NONCE),
        ) else {
            Metrics::inc(&self.metrics.auth_failures);
            return Err(Reply::Plain(self.error(m, 400, "Bad Request")));
        };
        if !self.nonce_valid(nonce) {
            return Err(self.challenge(m, 438, "Stale Nonce"));
        }
        if realm != self.cfg.realm {
            return Err(self.auth_failure(m, "wrong realm"));
        }
        let now = self.now().as_secs();
        let (user, keys) = match self.validator.long_term_keys(username, realm, now) {
            Ok(v) => v,
            Err(e) => return Err(self.auth_failure(m, &e.to_string())),
        };
        // Check every key (no early exit) so timing does not tell which secret matched.
        let mut found: Option<[u8; 16]> = None;
        for k in &keys {
            if m.check_integrity(k) && found.is_none() {
                found = Some(*k);
            }
        }
        match found {
            Some(key) => Ok(Authed {
                username: username.to_owned(),
                user_id: user.user_id,
                key,
            }),
            None => Err(self.auth_failure(m, "MESSAGE-INTEGRITY mismatch")),
        }
    }
}
