//! The one mio loop all three roles run in. `Net` owns the `Poll`, the
//! listeners, the UDP socket and a slab of TCP connections; it moves bytes
//! and frames and knows no protocol. A role plugs in as a [`Handler`], a thin
//! adapter that feeds its sans-IO core and turns the core's outputs into
//! calls on `Net` (send, connect, close).

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::Conn;
use super::signal::Stop;

use crate::wire::{DecodeError, Frame, FrameLimit};

/// A connection's name: its slab key. Cores never see a `mio::Token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

const UDP: Token = Token(0);
const FIRST_LISTENER: usize = 1;
const FIRST_CONN: usize = 16;
/// The stop signals' pipe, after the listeners.
const SIGNALS: Token = Token(FIRST_CONN - 1);
/// How long every role waits for a TCP connect (peer or catalog) to complete.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection's handler is asked for more while fewer bytes than this
/// wait in its queue. Small: bytes queued here are bytes whose sending can
/// no longer be cancelled, and a Have or State waits behind them; the
/// kernel's socket buffer keeps a fast stream going between refills.
pub const LOW_WATER: usize = 256 * 1024;
/// Bytes the kernel may hold unsent per socket (`TCP_NOTSENT_LOWAT`).
/// Without a cap its send buffer grows to megabytes per connection: chunks
/// already committed that a Cancel cannot stop, Haves and States stuck
/// behind them, seconds of queue at a 20 MiB/s uplink shared by 8 peers.
const UNSENT: libc::c_int = 256 * 1024;
/// After an accept fails for want of descriptors (EMFILE, ENFILE), the
/// listeners are tried again this often: the connections wait in the
/// kernel's backlog, and no readiness edge comes for them.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Largest UDP datagram we accept or send.
const MAX_DATAGRAM: usize = 4096;

/// Bytes moved, for /metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub udp_in: u64,
    pub udp_out: u64,
    pub tcp_in: u64,
    pub tcp_out: u64,
}

/// True when a peer listening on `listen` cannot be reached by the others
/// that `tracker` hands its address to: it listens on loopback only, but the
/// tracker is on another host (and so hands out this host's network address).
pub fn loopback_only(listen: SocketAddr, tracker: SocketAddr) -> bool {
    listen.ip().is_loopback() && !tracker.ip().is_loopback()
}

/// The warning for [`loopback_only`].
pub fn loopback_warning(listen: SocketAddr, tracker: SocketAddr) -> String {
    format!(
        "LISTENING ON LOOPBACK ONLY ({listen}) BUT THE TRACKER {tracker} IS ON ANOTHER HOST: no peer can connect here; \
         use --listen 0.0.0.0:{} (or this host's address)",
        listen.port()
    )
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We closed it (asked by the handler).
    Local,
    /// The peer closed it (EOF) or reset it.
    Remote,
    /// Dialling failed (refused, unreachable, ...) or did not complete in time (`TimedOut`).
    ConnectFailed(std::io::ErrorKind),
    /// The peer sent bytes that are not a valid frame.
    Malformed(DecodeError),
    /// Nothing was received for the connection's idle timeout.
    Idle,
}

