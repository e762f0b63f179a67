//! The media worker's gate for STUN sent to one of its peer connections: only an ICE connectivity
//! check the `rtc` ICE agent can act on reaches it (a Binding request whose USERNAME starts with the
//! connection's ufrag and whose MESSAGE-INTEGRITY verifies with its password, once the remote
//! description is known; a success response protected with the peer's password; or a plain Binding
//! indication, a keepalive the agent counts as liveness).
//! Everything else is a per-packet fault the worker counts and drops:
//! handing it to `rtc` only makes the agent log a WARN per packet (a log flood anyone can cause).

use hmac::{Hmac, Mac};
use sha1::Sha1;

const HEADER_LEN: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ICE_CONTROLLED: u16 = 0x8029;
const ATTR_ICE_CONTROLLING: u16 = 0x802A;
const CLASS_REQUEST: u16 = 0x0000;
const CLASS_INDICATION: u16 = 0x0010;
const CLASS_SUCCESS: u16 = 0x0100;
const METHOD_BINDING: u16 = 0x0001;

/// Why a STUN packet was dropped (the `reason` label of `parlor_stun_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StunFault {
    /// Not a well-formed STUN message.
    Malformed,
    /// A Binding indication before the remote description, or carrying ICE role attributes.
    Indication,
    /// An error response, or a method other than Binding.
    Unexpected,
    /// A Binding request without USERNAME or whose USERNAME names another connection.
    BadUsername,
    /// A Binding request without MESSAGE-INTEGRITY.
    NoIntegrity,
    /// MESSAGE-INTEGRITY does not verify with the connection's password.
    BadIntegrity,
    /// A valid check before the connection's remote description (the agent has no remote password).
    NoRemoteDescription,
}

