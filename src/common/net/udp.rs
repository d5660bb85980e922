//! The UDP side of the loop: datagrams taken and answered in batches. On
//! Linux one `recvmmsg` takes up to `BATCH` datagrams and one `sendmmsg`
//! sends their replies, so a busy tracker makes two system calls per batch
//! instead of two per datagram. Each datagram is still handed to the
//! handler on its own, in arrival order, and answered by its own datagram,
//! in the same order. Where the calls are missing (another OS, or `ENOSYS`)
//! it falls back to one `recv_from` and one `send_to` per datagram.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::net::UdpSocket;

use super::{Handler, Net, MAX_DATAGRAM};

/// Datagrams per system call.
const BATCH: usize = 32;

/// `BATCH` datagram buffers with their lengths and addresses.
pub(super) struct Slots {
    data: Vec<u8>,
    lens: Vec<usize>,
    /// None for a datagram whose source could not be read (it cannot be answered).
    addrs: Vec<Option<SocketAddr>>,
}

impl Slots {
    fn new() -> Slots {
        Slots { data: vec![0; BATCH * MAX_DATAGRAM], lens: vec![0; BATCH], addrs: vec![None; BATCH] }
    }

    fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let len = (*self.lens.get(i)?).min(MAX_DATAGRAM);
        Some(((*self.addrs.get(i)?)?, self.data.get(i * MAX_DATAGRAM..i * MAX_DATAGRAM + len)?))
    }
}

/// Buffers for one batch each way, and whether the batch calls work here.
pub(super) struct Udp {
    pub socket: UdpSocket,
    /// Taken out while the handler runs (it gets `&mut Net`).
    received: Option<Box<Slots>>,
    /// Replies queued during a batch, sent when it is done.
    replies: Box<Slots>,
    queued: usize,
    /// Replies go into `replies` (inside a batch) rather than straight out.
    batching: bool,
    batch_calls: bool,
}

impl Udp {
    pub fn new(socket: UdpSocket) -> Udp {
        Udp {
            socket,
            received: Some(Box::new(Slots::new())),
            replies: Box::new(Slots::new()),
            queued: 0,
            batching: false,
            batch_calls: cfg!(target_os = "linux"),
        }
    }
}

impl Net {
    /// Asks for a receive buffer of `bytes` on the UDP socket (the kernel caps
    /// it at `net.core.rmem_max`); returns what the kernel granted. A bigger
    /// queue rides out the moments the process is not running (a shared CPU,
    /// a page fault) instead of dropping what arrives meanwhile. The queue is
    /// the kernel's and capped by it: no client can grow it past that.
    pub fn set_udp_receive_buffer(&mut self, bytes: usize) -> io::Result<usize> {
        let Some(udp) = &self.udp else { return Err(ErrorKind::NotConnected.into()) };
        receive_buffer(&udp.socket, bytes)
    }

    /// Takes every waiting datagram (readiness is edge-triggered), a batch
    /// at a time: each handed to the handler in turn, then the batch's
    /// replies sent together.
    pub(super) fn read_datagrams<H: Handler>(&mut self, handler: &mut H, now: Instant) {
        let Some(udp) = &mut self.udp else { return };
        let Some(mut slots) = udp.received.take() else { return };
        udp.batching = true;
        while let Some(udp) = &mut self.udp {
            let n = match receive(udp, &mut slots) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ICMP errors from earlier sends surface here on Linux; keep reading.
                Err(e) => {
                    debug!("udp recv: {e}");
                    continue;
                }
            };
            for i in 0..n {
                if let Some((from, data)) = slots.get(i) {
                    self.traffic.udp_in += data.len() as u64;
                    handler.on_datagram(self, now, from, data);
                }
            }
            self.send_replies();
        }
        if let Some(udp) = &mut self.udp {
            udp.received = Some(slots);
            udp.batching = false;
        }
    }

    /// Sends a datagram (within a batch: queues it for the batch's send); a
    /// full socket buffer drops it (counted), never queues it for later.
    pub fn send_to(&mut self, to: SocketAddr, data: &[u8]) {
        let Some(udp) = &mut self.udp else { return };
        if udp.batching && data.len() <= MAX_DATAGRAM {
            if udp.queued == BATCH {
                self.send_replies();
            }
            let Some(udp) = &mut self.udp else { return };
            let i = udp.queued;
            let start = i * MAX_DATAGRAM;
            if let (Some(buf), Some(len), Some(addr)) = (
                udp.replies.data.get_mut(start..start + data.len()),
                udp.replies.lens.get_mut(i),
                udp.replies.addrs.get_mut(i),
            ) {
                buf.copy_from_slice(data);
                *len = data.len();
                self.traffic.udp_out += data.len() as u64;
                *addr = Some(to);
                udp.queued += 1;
            }
            return;
        }
        // Larger than a slot (no tracker reply is): after the queued ones, in order.
        self.send_replies();
        let Some(udp) = &mut self.udp else { return };
        match udp.socket.send_to(data, to) {
            Ok(n) => self.traffic.udp_out += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => self.udp_dropped += 1,
            Err(e) => debug!("udp send to {to}: {e}"),
        }
    }

    /// Sends the queued replies in order; those the socket has no room for are dropped.
    fn send_replies(&mut self) {
        let Some(udp) = &mut self.udp else { return };
        let count = std::mem::take(&mut udp.queued);
        let mut next = 0;
        while next < count {
            match send(udp, next, count) {
                Ok(sent) => next += sent.max(1),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.udp_dropped += (count - next) as u64;
                    return;
                }
                // That one reply failed (its address, say): skip it.
                Err(e) => {
                    debug!("udp send to {:?}: {e}", udp.replies.addrs.get(next));
                    next += 1;
                }
            }
        }
    }
}

