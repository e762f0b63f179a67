//! Parlor patch: direct RTP egress for an SFU.
//!
//! [`RTCPeerConnection::protect_rtp`] SRTP-protects one outgoing RTP packet with the connection's
//! outbound SRTP context and returns it with the destination of the selected ICE candidate pair,
//! without the write pipeline (endpoint, interceptors, SRTP, DTLS, SCTP, demuxer and ICE handlers
//! each moving the message through a queue). The caller takes over what the interceptors would
//! have done for these packets: it keeps its own send cache for NACK answers and its own
//! sender-report counts. RTCP still goes through the pipeline.
//!
//! To be offered upstream (webrtc-rs/rtc) as an opt-in fast path for forwarding servers.

use super::RTCPeerConnection;
use bytes::BytesMut;
use shared::error::{Error, Result};
use shared::TransportProtocol;
use std::net::SocketAddr;

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
}
