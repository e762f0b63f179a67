//! Batched UDP receives. A media worker wakes up when its socket becomes readable and takes every
//! queued datagram (up to [`RecvBatch::CAPACITY`]) with one `recvmmsg(2)`, instead of one
//! `recvfrom` per datagram plus a last one that finds the queue empty (`EAGAIN`): under load the
//! loop wakes about once per inbound packet, so that was two system calls per packet.
//!
//! The socket is registered for readability only ([`media_socket`]): tokio's `UdpSocket` also
//! registers for writability, and on loopback every `sendmmsg` raises an EPOLLOUT edge when the
//! receivers free the sent buffers, which cost the worker one extra `epoll_wait` return (and one
//! pass of the runtime's driver) per forwarded burst. Sends are non-blocking `sendmmsg` calls on
//! the raw descriptor that never wait for writability (a full buffer drops, see `sendmmsg`).
//!
//! Readiness (tokio's edge-triggered registration) is cleared when a call returns fewer datagrams
//! than it had room for: the queue was empty at that moment, and a datagram arriving afterwards
//! raises a new epoll edge, so the next `readable()` wakes again. Non-blocking, never waits; the
//! buffers and message headers are allocated once.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// A media worker's UDP socket: non-blocking, registered with the runtime for readability only.
pub type MediaSocket = tokio::io::unix::AsyncFd<std::net::UdpSocket>;

/// Register `socket` (made non-blocking) with the current runtime for readability only. Must be
/// called inside a tokio runtime.
pub fn media_socket(socket: std::net::UdpSocket) -> io::Result<MediaSocket> {
    socket.set_nonblocking(true)?;
    // SAFETY: a `std::net::UdpSocket` owns its descriptor and always returns the same one; the
    // `AsyncFd` owns the socket, so the descriptor stays open for as long as it is registered.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
}

/// Bytes per datagram slot: a longer datagram is dropped (media datagrams are < 1,500 bytes).
const SLOT: usize = 3000;

/// Receive buffers and the `mmsghdr` array for `recvmmsg`, reused across calls.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    addrs: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// Datagrams filled by the last call.
    count: usize,
}

