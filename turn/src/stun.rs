//! Minimal STUN/TURN message codec (RFC 5389 / 5766 / 8656): exactly what the server needs.
//!
//! Parsing is zero-copy over the received datagram and never panics on malformed input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub(crate) const MAGIC_COOKIE: u32 = 0x2112_A442;
pub(crate) const HEADER_LEN: usize = 20;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

// Methods.
pub(crate) const METHOD_BINDING: u16 = 0x001;
pub(crate) const METHOD_ALLOCATE: u16 = 0x003;
pub(crate) const METHOD_REFRESH: u16 = 0x004;
pub(crate) const METHOD_SEND: u16 = 0x006;
pub(crate) const METHOD_DATA: u16 = 0x007;
pub(crate) const METHOD_CREATE_PERMISSION: u16 = 0x008;
pub(crate) const METHOD_CHANNEL_BIND: u16 = 0x009;

// Classes.
pub(crate) const CLASS_REQUEST: u8 = 0b00;
pub(crate) const CLASS_INDICATION: u8 = 0b01;
pub(crate) const CLASS_SUCCESS: u8 = 0b10;
pub(crate) const CLASS_ERROR: u8 = 0b11;

// Attributes.
pub(crate) const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
pub(crate) const ATTR_USERNAME: u16 = 0x0006;
pub(crate) const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
pub(crate) const ATTR_ERROR_CODE: u16 = 0x0009;
pub(crate) const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000A;
pub(crate) const ATTR_CHANNEL_NUMBER: u16 = 0x000C;
pub(crate) const ATTR_LIFETIME: u16 = 0x000D;
pub(crate) const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
pub(crate) const ATTR_DATA: u16 = 0x0013;
pub(crate) const ATTR_REALM: u16 = 0x0014;
pub(crate) const ATTR_NONCE: u16 = 0x0015;
pub(crate) const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub(crate) const ATTR_REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
pub(crate) const ATTR_EVEN_PORT: u16 = 0x0018;
pub(crate) const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
pub(crate) const ATTR_DONT_FRAGMENT: u16 = 0x001A;
pub(crate) const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub(crate) const ATTR_RESERVATION_TOKEN: u16 = 0x0022;
pub(crate) const ATTR_PRIORITY: u16 = 0x0024;
pub(crate) const ATTR_USE_CANDIDATE: u16 = 0x0025;
pub(crate) const ATTR_SOFTWARE: u16 = 0x8022;
pub(crate) const ATTR_FINGERPRINT: u16 = 0x8028;

/// Comprehension-required attributes (type < 0x8000) this server understands; any other one in a
/// request yields 420 Unknown Attribute (RFC 5389 §7.3.1).
const KNOWN_REQUIRED: &[u16] = &[
    ATTR_MAPPED_ADDRESS,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_ERROR_CODE,
    ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_XOR_RELAYED_ADDRESS,
    ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_DONT_FRAGMENT,
    ATTR_XOR_MAPPED_ADDRESS,
    ATTR_RESERVATION_TOKEN,
    ATTR_PRIORITY,
    ATTR_USE_CANDIDATE,
];

/// Compose the 14-bit message type from method and class.
pub(crate) fn message_type(method: u16, class: u8) -> u16 {
    let c = u16::from(class);
    (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((c & 0b01) << 4)
        | ((c & 0b10) << 7)
}

fn split_type(t: u16) -> (u16, u8) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = (((t >> 4) & 0b01) | ((t >> 7) & 0b10)) as u8;
    (method, class)
}

/// A parsed STUN message borrowing the datagram.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    pub method: u16,
    pub class: u8,
    pub txid: [u8; 12],
    raw: &'a [u8],
    /// (type, value offset, value length), in wire order.
    attrs: Vec<(u16, usize, usize)>,
}

/// Length of the STUN message at the start of `buf` (header + body), if the header is sane.
pub(crate) fn stun_frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < HEADER_LEN || buf[0] & 0xC0 != 0 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if len % 4 != 0 || u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
        return None;
    }
    Some(HEADER_LEN + len)
}