/// The role-specific side of the loop. Every callback gets the same `now`
/// within one wake-up. A handler reacts by calling `Net` methods.
pub trait Handler {
    /// A listener accepted `conn`.
    fn on_accept(&mut self, _net: &mut Net, _now: Instant, _conn: ConnId) {}
    /// A connection we dialled is established.
    fn on_connected(&mut self, _net: &mut Net, _now: Instant, _conn: ConnId) {}
    /// A complete frame arrived. An error closes the connection as malformed.
    fn on_frame(&mut self, net: &mut Net, now: Instant, conn: ConnId, frame: Frame<'_>) -> Result<(), DecodeError>;
    /// Bytes of a connection that does not speak frames (the tracker's
    /// HTTP face), or of a frame the handler takes as it arrives rather
    /// than whole (a peer's Chunk frame), offered before each frame is
    /// split: `Some(n)` consumes
    /// the first `n` bytes of `buf` (`Some(0)`: wait for more), `None`
    /// splits a frame as usual.
    fn on_bytes(&mut self, _net: &mut Net, _now: Instant, _conn: ConnId, _buf: &[u8]) -> Option<usize> {
        None
    }
    /// A read left `buffered` bytes of an unfinished frame (or, once the
    /// handler paused reading, of unread frames). The handler may pause
    /// reading here, before the next read.
    fn on_read(&mut self, _net: &mut Net, _now: Instant, _conn: ConnId, _buffered: usize) {}
    /// An accept failed for want of file descriptors. A handler may close a
    /// connection to make room and return true: the listeners are tried
    /// again as soon as it is closed (else after `ACCEPT_RETRY`).
    fn on_descriptors_exhausted(&mut self, _net: &mut Net, _now: Instant) -> bool {
        false
    }
    /// The connection's write queue fell below the low-water mark (only for
    /// connections that asked with [`Net::want_drained`]).
    fn on_drained(&mut self, _net: &mut Net, _now: Instant, _conn: ConnId) {}
    /// The kernel took more of the connection's queue: `written` bytes in
    /// all since it opened (compare with [`Net::queued_through`]).
    fn on_written(&mut self, _net: &mut Net, _now: Instant, _conn: ConnId, _written: u64) {}
    /// The connection is gone; its id may be reused after this call.
    fn on_closed(&mut self, _net: &mut Net, _now: Instant, _conn: ConnId, _reason: CloseReason) {}
    /// A datagram arrived on the UDP socket.
    fn on_datagram(&mut self, _net: &mut Net, _now: Instant, _from: SocketAddr, _data: &[u8]) {}
    /// Called on every wake-up after the events; fire the core's expired timers.
    fn on_tick(&mut self, net: &mut Net, now: Instant);
    /// The next instant the handler must be woken, if any.
    fn next_deadline(&self) -> Option<Instant>;
    /// True once the role is finished and the loop should return.
    fn done(&self) -> bool {
        false
    }
}

/// The sockets of one role and the buffers that move their bytes.
pub struct Net {
    poll: Poll,
    udp: Option<udp::Udp>,
    listeners: Vec<TcpListener>,
    conns: Slab<Conn>,
    /// Connections touched in this batch that may need a flush.
    dirty: Vec<ConnId>,
    /// Handlers are asked for more while fewer bytes wait (`LOW_WATER`).
    low_water: usize,
    /// When to try the listeners again after running out of descriptors.
    accept_retry: Option<Instant>,
    /// Accept has been failing since this was set.
    accept_failing: bool,
    /// Times accept started failing (out of descriptors or memory); the
    /// first is a warning, the rest are logged at debug.
    pub accept_failures: u64,
    /// Datagram replies that met `WouldBlock` and were dropped.
    pub udp_dropped: u64,
    /// Bytes received and sent over UDP and TCP.
    pub traffic: Traffic,
    stop: Option<Stop>,
    /// Connections closed after their flush shut down their write side and
    /// wait for the peer to close (see [`Net::linger_on_close`]).
    linger: bool,
}

impl Net {
    pub fn new() -> io::Result<Net> {
        Ok(Net {
            poll: Poll::new()?,
            udp: None,
            listeners: Vec::new(),
            conns: Slab::new(),
            dirty: Vec::new(),
            low_water: LOW_WATER,
            accept_retry: None,
            accept_failing: false,
            accept_failures: 0,
            udp_dropped: 0,
            traffic: Traffic::default(),
            stop: None,
            linger: false,
        })
    }

    /// Wakes the loop on SIGINT and SIGTERM; see [`Net::stop_signal`].
    pub fn catch_signals(&mut self) -> io::Result<()> {
        self.stop = Some(Stop::register(self.poll.registry(), SIGNALS)?);
        Ok(())
    }

