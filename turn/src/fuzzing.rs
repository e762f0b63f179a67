//! Fuzz bodies: every byte path from the network into the TURN server, as plain `fn(&[u8])`.
//!
//! Not API (`#[doc(hidden)]`): `fuzz/` (cargo-fuzz) and `tests/fuzz_bodies.rs` (stable, CI) run
//! these same functions. A body panics only on a bug. [`seeds`] gives each target's seed inputs,
//! built from real messages (the committed corpora in `fuzz/corpus/` are written from it).
//!
//! - [`stun_message`]: the STUN decoder and every accessor the server uses on a parsed message.
//! - [`turn_server`]: a sequence of packets into the server's message handling entry
//!   (`handle_packet`, what the UDP and TCP loops call); packets can be signed by the harness
//!   with valid long-term credentials so Allocate / Refresh / CreatePermission / ChannelBind,
//!   Send indications and ChannelData are reached, not only the 401 challenge.
//! - [`turn_tcp_stream`]: a TCP byte stream through the same framing as the TCP listener
//!   (STUN length / padded ChannelData), each frame into the server.
//!
//! Relaying is confined: the policy denies every peer except 255.255.255.255, which the relay
//! sockets (bound to 127.0.0.1, no SO_BROADCAST) cannot send to, so no packet leaves the host.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::server::FuzzServer;
use crate::stun::*;
use crate::{long_term_key, mint, ManualClock, TurnConfig};

const SECRET: &str = "fuzz-secret-0123456789";
const REALM: &str = "parlor.fuzz";
const NOW: u64 = 1_700_000_000;
/// Largest number of packets one input drives (bounds sockets opened per input).
const MAX_PACKETS: usize = 32;

/// The only peer the fuzz policy allows (unreachable from a loopback socket without SO_BROADCAST).
pub const FUZZ_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), 9);

/// The STUN decoder and the accessors the server calls on what it parsed.
pub fn stun_message(data: &[u8]) {
    let frame = stun_frame_len(data);
    let _ = channel_data_frame_len(data, true);
    let _ = channel_data_frame_len(data, false);
    let Some(m) = Message::parse(data) else {
        return;
    };
    assert_eq!(
        frame,
        Some(data.len()),
        "parsed a message of another length"
    );
    for t in [
        ATTR_USERNAME,
        ATTR_REALM,
        ATTR_NONCE,
        ATTR_SOFTWARE,
        ATTR_DATA,
        ATTR_REQUESTED_TRANSPORT,
        ATTR_EVEN_PORT,
        ATTR_RESERVATION_TOKEN,
        ATTR_CHANNEL_NUMBER,
        ATTR_REQUESTED_ADDRESS_FAMILY,
        ATTR_DONT_FRAGMENT,
    ] {
        let _ = m.get(t);
        let _ = m.get_str(t);
    }
    let _ = m.get_u32(ATTR_LIFETIME);
    let _ = m.xor_addr(ATTR_XOR_PEER_ADDRESS);
    let _ = m.xor_addr(ATTR_XOR_MAPPED_ADDRESS);
    for v in m.get_all(ATTR_XOR_PEER_ADDRESS) {
        let _ = decode_xor_addr(v, &m.txid);
    }
    let _ = m.unknown_required();
    let _ = m.check_integrity(b"key");
    let _ = fingerprint_ok(&m);
}

