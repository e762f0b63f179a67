//! Batched UDP sends. One inbound packet fans out to every subscriber of its track; queueing those
//! datagrams and handing them to the kernel with one `sendmmsg(2)` saves a system call (entry,
//! socket lookup, return to user space) per subscriber. Non-blocking, never waits: a full socket
//! buffer drops what did not fit, exactly like a failed `sendto`.

use bytes::Bytes;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Datagrams per `sendmmsg` call (Linux's UIO_MAXIOV bound is 1024).
const MAX_PER_CALL: usize = 256;

/// Queued datagrams plus the scratch arrays `sendmmsg` needs, kept between calls so a send
/// allocates nothing in steady state.
#[derive(Default)]
pub struct SendBatch {
    queue: Vec<(SocketAddr, Bytes)>,
    addrs: Vec<socket2::SockAddr>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovs`/`hdrs` are only set and used inside `send`, pointing at data
// owned by this struct for the duration of that call; between calls they are stale and unused.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub fn push(&mut self, to: SocketAddr, data: Bytes) {
        self.queue.push((to, data));
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Send everything queued on `fd` (non-blocking). Returns (sent, failed).
    pub fn send(&mut self, fd: RawFd) -> (usize, usize) {
        let (mut sent, mut failed) = (0, 0);
        let mut start = 0;
        while start < self.queue.len() {
            let end = (start + MAX_PER_CALL).min(self.queue.len());
            self.addrs.clear();
            self.iovs.clear();
            self.hdrs.clear();
            for (to, data) in &self.queue[start..end] {
                self.addrs.push(socket2::SockAddr::from(*to));
                self.iovs.push(libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                });
            }
            for i in 0..self.iovs.len() {
                // SAFETY: all-zero is a valid msghdr; the pointers set below stay valid until
                // sendmmsg returns (addrs/iovs/queue are not touched in between).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = self.addrs[i].as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = self.addrs[i].len();
                h.msg_hdr.msg_iov = &mut self.iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                self.hdrs.push(h);
            }
            let mut off = 0;
            while off < self.hdrs.len() {
                let n = self.hdrs.len() - off;
                // SAFETY: hdrs[off..] are initialised mmsghdrs pointing at live buffers.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.hdrs.as_mut_ptr().add(off),
                        n as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r > 0 {
                    sent += r as usize;
                    off += r as usize;
                    continue;
                }
                let err = std::io::Error::last_os_error();
                if r == 0 || err.kind() == std::io::ErrorKind::WouldBlock {
                    // Socket buffer full: drop the rest of this chunk (congestion).
                    failed += n;
                    break;
                }
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // This datagram was refused (e.g. unreachable destination): skip it.
                failed += 1;
                off += 1;
            }
            start = end;
        }
        self.queue.clear();
        (sent, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn sends_every_queued_datagram_to_its_destination() {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut b = SendBatch::default();
        // More than one sendmmsg call's worth, spread over three receivers.
        let total = MAX_PER_CALL + 10;
        for i in 0..total {
            let d = Bytes::copy_from_slice(&(i as u32).to_be_bytes());
            b.push(rx[i % 3].local_addr().unwrap(), d);
        }
        assert_eq!(b.send(tx.as_raw_fd()), (total, 0));
        assert!(b.is_empty());
        let mut buf = [0u8; 16];
        for (k, r) in rx.iter().enumerate() {
            r.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let mut i = k;
            while i < total {
                let (n, from) = r.recv_from(&mut buf).unwrap();
                assert_eq!(from, tx.local_addr().unwrap());
                assert_eq!(&buf[..n], &(i as u32).to_be_bytes());
                i += 3;
            }
        }
        // Nothing queued: no call, nothing counted.
        assert_eq!(b.send(tx.as_raw_fd()), (0, 0));
    }

    #[test]
    fn a_refused_datagram_does_not_stop_the_rest() {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut b = SendBatch::default();
        // An IPv6 destination on an IPv4 socket is refused (EAFNOSUPPORT/EINVAL).
        b.push("[::1]:9".parse().unwrap(), Bytes::from_static(b"x"));
        b.push(rx.local_addr().unwrap(), Bytes::from_static(b"ok"));
        assert_eq!(b.send(tx.as_raw_fd()), (1, 1));
        let mut buf = [0u8; 8];
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let (n, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ok");
    }
}