impl<'a> Message<'a> {
    /// Parse one whole message; `None` if it is not well-formed STUN.
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        let total = stun_frame_len(raw)?;
        if raw.len() != total {
            return None;
        }
        let (method, class) = split_type(u16::from_be_bytes([raw[0], raw[1]]));
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&raw[8..20]);
        let mut attrs = Vec::with_capacity(8);
        let mut off = HEADER_LEN;
        while off < total {
            if off + 4 > total {
                return None;
            }
            let typ = u16::from_be_bytes([raw[off], raw[off + 1]]);
            let len = usize::from(u16::from_be_bytes([raw[off + 2], raw[off + 3]]));
            let start = off + 4;
            let end = start + len;
            if end > total {
                return None;
            }
            attrs.push((typ, start, len));
            off = start + ((len + 3) & !3);
        }
        Some(Self {
            method,
            class,
            txid,
            raw,
            attrs,
        })
    }

    /// First value of attribute `typ`. (After MESSAGE-INTEGRITY only FINGERPRINT counts,
    /// RFC 5389 §15.4, so later attributes are ignored.)
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.attrs_before_integrity()
            .find(|(t, _, _)| *t == typ)
            .map(|&(_, s, l)| &self.raw[s..s + l])
    }

    /// All values of attribute `typ` (e.g. several XOR-PEER-ADDRESS).
    pub fn get_all(&self, typ: u16) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.attrs_before_integrity()
            .filter(move |(t, _, _)| *t == typ)
            .map(|&(_, s, l)| &self.raw[s..s + l])
    }

    fn attrs_before_integrity(&self) -> impl Iterator<Item = &(u16, usize, usize)> + '_ {
        let cut = self
            .attrs
            .iter()
            .position(|(t, _, _)| *t == ATTR_MESSAGE_INTEGRITY)
            .map_or(self.attrs.len(), |p| p + 1);
        self.attrs[..cut].iter()
    }

    pub fn has(&self, typ: u16) -> bool {
        self.get(typ).is_some()
    }

    /// Comprehension-required attributes we do not understand.
    pub fn unknown_required(&self) -> Vec<u16> {
        self.attrs_before_integrity()
            .map(|(t, _, _)| *t)
            .filter(|t| *t < 0x8000 && !KNOWN_REQUIRED.contains(t))
            .collect()
    }

    pub fn get_str(&self, typ: u16) -> Option<&'a str> {
        self.get(typ).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn get_u32(&self, typ: u16) -> Option<u32> {
        let v = self.get(typ)?;
        (v.len() == 4).then(|| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    pub fn xor_addr(&self, typ: u16) -> Option<Result<SocketAddr, ()>> {
        self.get(typ).map(|v| decode_xor_addr(v, &self.txid))
    }

    /// Verify MESSAGE-INTEGRITY (HMAC-SHA1) with `key`, constant-time.
    pub fn check_integrity(&self, key: &[u8]) -> bool {
        let Some(&(_, start, len)) = self
            .attrs
            .iter()
            .find(|(t, _, _)| *t == ATTR_MESSAGE_INTEGRITY)
        else {
            return false;
        };
        if len != 20 {
            return false;
        }
        let attr_start = start - 4;
        // The length field covers everything up to and including MESSAGE-INTEGRITY.
        let Ok(len_field) = u16::try_from(start + 20 - HEADER_LEN) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
            return false;
        };
        mac.update(&self.raw[0..2]);
        mac.update(&len_field.to_be_bytes());
        mac.update(&self.raw[4..attr_start]);
        mac.verify_slice(&self.raw[start..start + 20]).is_ok()
    }
}

pub(crate) fn decode_xor_addr(v: &[u8], txid: &[u8; 12]) -> Result<SocketAddr, ()> {
    if v.len() < 4 {
        return Err(());
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    match v[1] {
        0x01 if v.len() == 8 => {
            let x = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC_COOKIE;
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(x)), port))
        }
        0x02 if v.len() == 20 => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(txid);
            let mut ip = [0u8; 16];
            for (i, b) in ip.iter_mut().enumerate() {
                *b = v[4 + i] ^ key[i];
            }
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => Err(()),
    }
}