#[cfg(unix)]
fn receive_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    super::set_socket_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes.try_into().unwrap_or(libc::c_int::MAX))?;
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid descriptor and an int option of the size given.
    let rc = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&mut got as *mut libc::c_int).cast(), &mut len)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(got).unwrap_or(0))
}

#[cfg(not(unix))]
fn receive_buffer(_socket: &UdpSocket, _bytes: usize) -> io::Result<usize> {
    Err(ErrorKind::Unsupported.into())
}

/// Fills `slots` from the socket; the number of datagrams taken.
fn receive(udp: &mut Udp, slots: &mut Slots) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if udp.batch_calls {
        match batch::receive(&udp.socket, slots) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => udp.batch_calls = false,
            other => return other,
        }
    }
    let (buf, len, addr) = match (slots.data.get_mut(..MAX_DATAGRAM), slots.lens.first_mut(), slots.addrs.first_mut()) {
        (Some(buf), Some(len), Some(addr)) => (buf, len, addr),
        _ => return Ok(0),
    };
    let (n, from) = udp.socket.recv_from(buf)?;
    (*len, *addr) = (n, Some(from));
    Ok(1)
}

/// Sends replies `from..to`; how many went (at least one, or an error for the first).
fn send(udp: &mut Udp, from: usize, to: usize) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if udp.batch_calls {
        match batch::send(&udp.socket, &udp.replies, from, to) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => udp.batch_calls = false,
            other => return other,
        }
    }
    let Some((addr, data)) = udp.replies.get(from) else { return Ok(1) };
    udp.socket.send_to(data, addr).map(|_| 1)
}

#[cfg(target_os = "linux")]
mod batch {
    //! `recvmmsg` and `sendmmsg` through libc.

    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use mio::net::UdpSocket;

    use super::{Slots, BATCH, MAX_DATAGRAM};

    pub fn receive(socket: &UdpSocket, slots: &mut Slots) -> io::Result<usize> {
        // SAFETY: plain C structs, for which all-zero bytes are a valid value.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let base = slots.data.as_mut_ptr();
        for (i, ((iov, msg), name)) in iovs.iter_mut().zip(msgs.iter_mut()).zip(names.iter_mut()).enumerate() {
            // SAFETY: `data` holds BATCH buffers of MAX_DATAGRAM bytes; slot i is in bounds.
            iov.iov_base = unsafe { base.add(i * MAX_DATAGRAM) }.cast();
            iov.iov_len = MAX_DATAGRAM;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            msg.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every header points at live buffers of the sizes given,
        // which outlive the call; the socket descriptor is valid.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (n as usize).min(BATCH);
        for ((msg, name), (len, addr)) in
            msgs.iter().zip(&names).zip(slots.lens.iter_mut().zip(&mut slots.addrs)).take(n)
        {
            (*len, *addr) = (msg.msg_len as usize, socket_addr(name));
        }
        Ok(n)
    }

    pub fn send(socket: &UdpSocket, slots: &Slots, from: usize, to: usize) -> io::Result<usize> {
        // SAFETY: plain C structs, for which all-zero bytes are a valid value.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut count = 0;
        for i in from..to.min(BATCH) {
            let Some((addr, data)) = slots.get(i) else { break };
            let (Some(iov), Some(msg), Some(name)) = (iovs.get_mut(count), msgs.get_mut(count), names.get_mut(count))
            else {
                break;
            };
            iov.iov_base = data.as_ptr() as *mut libc::c_void;
            iov.iov_len = data.len();
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_namelen = write_name(addr, name);
            msg.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        // SAFETY: every header points at live buffers of the sizes given
        // (only read by the kernel), which outlive the call.
        let n =
            unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), count as libc::c_uint, libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(name.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in for AF_INET; storage is larger and aligned for it.
                let sin = unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for AF_INET6 and sockaddr_in6.
                let sin6 = unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                let port = u16::from_be(sin6.sin6_port);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
            }
            _ => None,
        }
    }

    /// Writes `addr` as a C socket address; its length.
    fn write_name(addr: SocketAddr, name: &mut libc::sockaddr_storage) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: storage is larger than and aligned for sockaddr_in.
                let sin = unsafe { &mut *(name as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &mut *(name as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}