    /// The first SIGINT or SIGTERM received, once the loop has woken for it.
    pub fn stop_signal(&self) -> Option<i32> {
        self.stop.as_ref().and_then(Stop::received)
    }

    /// Binds the UDP socket (one per role at most).
    pub fn bind_udp(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let mut sock = UdpSocket::bind(addr)?;
        self.poll.registry().register(&mut sock, UDP, Interest::READABLE)?;
        let local = sock.local_addr()?;
        self.udp = Some(udp::Udp::new(sock));
        Ok(local)
    }

    /// Binds the UDP socket on an ephemeral port of `peer`'s address family,
    /// for a role that talks to one tracker.
    pub fn bind_udp_towards(&mut self, peer: SocketAddr) -> io::Result<SocketAddr> {
        let any = match peer {
            SocketAddr::V4(_) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
        };
        self.bind_udp(any)
    }

    /// Binds a TCP listener; accepted connections get the frame limit given to [`Net::run`].
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let mut l = TcpListener::bind(addr)?;
        let token = Token(FIRST_LISTENER + self.listeners.len());
        self.poll.registry().register(&mut l, token, Interest::READABLE)?;
        let local = l.local_addr()?;
        self.listeners.push(l);
        Ok(local)
    }

    /// Starts a non-blocking connect. `on_connected` or `on_closed(ConnectFailed)` follows;
    /// after `timeout`, if given (a core that arms its own dial deadline gives none).
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        max_frame: u32,
        now: Instant,
        timeout: Option<Duration>,
    ) -> io::Result<ConnId> {
        let stream = TcpStream::connect(addr)?;
        let id = self.insert(stream, addr, max_frame.into(), now, Interest::WRITABLE)?;
        if let Some(c) = self.conns.get_mut(id.0) {
            c.connecting = true;
            c.writable_interest = true;
            c.connect_deadline = timeout.map(|t| now + t);
        }
        Ok(id)
    }

    /// Sets the receive idle timeout of a connection.
    pub fn set_idle(&mut self, conn: ConnId, idle: Option<Duration>) {
        if let Some(c) = self.conns.get_mut(conn.0) {
            c.idle = idle;
        }
    }

    /// The connection's write queue, to append encoded frames to.
    /// `None` for an unknown or closing connection.
    pub fn out(&mut self, conn: ConnId) -> Option<&mut Vec<u8>> {
        let c = self.conns.get_mut(conn.0)?;
        if c.closing.is_some() || c.write_shut {
            return None;
        }
        if !std::mem::replace(&mut c.dirty, true) {
            self.dirty.push(conn);
        }
        Some(c.out())
    }

    /// Queues an answer shared with other connections: written from the
    /// one copy in pieces, whatever the number of connections sending it.
    pub fn send_shared(&mut self, conn: ConnId, bytes: std::rc::Rc<[u8]>) {
        let Some(c) = self.conns.get_mut(conn.0).filter(|c| c.closing.is_none()) else { return };
        c.push_shared(bytes);
        self.mark_dirty(conn);
    }

    /// Pauses or resumes reading `conn`. While paused, its frames stay
    /// unread in its buffer and in the kernel, so a client that sends
    /// requests faster than it takes the answers is slowed by TCP itself.
    pub fn set_reading(&mut self, conn: ConnId, reading: bool) {
        let Some(c) = self.conns.get_mut(conn.0) else { return };
        let resume = reading && !c.reading;
        c.reading = reading;
        if resume {
            c.resume = true;
            self.mark_dirty(conn);
        }
    }

    /// From now on a connection closed after its flush is not closed at
    /// once: its write side is shut down (a FIN after the last byte) and it
    /// is read until the peer closes, so the peer gets every byte and we
    /// never reset it with its requests unread. For a role that is leaving:
    /// it bounds the wait itself (the connections' idle timers still run).
    pub fn linger_on_close(&mut self) {
        self.linger = true;
    }

    /// The stream offset just past the last byte queued on `conn`: bytes
    /// the kernel took plus bytes waiting.
    pub fn queued_through(&self, conn: ConnId) -> u64 {
        self.conns.get(conn.0).map_or(0, |c| c.written + c.queued() as u64)
    }

    /// Sets the largest frame (or, for a connection read through
    /// `on_bytes`, the most bytes it may buffer unconsumed) of `conn`.
    pub fn set_limit(&mut self, conn: ConnId, limit: FrameLimit) {
        if let Some(c) = self.conns.get_mut(conn.0) {
            c.limit = limit;
        }
    }

    /// The largest frame `conn` takes (see [`Net::set_limit`]).
    pub fn limit(&self, conn: ConnId) -> Option<u32> {
        self.conns.get(conn.0).map(|c| c.limit.max())
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self, conn: ConnId) -> usize {
        self.conns.get(conn.0).map_or(0, Conn::queued)
    }

    /// Asks for `on_drained` calls whenever the write queue is below the low-water mark.
    pub fn want_drained(&mut self, conn: ConnId, want: bool) {
        if let Some(c) = self.conns.get_mut(conn.0) {
            c.want_drained = want;
        }
        self.mark_dirty(conn);
    }

    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.get(conn.0).map(|c| c.peer)
    }

    /// Closes once the write queue is flushed (e.g. after an `Unavailable` state).
    pub fn close_after_flush(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn.0) {
            c.close_after_flush = true;
        }
        self.mark_dirty(conn);
    }

    /// Closes now; queued bytes are discarded. `on_closed(Local)` follows at the end of the batch.
    pub fn close(&mut self, conn: ConnId) {
        self.mark_closing(conn, CloseReason::Local);
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn mark_closing(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(c) = self.conns.get_mut(conn.0) {
            if c.closing.is_none() {
                c.closing = Some(reason);
            }
        }
        self.mark_dirty(conn);
    }

    /// Queues the connection once for the end-of-batch flush.
    fn mark_dirty(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn.0) {
            if !std::mem::replace(&mut c.dirty, true) {
                self.dirty.push(conn);
            }
        }
    }

    fn insert(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        limit: FrameLimit,
        now: Instant,
        interest: Interest,
    ) -> io::Result<ConnId> {
        let entry = self.conns.vacant_entry();
        let id = ConnId(entry.key());
        self.poll.registry().register(&mut stream, Token(FIRST_CONN + id.0), interest)?;
        let _ = stream.set_nodelay(true);
        limit_unsent(&stream);
        entry.insert(Conn::new(stream, peer, limit, now, interest.is_writable()));
        Ok(id)
    }

    /// Runs the loop until the handler is done. Returns on a poll failure only.
    pub fn run<H: Handler>(&mut self, handler: &mut H, accept_limit: impl Into<FrameLimit>) -> io::Result<()> {
        let accept_limit = accept_limit.into();
        let mut events = Events::with_capacity(256);
        while !handler.done() {
            let timeout = self.poll_timeout(handler.next_deadline(), Instant::now());
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    let now = Instant::now();
                    handler.on_tick(self, now);
                    self.finish_batch(handler, now);
                    continue;
                }
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    UDP => self.read_datagrams(handler, now),
                    SIGNALS => self.stop.iter_mut().for_each(Stop::on_event),
                    Token(t) if t < FIRST_CONN => self.accept(handler, now, t - FIRST_LISTENER, accept_limit),
                    Token(t) => self.conn_event(handler, now, ConnId(t - FIRST_CONN), event),
                }
            }
            if self.accept_retry.is_some_and(|at| now >= at) {
                self.accept_retry = None;
                for index in 0..self.listeners.len() {
                    self.accept(handler, now, index, accept_limit);
                }
            }
            self.check_deadlines(now);
            handler.on_tick(self, now);
            self.finish_batch(handler, now);
        }
        Ok(())
    }

    fn poll_timeout(&self, handler_deadline: Option<Instant>, now: Instant) -> Option<Duration> {
        let conn_deadline = self.conns.iter().filter_map(|(_, c)| c.deadline()).min();
        let deadline = [handler_deadline, conn_deadline, self.accept_retry].into_iter().flatten().min();
        // Round up to whole milliseconds so we never wake just before a deadline.
        deadline.map(|d| d.saturating_duration_since(now) + Duration::from_micros(999))
    }

    fn accept<H: Handler>(&mut self, handler: &mut H, now: Instant, index: usize, limit: FrameLimit) {
        loop {
            let Some(listener) = self.listeners.get(index) else { return };
            match listener.accept() {
                Ok((stream, peer)) => match self.insert(stream, peer, limit, now, Interest::READABLE) {
                    Ok(id) => {
                        debug!("{id} {peer}: accepted");
                        handler.on_accept(self, now, id);
                    }
                    Err(e) => debug!("register {peer}: {e}"),
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if std::mem::take(&mut self.accept_failing) {
                        debug!("accept: the waiting connections are all taken again");
                    }
                    return;
                }
                // Interrupted, or a client that reset before we took it: go on.
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::ConnectionAborted) => continue,
                // Out of descriptors or memory: the rest waits in the backlog,
                // and without a retry it would wait for ever (no new edge).
                Err(e) => {
                    if !std::mem::replace(&mut self.accept_failing, true) {
                        self.accept_failures += 1;
                        match self.accept_failures {
                            1 => warn!("accept: {e}; waiting connections are taken as descriptors free up"),
                            n => debug!("accept: {e} ({n} times so far)"),
                        }
                    }
                    let made_room = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                        && handler.on_descriptors_exhausted(self, now);
                    self.accept_retry = Some(if made_room { now } else { now + ACCEPT_RETRY });
                    return;
                }
            }
        }
    }

    fn conn_event<H: Handler>(&mut self, handler: &mut H, now: Instant, id: ConnId, event: &mio::event::Event) {
        // Sporadic events for a closed (or reused) slot are ignored.
        let Some(c) = self.conns.get_mut(id.0) else { return };
        if c.closing.is_some() {
            return;
        }
        if c.connecting {
            if !event.is_writable() && !event.is_error() && !event.is_write_closed() {
                return;
            }
            let failed = match c.stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e.kind()),
                Ok(None) => c.stream.peer_addr().err().map(|e| e.kind()),
            };
            if let Some(kind) = failed {
                self.mark_closing(id, CloseReason::ConnectFailed(kind));
                return;
            }
            c.connecting = false;
            c.connect_deadline = None;
            c.last_active = now;
            self.mark_dirty(id);
            handler.on_connected(self, now, id);
        }
        if event.is_readable() || event.is_read_closed() {
            self.read_conn(handler, now, id);
        }
        if event.is_writable() {
            self.mark_dirty(id);
        }
    }

    fn check_deadlines(&mut self, now: Instant) {
        let expired: Vec<(ConnId, CloseReason)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.closing.is_none())
            .filter_map(|(k, c)| c.expired(now).map(|reason| (ConnId(k), reason)))
            .collect();
        for (id, reason) in expired {
            self.mark_closing(id, reason);
        }
        // The same scan gives back what idle write buffers grew to (a chunk).
        for (_, c) in self.conns.iter_mut() {
            c.shrink_idle(now);
        }
    }
}

/// Caps the kernel's unsent bytes on `stream` (Linux; elsewhere a no-op).
fn limit_unsent(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Err(e) = set_socket_option(stream.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, UNSENT) {
            debug!("TCP_NOTSENT_LOWAT: {e}");
        }
    }
}

/// Sets an int-valued socket option (`setsockopt`).
#[cfg(unix)]
pub fn set_socket_option(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a pointer to a c_int of the size given; a bad descriptor is an error, not UB.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

mod read;
#[cfg(test)]
mod tests;
mod udp;
mod write;