/// Builds one outgoing message.
#[derive(Clone)]
pub(crate) struct Builder {
    buf: Vec<u8>,
    txid: [u8; 12],
    /// Already complete (a cached response): nothing may be appended.
    raw: bool,
}

impl Builder {
    pub fn new(method: u16, class: u8, txid: [u8; 12]) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&message_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&txid);
        Self {
            buf,
            txid,
            raw: false,
        }
    }

    /// Wrap an already finished message.
    pub fn from_raw(buf: Vec<u8>) -> Self {
        Self {
            buf,
            txid: [0; 12],
            raw: true,
        }
    }

    pub fn is_raw(&self) -> bool {
        self.raw
    }

    pub fn clone_builder(&self) -> Self {
        self.clone()
    }

    fn set_len(&mut self, body_len: usize) {
        let l = (body_len as u16).to_be_bytes();
        self.buf[2] = l[0];
        self.buf[3] = l[1];
    }

    pub fn attr(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = (4 - value.len() % 4) % 4;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        let body = self.buf.len() - HEADER_LEN;
        self.set_len(body);
        self
    }

    pub fn u32_attr(&mut self, typ: u16, v: u32) -> &mut Self {
        self.attr(typ, &v.to_be_bytes())
    }

    pub fn xor_addr(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let mut v = Vec::with_capacity(20);
        v.push(0);
        match addr.ip() {
            IpAddr::V4(ip) => {
                v.push(0x01);
                v.extend_from_slice(&port.to_be_bytes());
                v.extend_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
            }
            IpAddr::V6(ip) => {
                v.push(0x02);
                v.extend_from_slice(&port.to_be_bytes());
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                key[4..].copy_from_slice(&self.txid);
                for (i, b) in ip.octets().iter().enumerate() {
                    v.push(b ^ key[i]);
                }
            }
        }
        self.attr(typ, &v)
    }

    pub fn error(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        v.extend_from_slice(reason.as_bytes());
        self.attr(ATTR_ERROR_CODE, &v)
    }

    /// Append MESSAGE-INTEGRITY computed with `key`.
    pub fn integrity(&mut self, key: &[u8]) -> &mut Self {
        let body = self.buf.len() - HEADER_LEN + 24;
        self.set_len(body);
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
            unreachable!("HMAC takes keys of any size")
        };
        mac.update(&self.buf);
        let tag = mac.finalize().into_bytes();
        self.attr(ATTR_MESSAGE_INTEGRITY, &tag)
    }

    /// Append FINGERPRINT.
    pub fn fingerprint(&mut self) -> &mut Self {
        let body = self.buf.len() - HEADER_LEN + 8;
        self.set_len(body);
        let crc = crc32fast::hash(&self.buf) ^ FINGERPRINT_XOR;
        self.u32_attr(ATTR_FINGERPRINT, crc)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Check FINGERPRINT if present (true when absent).
pub(crate) fn fingerprint_ok(m: &Message<'_>) -> bool {
    let Some(&(_, start, len)) = m.attrs.iter().find(|(t, _, _)| *t == ATTR_FINGERPRINT) else {
        return true;
    };
    if len != 4 || start + 4 != m.raw.len() {
        return false;
    }
    let v = &m.raw[start..start + 4];
    let got = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    crc32fast::hash(&m.raw[..start - 4]) ^ FINGERPRINT_XOR == got
}

/// ChannelData framing (RFC 5766 §11.4): number in 0x4000..=0x7FFF, 16-bit length.
pub(crate) fn channel_data_frame_len(buf: &[u8], padded: bool) -> Option<usize> {
    if buf.len() < 4 || !(0x40..=0x7F).contains(&buf[0]) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let len = if padded { (len + 3) & !3 } else { len };
    Some(4 + len)
}

pub(crate) fn encode_channel_data(channel: u16, data: &[u8], pad: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + data.len() + 3);
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    if pad {
        let p = (4 - data.len() % 4) % 4;
        v.extend(std::iter::repeat_n(0u8, p));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_roundtrip() {
        // Allocate request 0x0003, success 0x0103, error 0x0113; Send indication 0x0016.
        assert_eq!(message_type(METHOD_ALLOCATE, CLASS_REQUEST), 0x0003);
        assert_eq!(message_type(METHOD_ALLOCATE, CLASS_SUCCESS), 0x0103);
        assert_eq!(message_type(METHOD_ALLOCATE, CLASS_ERROR), 0x0113);
        assert_eq!(message_type(METHOD_SEND, CLASS_INDICATION), 0x0016);
        assert_eq!(message_type(METHOD_DATA, CLASS_INDICATION), 0x0017);
        assert_eq!(split_type(0x0113), (METHOD_ALLOCATE, CLASS_ERROR));
    }

    #[test]
    fn build_parse_integrity_fingerprint() {
        let txid = [7u8; 12];
        let peer: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let peer6: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let raw = Builder::new(METHOD_CREATE_PERMISSION, CLASS_REQUEST, txid)
            .xor_addr(ATTR_XOR_PEER_ADDRESS, peer)
            .xor_addr(ATTR_XOR_PEER_ADDRESS, peer6)
            .attr(ATTR_USERNAME, b"1:u")
            .integrity(b"key")
            .fingerprint()
            .finish();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.method, METHOD_CREATE_PERMISSION);
        assert_eq!(m.class, CLASS_REQUEST);
        let peers: Vec<_> = m
            .get_all(ATTR_XOR_PEER_ADDRESS)
            .map(|v| decode_xor_addr(v, &txid).unwrap())
            .collect();
        assert_eq!(peers, vec![peer, peer6]);
        assert!(m.check_integrity(b"key"));
        assert!(!m.check_integrity(b"kex"));
        assert!(fingerprint_ok(&m));
        let mut bad = raw.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(!fingerprint_ok(&Message::parse(&bad).unwrap()));
    }

    #[test]
    fn rfc5769_sample_request_integrity() {
        // RFC 5769 §2.1 sample request (short-term key "VOkJxbRl1RmTxUk/WvJxBt").
        let hex = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
        let raw: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.get_str(ATTR_USERNAME), Some("evtj:h6vY"));
        assert!(m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(fingerprint_ok(&m));
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(Message::parse(&[]).is_none());
        assert!(Message::parse(&[0u8; 19]).is_none());
        let mut raw = Builder::new(METHOD_BINDING, CLASS_REQUEST, [1; 12])
            .attr(ATTR_SOFTWARE, b"abc")
            .finish();
        assert!(Message::parse(&raw).is_some());
        // Attribute length running past the end.
        raw[22] = 0x10;
        assert!(Message::parse(&raw).is_none());
        // Every truncation and every single-byte corruption parses or fails without panicking.
        let good = Builder::new(METHOD_ALLOCATE, CLASS_REQUEST, [2; 12])
            .u32_attr(ATTR_REQUESTED_TRANSPORT, 17 << 24)
            .attr(ATTR_USERNAME, b"12:alice")
            .integrity(b"k")
            .finish();
        for cut in 0..good.len() {
            let _ = Message::parse(&good[..cut]);
        }
        for i in 0..good.len() {
            for v in [0u8, 0xff, 0x41] {
                let mut b = good.clone();
                b[i] = v;
                if let Some(m) = Message::parse(&b) {
                    let _ = m.check_integrity(b"k");
                    let _ = m.xor_addr(ATTR_XOR_PEER_ADDRESS);
                    let _ = fingerprint_ok(&m);
                }
            }
        }
    }

    #[test]
    fn channel_data_framing() {
        let f = encode_channel_data(0x4001, b"hello", true);
        assert_eq!(f.len(), 12);
        assert_eq!(channel_data_frame_len(&f, true), Some(12));
        assert_eq!(channel_data_frame_len(&f, false), Some(9));
        assert_eq!(channel_data_frame_len(&[0x80, 0, 0, 0], false), None);
    }
}