struct Harness {
    rt: tokio::runtime::Runtime,
    server: FuzzServer,
    username: String,
    key: [u8; 16],
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fn config() -> TurnConfig {
    let mut cfg = TurnConfig::loopback(REALM, vec![SECRET.to_owned()]);
    cfg.allowed_peer_cidrs = vec![IpNet::from(IpAddr::V4(Ipv4Addr::BROADCAST))];
    // Deny everything but 255.255.255.255/32 (deny wins over allow): the complement, as prefixes.
    let mut deny: Vec<IpNet> = (1..=32u8)
        .map(|len| {
            // The /len network that agrees with all-ones on the first len-1 bits and has a 0 at bit len.
            let ones = if len == 1 { 0 } else { u32::MAX << (33 - len) };
            let net = Ipv4Addr::from(ones);
            IpNet::V4(Ipv4Net::new(net, len).unwrap_or_default())
        })
        .collect();
    deny.push(IpNet::V6(Ipv6Net::default()));
    cfg.denied_peer_cidrs = deny;
    cfg.max_allocations_per_user = 4;
    cfg.max_allocations = 8;
    cfg
}

fn with_harness(f: impl FnOnce(&Harness)) {
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let h = h.get_or_insert_with(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fuzz runtime");
            let clock = Arc::new(ManualClock::new(NOW));
            let server = rt
                .block_on(async { FuzzServer::new(config(), clock) })
                .expect("fuzz TURN server");
            let cred = mint(SECRET.as_bytes(), "fuzzer", 3600, NOW);
            let key = long_term_key(&cred.username, REALM, &cred.credential);
            Harness {
                rt,
                server,
                username: cred.username,
                key,
            }
        });
        {
            // Allocations bind relay sockets and spawn their relay task: runtime context.
            let _g = h.rt.enter();
            f(h);
        }
        h.server.reset();
        // Let the runtime drop the relay tasks `reset` aborted (they hold the relay sockets).
        h.rt.block_on(tokio::task::yield_now());
        debug_assert_eq!(h.server.allocations(), 0);
    });
}

/// Sign `pkt` (a STUN header plus any attributes) the way a client with valid long-term
/// credentials would: USERNAME, REALM, NONCE, MESSAGE-INTEGRITY and, with `fp`, FINGERPRINT.
fn sign(h: &Harness, pkt: &[u8], method: Option<u16>, fp: bool) -> Option<Vec<u8>> {
    if pkt.len() < HEADER_LEN {
        return None;
    }
    let mut buf = Vec::with_capacity(pkt.len() + 128);
    match method {
        Some(m) => buf.extend_from_slice(&message_type(m, CLASS_REQUEST).to_be_bytes()),
        None => buf.extend_from_slice(&[pkt[0] & 0x3F, pkt[1]]),
    }
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    buf.extend_from_slice(&pkt[8..20]);
    let body = &pkt[HEADER_LEN..];
    buf.extend_from_slice(body);
    buf.resize(HEADER_LEN + body.len().next_multiple_of(4), 0);
    if buf.len() > usize::from(u16::MAX) - 128 {
        return None;
    }
    let nonce = h.server.nonce();
    let mut b = Builder::from_raw(buf);
    b.attr(ATTR_USERNAME, h.username.as_bytes())
        .attr(ATTR_REALM, REALM.as_bytes())
        .attr(ATTR_NONCE, nonce.as_bytes())
        .integrity(&h.key);
    if fp {
        b.fingerprint();
    }
    Some(b.finish())
}

/// Packets into the server's message-handling entry. Input: records of
/// `[flags][len hi][len lo][len bytes]`; flags bit 0: sign with valid credentials, bits 1-2:
/// force the method (none / Allocate / Refresh / CreatePermission, ChannelBind with bit 3),
/// bit 4: add FINGERPRINT, bit 5: over TCP, bit 6: from a second client address.
pub fn turn_server(data: &[u8]) {
    with_harness(|h| {
        let mut rest = data;
        let mut n = 0;
        while rest.len() >= 3 && n < MAX_PACKETS {
            n += 1;
            let flags = rest[0];
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
            let pkt = &rest[3..3 + len];
            rest = &rest[3 + len..];
            let client = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + (flags >> 6 & 1))),
                40_000,
            );
            let tcp = flags & 0x20 != 0;
            let method = match (flags >> 1) & 0b111 {
                1 | 5 => Some(METHOD_ALLOCATE),
                2 | 6 => Some(METHOD_REFRESH),
                3 => Some(METHOD_CREATE_PERMISSION),
                7 => Some(METHOD_CHANNEL_BIND),
                _ => None,
            };
            let signed;
            let pkt = if flags & 1 != 0 {
                match sign(h, pkt, method, flags & 0x10 != 0) {
                    Some(s) => {
                        signed = s;
                        &signed[..]
                    }
                    None => pkt,
                }
            } else {
                pkt
            };
            let reply = h.server.packet(client, tcp, pkt);
            if let Some(r) = reply {
                // Whatever the server answers must itself be well-formed STUN.
                assert!(Message::parse(&r).is_some(), "server sent malformed STUN");
            }
        }
    });
}

