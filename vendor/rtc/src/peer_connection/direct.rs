//! Parlor patch: direct RTP egress and ingress for an SFU.
//!
//! [`RTCPeerConnection::protect_rtp`] SRTP-protects one outgoing RTP packet with the connection's
//! outbound SRTP context and returns it with the destination of the selected ICE candidate pair,
//! without the write pipeline (endpoint, interceptors, SRTP, DTLS, SCTP, demuxer and ICE handlers
//! each moving the message through a queue). The caller takes over what the interceptors would
//! have done for these packets: it keeps its own send cache for NACK answers and its own
//! sender-report counts. RTCP still goes through the pipeline.
//!
//! [`RTCPeerConnection::read_rtp_direct`] is the matching ingress: an SRTP (not SRTCP) datagram on
//! a connected transport is decrypted and enters the pipeline at the interceptor stage (so NACK
//! generation, receiver reports, TWCC feedback and the SSRC → track mapping see it as before),
//! skipping the demuxer, ICE, DTLS, SCTP, data-channel and SRTP handlers it would only pass
//! through; the stats those handlers keep for it (transport and selected-pair counts) are kept
//! here. Nothing else is swept: the packet lands in the media queue
//! ([`poll_media_read`](RTCPeerConnection::poll_media_read)).
//!
//! To be offered upstream (webrtc-rs/rtc) as an opt-in fast path for forwarding servers.

use super::RTCPeerConnection;
use super::message::internal::{RTCMessageInternal, RTPMessage, TaggedRTCMessageInternal};
use bytes::BytesMut;
use interceptor::Packet;
use log::warn;
use shared::error::{Error, Result};
use shared::marshal::Unmarshal;
use shared::util::is_rtcp;
use shared::{TransportContext, TransportProtocol};
use std::net::SocketAddr;
use std::time::Instant;

/// Where a protected packet goes: the selected candidate pair's remote address and transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectRoute {
    /// Our side's base address.
    pub local_addr: SocketAddr,
    /// The remote candidate's address.
    pub peer_addr: SocketAddr,
    /// UDP, or TCP (ICE-TCP, RFC 4571 framing is the caller's).
    pub protocol: TransportProtocol,
}

impl RTCPeerConnection {
    /// The selected ICE candidate pair's route, if ICE has selected one.
    pub fn direct_route(&self) -> Option<DirectRoute> {
        let (local, remote) = self
            .pipeline_context
            .ice_handler_context
            .ice_transport
            .agent
            .get_selected_candidate_pair()?;
        Some(DirectRoute {
            local_addr: local.base_addr(),
            peer_addr: remote.addr(),
            protocol: local.network_type().to_protocol(),
        })
    }

    /// Is the outbound SRTP context there (DTLS done)?
    pub fn can_protect_rtp(&self) -> bool {
        self.pipeline_context
            .srtp_handler_context
            .local_srtp_context
            .is_some()
    }

    /// SRTP-protect `plaintext` (a marshalled RTP packet whose header is `header`) with the
    /// outbound context. Errors before DTLS has completed (no context yet).
    pub fn protect_rtp(&mut self, header: &rtp::Header, plaintext: &[u8]) -> Result<BytesMut> {
        match self
            .pipeline_context
            .srtp_handler_context
            .local_srtp_context
            .as_mut()
        {
            Some(ctx) => ctx.encrypt_rtp_with_header(plaintext, header),
            None => Err(Error::Other("no outbound SRTP context yet".to_string())),
        }
    }

    /// Take one datagram through the direct ingress if it is SRTP on a connected transport (ICE
    /// pair selected, DTLS done): `Ok(true)` when it was consumed (its RTP, if any, is in the
    /// media queue; an event it raised, such as a simulcast track opening, is reported by
    /// [`has_pending_events`](Self::has_pending_events)); `Ok(false)` when it is anything else
    /// (STUN, DTLS, SRTCP, or too early), for [`handle_read`](sansio::Protocol::handle_read);
    /// `Err` when it does not decrypt or parse (dropped, as the pipeline would).
    pub fn read_rtp_direct(&mut self, now: Instant, datagram: &[u8]) -> Result<bool> {
        let ctx = &mut self.pipeline_context;
        let first = datagram.first().copied().unwrap_or(0);
        if !(128..=191).contains(&first)
            || is_rtcp(datagram)
            || !ctx.interceptor_handler_context.is_dtls_handshake_complete
            || ctx.ice_handler_context.selected_pair_key.is_none()
        {
            return Ok(false);
        }
        let Some(srtp) = ctx.srtp_handler_context.remote_srtp_context.as_mut() else {
            return Ok(false);
        };
        // What the demuxer and ICE handlers count for every datagram they pass on.
        ctx.stats.transport.on_packet_received(datagram.len());
        if let Some(key) = &ctx.ice_handler_context.selected_pair_key
            && let Some(pair) = ctx.stats.ice_candidate_pairs.get_mut(key)
        {
            pair.on_packet_received(datagram.len(), now);
        }
        let mut plain = srtp.decrypt_rtp(datagram)?;
        let packet = rtp::Packet::unmarshal(&mut plain)?;

        use sansio::Protocol;
        let mut queue = std::mem::take(&mut self.pipeline_context.read_queue);
        queue.push_back(TaggedRTCMessageInternal {
            now,
            // As the ICE handler hands it on: DTLS/SRTP are bound to the ICE transport.
            transport: TransportContext::default(),
            message: RTCMessageInternal::Rtp(RTPMessage::Packet(Packet::Rtp(packet))),
        });
        {
            let mut handler = self.get_interceptor_handler();
            while let Some(msg) = queue.pop_front() {
                if let Err(err) = handler.handle_read(msg) {
                    warn!("{}.handle_read got error: {}", handler.name(), err);
                }
            }
            while let Some(msg) = handler.poll_read() {
                queue.push_back(msg);
            }
        }
        {
            let mut handler = self.get_endpoint_handler();
            while let Some(msg) = queue.pop_front() {
                if let Err(err) = handler.handle_read(msg) {
                    warn!("{}.handle_read got error: {}", handler.name(), err);
                }
            }
            while let Some(msg) = handler.poll_read() {
                queue.push_back(msg);
            }
        }
        self.deliver_reads(&mut queue);
        self.pipeline_context.read_queue = queue;
        Ok(true)
    }

    /// Did a handler the direct ingress ran raise an event (to be collected with
    /// [`poll_event`](sansio::Protocol::poll_event))?
    pub fn has_pending_events(&self) -> bool {
        let ctx = &self.pipeline_context;
        !ctx.event_outs.is_empty()
            || !ctx.interceptor_handler_context.event_outs.is_empty()
            || !ctx.endpoint_handler_context.event_outs.is_empty()
    }
}