impl StunFault {
    pub const ALL: [StunFault; 7] = [
        StunFault::Malformed,
        StunFault::Indication,
        StunFault::Unexpected,
        StunFault::BadUsername,
        StunFault::NoIntegrity,
        StunFault::BadIntegrity,
        StunFault::NoRemoteDescription,
    ];
    pub const fn reason(self) -> &'static str {
        match self {
            StunFault::Malformed => "malformed",
            StunFault::Indication => "indication",
            StunFault::Unexpected => "unexpected",
            StunFault::BadUsername => "bad_username",
            StunFault::NoIntegrity => "no_integrity",
            StunFault::BadIntegrity => "bad_integrity",
            StunFault::NoRemoteDescription => "no_remote_description",
        }
    }
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Check a STUN packet (RFC 7983: first byte 0..3) addressed to the connection whose local ICE
/// credentials are `ufrag`/`pwd`; `remote_pwd` is the peer's ICE password from the remote
/// description (None before it is set). Allocation-free.
pub fn check(
    buf: &[u8],
    ufrag: &str,
    pwd: &str,
    remote_pwd: Option<&str>,
) -> Result<(), StunFault> {
    let has_remote = remote_pwd.is_some();
    if buf.len() < HEADER_LEN || buf[0] & 0xC0 != 0 || buf[4..8] != MAGIC_COOKIE {
        return Err(StunFault::Malformed);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if !len.is_multiple_of(4) || buf.len() != HEADER_LEN + len {
        return Err(StunFault::Malformed);
    }
    let typ = u16::from_be_bytes([buf[0], buf[1]]);
    let class = typ & 0x0110;
    let method = typ & !0x0110;
    if method != METHOD_BINDING {
        return Err(StunFault::Unexpected);
    }
    if !matches!(class, CLASS_REQUEST | CLASS_INDICATION | CLASS_SUCCESS) {
        return Err(StunFault::Unexpected);
    }
    let indication = class == CLASS_INDICATION;
    let mut username = None;
    let mut role_attr = false;
    let mut integrity = None;
    let mut off = HEADER_LEN;
    while off < buf.len() {
        if off + 4 > buf.len() {
            return Err(StunFault::Malformed);
        }
        let t = u16::from_be_bytes([buf[off], buf[off + 1]]);
        let l = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
        let start = off + 4;
        let Some(value) = buf.get(start..start + l) else {
            return Err(StunFault::Malformed);
        };
        match t {
            ATTR_USERNAME if username.is_none() => username = Some(value),
            ATTR_ICE_CONTROLLED | ATTR_ICE_CONTROLLING => role_attr = true,
            ATTR_MESSAGE_INTEGRITY => {
                integrity = Some((off, value));
                break; // only FINGERPRINT may follow (RFC 8489 §14.5)
            }
            _ => {}
        }
        off = start + l.div_ceil(4) * 4;
    }
    if indication {
        // Unauthenticated by design (RFC 8445 keepalives): it only marks a known remote candidate
        // as alive, so it may pass once there is a remote description, without role attributes.
        return if has_remote && !role_attr {
            Ok(())
        } else {
            Err(StunFault::Indication)
        };
    }
    if class == CLASS_SUCCESS {
        // A response to the agent's own check (consent, keepalive): keyed with the peer's password.
        let Some(remote_pwd) = remote_pwd else {
            return Err(StunFault::NoRemoteDescription);
        };
        let Some((attr_off, mac)) = integrity else {
            return Err(StunFault::NoIntegrity);
        };
        if mac.len() != 20 || !integrity_ok(buf, attr_off, mac, remote_pwd.as_bytes()) {
            return Err(StunFault::BadIntegrity);
        }
        return Ok(());
    }
    let ours = username
        .and_then(|u| u.split(|&b| b == b':').next())
        .is_some_and(|local| local == ufrag.as_bytes());
    if !ours {
        return Err(StunFault::BadUsername);
    }
    let Some((attr_off, mac)) = integrity else {
        return Err(StunFault::NoIntegrity);
    };
    if mac.len() != 20 || !integrity_ok(buf, attr_off, mac, pwd.as_bytes()) {
        return Err(StunFault::BadIntegrity);
    }
    if !has_remote {
        return Err(StunFault::NoRemoteDescription);
    }
    Ok(())
}

/// RFC 8489 §14.5: HMAC-SHA1 over the message up to MESSAGE-INTEGRITY, with the header length
/// covering the attribute; short-term credentials: the key is the password.
fn integrity_ok(buf: &[u8], attr_off: usize, mac: &[u8], key: &[u8]) -> bool {
    let Ok(len_field) = u16::try_from(attr_off + 4 + 20 - HEADER_LEN) else {
        return false;
    };
    let Ok(mut h) = Hmac::<Sha1>::new_from_slice(key) else {
        return false;
    };
    h.update(&buf[0..2]);
    h.update(&len_field.to_be_bytes());
    h.update(&buf[4..attr_off]);
    h.verify_slice(mac).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding request (type `typ`) with USERNAME `user`, MESSAGE-INTEGRITY with `key` if given.
    fn stun(typ: u16, user: &str, key: Option<&[u8]>) -> Vec<u8> {
        let mut m = typ.to_be_bytes().to_vec();
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[9u8; 12]);
        m.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        m.extend_from_slice(&(user.len() as u16).to_be_bytes());
        m.extend_from_slice(user.as_bytes());
        while !m.len().is_multiple_of(4) {
            m.push(0);
        }
        if let Some(key) = key {
            let len = (m.len() - HEADER_LEN + 24) as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
            let mut h = Hmac::<Sha1>::new_from_slice(key).unwrap();
            h.update(&m);
            let mac = h.finalize().into_bytes();
            m.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
            m.extend_from_slice(&20u16.to_be_bytes());
            m.extend_from_slice(&mac);
        } else {
            let len = (m.len() - HEADER_LEN) as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
        }
        m
    }

    #[test]
    fn only_authenticated_checks_pass() {
        let (u, p) = ("0abc", "secret-pwd");
        let (yes, no) = (Some("their-pwd"), None);
        assert_eq!(
            check(&stun(1, "0abc:x", Some(b"secret-pwd")), u, p, yes),
            Ok(())
        );
        assert_eq!(
            check(&stun(1, "0abc:x", Some(b"secret-pwd")), u, p, no),
            Err(StunFault::NoRemoteDescription)
        );
        assert_eq!(
            check(&stun(1, "0abc:x", None), u, p, yes),
            Err(StunFault::NoIntegrity)
        );
        assert_eq!(
            check(&stun(1, "0abc:x", Some(b"guess")), u, p, yes),
            Err(StunFault::BadIntegrity)
        );
        assert_eq!(
            check(&stun(1, "0abd:x", Some(b"secret-pwd")), u, p, yes),
            Err(StunFault::BadUsername)
        );
        assert_eq!(check(&stun(0x0011, "0abc:x", None), u, p, yes), Ok(()));
        assert_eq!(
            check(&stun(0x0011, "0abc:x", None), u, p, no),
            Err(StunFault::Indication)
        );
        assert_eq!(
            check(&stun(0x0111, "0abc:x", None), u, p, yes),
            Err(StunFault::Unexpected)
        );
        // Success responses: keyed with the peer's password.
        assert_eq!(
            check(&stun(0x0101, "", Some(b"their-pwd")), u, p, yes),
            Ok(())
        );
        assert_eq!(
            check(&stun(0x0101, "", Some(b"secret-pwd")), u, p, yes),
            Err(StunFault::BadIntegrity)
        );
        assert_eq!(
            check(&stun(0x0101, "", None), u, p, yes),
            Err(StunFault::NoIntegrity)
        );
        assert_eq!(
            check(&stun(0x0101, "", Some(b"their-pwd")), u, p, no),
            Err(StunFault::NoRemoteDescription)
        );
        let mut cut = stun(1, "0abc:x", Some(b"secret-pwd"));
        cut.truncate(cut.len() - 3);
        assert_eq!(check(&cut, u, p, yes), Err(StunFault::Malformed));
        for n in 0..HEADER_LEN {
            assert_eq!(check(&cut[..n], u, p, yes), Err(StunFault::Malformed));
        }
    }
}