/// A TCP byte stream through the TCP listener's framing (STUN by its length field, ChannelData
/// padded to 4 bytes; anything else closes the connection), each frame into the server.
pub fn turn_tcp_stream(data: &[u8]) {
    with_harness(|h| {
        let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 50_000);
        let mut buf = data;
        let mut n = 0;
        while buf.len() >= 4 && n < MAX_PACKETS * 4 {
            n += 1;
            let frame_len = if buf[0] & 0xC0 == 0 {
                if buf.len() < HEADER_LEN {
                    break;
                }
                match stun_frame_len(buf) {
                    Some(l) => l,
                    None => break,
                }
            } else {
                match channel_data_frame_len(buf, true) {
                    Some(l) => l,
                    None => break,
                }
            };
            if buf.len() < frame_len {
                break;
            }
            let (frame, tail) = buf.split_at(frame_len);
            buf = tail;
            let _ = h.server.packet(client, true, frame);
        }
    });
}

fn record(flags: u8, pkt: &[u8]) -> Vec<u8> {
    let mut v = vec![flags];
    v.extend_from_slice(&(pkt.len() as u16).to_be_bytes());
    v.extend_from_slice(pkt);
    v
}

/// Seed inputs for `target` ("stun_message", "turn_server", "turn_tcp_stream"), from real
/// messages: a Binding request (as browsers send it), the RFC 5769 sample, and a client's
/// Allocate → CreatePermission → ChannelBind → Send → ChannelData → Refresh(0) sequence.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let txid = |i: u8| [i; 12];
    let binding = Builder::new(METHOD_BINDING, CLASS_REQUEST, txid(1))
        .attr(ATTR_SOFTWARE, b"libwebrtc")
        .fingerprint()
        .finish();
    let rfc5769: Vec<u8> = {
        let hex = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
        (0..hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect()
    };
    // Unsigned bodies; the harness signs them (flags bit 0).
    let allocate = Builder::new(METHOD_ALLOCATE, CLASS_REQUEST, txid(2))
        .u32_attr(ATTR_REQUESTED_TRANSPORT, 17 << 24)
        .u32_attr(ATTR_LIFETIME, 600)
        .finish();
    let allocate_even = Builder::new(METHOD_ALLOCATE, CLASS_REQUEST, txid(3))
        .u32_attr(ATTR_REQUESTED_TRANSPORT, 17 << 24)
        .attr(ATTR_EVEN_PORT, &[0x80, 0, 0, 0])
        .finish();
    let perm = Builder::new(METHOD_CREATE_PERMISSION, CLASS_REQUEST, txid(4))
        .xor_addr(ATTR_XOR_PEER_ADDRESS, FUZZ_PEER)
        .finish();
    let bind = Builder::new(METHOD_CHANNEL_BIND, CLASS_REQUEST, txid(5))
        .attr(ATTR_CHANNEL_NUMBER, &[0x40, 0x01, 0, 0])
        .xor_addr(ATTR_XOR_PEER_ADDRESS, FUZZ_PEER)
        .finish();
    let send = Builder::new(METHOD_SEND, CLASS_INDICATION, txid(6))
        .xor_addr(ATTR_XOR_PEER_ADDRESS, FUZZ_PEER)
        .attr(ATTR_DATA, b"hello peer")
        .finish();
    let chan = encode_channel_data(0x4001, b"channel data", false);
    let chan_padded = encode_channel_data(0x4001, b"channel data!", true);
    let refresh0 = Builder::new(METHOD_REFRESH, CLASS_REQUEST, txid(7))
        .u32_attr(ATTR_LIFETIME, 0)
        .finish();
    match target {
        "stun_message" => vec![binding, rfc5769, allocate, perm, send],
        "turn_server" => {
            let session = |tcp: u8| {
                [
                    record(0x01 | tcp, &allocate),
                    record(0x01 | tcp, &perm),
                    record(0x01 | tcp, &bind),
                    record(tcp, &send),
                    record(tcp, &chan),
                    record(0x11 | tcp, &refresh0),
                ]
                .concat()
            };
            vec![
                record(0, &binding),
                record(0, &rfc5769),
                record(0, &allocate),
                session(0),
                session(0x20),
                [record(0x01, &allocate_even), record(0x01, &allocate)].concat(),
            ]
        }
        "turn_tcp_stream" => vec![
            [binding.clone(), allocate.clone()].concat(),
            [binding, chan_padded.clone(), chan_padded].concat(),
        ],
        _ => Vec::new(),
    }
}