// SAFETY: the raw pointers in `iovs`/`hdrs` point into this struct's own boxed slices (whose heap
// addresses never change); they are dereferenced only by the kernel during `recv`.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// Datagrams per `recvmmsg` call.
    pub const CAPACITY: usize = 32;

    pub fn new() -> Self {
        let n = Self::CAPACITY;
        let mut bufs = vec![0u8; n * SLOT].into_boxed_slice();
        // SAFETY: all-zero is a valid sockaddr_storage and mmsghdr.
        let mut addrs: Box<[libc::sockaddr_storage]> =
            (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
        let mut iovs: Box<[libc::iovec]> = (0..n)
            .map(|i| libc::iovec {
                iov_base: bufs[i * SLOT..].as_mut_ptr() as *mut libc::c_void,
                iov_len: SLOT,
            })
            .collect();
        let hdrs: Box<[libc::mmsghdr]> = (0..n)
            .map(|i| {
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = &mut addrs[i] as *mut _ as *mut libc::c_void;
                h.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iov = &mut iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        Self {
            bufs,
            addrs,
            iovs,
            hdrs,
            count: 0,
        }
    }

    /// One non-blocking `recvmmsg` on `sock`, through tokio's readiness: `Ok(n)` datagrams
    /// (`n >= 1`), or `WouldBlock` when none was queued (or readiness was not set). Clears the
    /// socket's readiness when the queue was drained (`n < CAPACITY`).
    pub fn recv(&mut self, sock: &MediaSocket) -> io::Result<usize> {
        // Reset here, not only in `recv_fd`: with no readiness `try_io` returns WouldBlock without
        // calling the closure, and a stale count must not read as datagrams received.
        self.count = 0;
        let r = sock.try_io(tokio::io::Interest::READABLE, |s| {
            let n = self.recv_fd(s.as_raw_fd())?;
            if n < Self::CAPACITY {
                // Drained: report WouldBlock so tokio clears the readiness (the datagrams read
                // are in `count`), saving the call that would only find the queue empty.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match r {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.count > 0 => Ok(self.count),
            Err(e) => Err(e),
        }
    }

    /// The `recvmmsg` call itself on a non-blocking socket: the number of datagrams filled.
    pub fn recv_fd(&mut self, fd: std::os::fd::RawFd) -> io::Result<usize> {
        self.count = 0;
        for h in self.hdrs.iter_mut() {
            h.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        loop {
            // SAFETY: every header points at its own live address slot and iovec, each iovec at
            // its own SLOT bytes of `bufs`; nothing else touches them during the call.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    Self::CAPACITY as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                self.count = r as usize;
                return Ok(self.count);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Datagram `i` of the last call and its source, or `None` (out of range, truncated, or an
    /// address family other than IPv4/IPv6).
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.count {
            return None;
        }
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (h.msg_len as usize).min(SLOT);
        let from = sockaddr(&self.addrs[i], h.msg_hdr.msg_namelen)?;
        debug_assert!(self.iovs[i].iov_len == SLOT);
        Some((&self.bufs[i * SLOT..i * SLOT + len], from))
    }
}

fn sockaddr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match s.ss_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in (storage is larger and
            // suitably aligned for every sockaddr type).
            let a = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_every_queued_datagram_with_its_source_and_drops_truncated_ones() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("[::1]:0").ok();
        let mut batch = RecvBatch::new();
        // Empty queue: WouldBlock, nothing to read.
        let err = batch.recv_fd(rx.as_raw_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(batch.get(0).is_none());
        // More than one call's worth, plus one too long for a slot.
        let total = RecvBatch::CAPACITY + 5;
        for i in 0..total {
            a.send_to(&(i as u32).to_be_bytes(), rx.local_addr().unwrap())
                .unwrap();
        }
        a.send_to(&vec![7u8; SLOT + 1], rx.local_addr().unwrap())
            .unwrap();
        let mut got = Vec::new();
        let mut dropped = 0;
        while got.len() + dropped < total + 1 {
            let n = batch.recv_fd(rx.as_raw_fd()).unwrap();
            assert!(n <= RecvBatch::CAPACITY);
            for i in 0..n {
                match batch.get(i) {
                    Some((d, from)) => {
                        assert_eq!(from, a.local_addr().unwrap());
                        got.push(u32::from_be_bytes(d.try_into().unwrap()));
                    }
                    None => dropped += 1,
                }
            }
        }
        assert_eq!(got, (0..total as u32).collect::<Vec<_>>());
        assert_eq!(dropped, 1, "the datagram longer than a slot is dropped");
        assert!(batch.get(RecvBatch::CAPACITY).is_none());
        // IPv6 sources parse too (where the machine has ::1).
        if let Some(b) = b.as_ref() {
            let r6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
            r6.set_nonblocking(true).unwrap();
            b.send_to(b"v6", r6.local_addr().unwrap()).unwrap();
            assert_eq!(batch.recv_fd(r6.as_raw_fd()).unwrap(), 1);
            assert_eq!(batch.get(0), Some((&b"v6"[..], b.local_addr().unwrap())));
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_drained_queue_clears_readiness_and_a_new_datagram_wakes_again() {
        let rx = media_socket(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.get_ref().local_addr().unwrap();
        let mut batch = RecvBatch::new();
        tx.send_to(b"one", to).unwrap();
        tx.send_to(b"two", to).unwrap();
        drop(rx.readable().await.unwrap());
        // Both datagrams in one call (loopback delivery is synchronous).
        assert_eq!(batch.recv(&rx).unwrap(), 2);
        assert_eq!(batch.get(1).map(|(d, _)| d), Some(&b"two"[..]));
        // Readiness was cleared by the short read: the next call makes no system call.
        let e = batch.recv(&rx).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // A later datagram raises readiness again.
        tx.send_to(b"three", to).unwrap();
        let ready = tokio::time::timeout(std::time::Duration::from_secs(2), rx.readable()).await;
        drop(ready.expect("readable after a new datagram").unwrap());
        assert_eq!(batch.recv(&rx).unwrap(), 1);
        assert_eq!(batch.get(0).map(|(d, _)| d), Some(&b"three"[..]));
    }
}
