//! One TCP connection as the loop keeps it: the socket, the bytes read and
//! not yet parsed, the bytes queued and not yet written, its timers and flags.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::net::CloseReason;
use crate::wire::{FrameLimit, FRAME_HEADER};

/// Most bytes read per `read` call; the buffer grows to hold one whole frame at most.
const READ_CHUNK: usize = 256 * 1024;
/// The most capacity a write buffer keeps once it has been empty for
/// `KEEP_IDLE`: one that held a chunk (up to 16 MiB) gives it back, so every
/// peer that was ever sent a chunk does not hold a chunk's worth of memory
/// for good. Not at once: a stream reuses it chunk after chunk (freed and
/// mapped again at each, 1 MiB chunks cost the seeder 37% more CPU, and
/// even when freed only once the handler has nothing more, 7%).
const KEEP_WBUF: usize = 64 * 1024;
pub(super) const KEEP_IDLE: Duration = Duration::from_secs(1);
/// First read size: a connection that sends small requests (or one byte at
/// a time) costs this much, not `READ_CHUNK`. Doubles on every read that
/// fills it, so a fast stream reaches `READ_CHUNK` within a few reads.
const FIRST_READ: usize = 4 * 1024;

pub(super) struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub limit: FrameLimit,
    /// `rbuf[..rlen]` holds bytes read and not yet parsed.
    pub rbuf: Vec<u8>,
    pub rlen: usize,
    /// Bytes the next `read` asks for.
    read_size: usize,
    /// False while the handler has paused reading (its answers wait unread).
    pub reading: bool,
    /// Reading was resumed: buffered frames and the socket are read at the
    /// end of the batch, since no readiness edge will come for bytes that
    /// were already waiting.
    pub resume: bool,
    /// `wbuf[wpos..]` holds bytes queued and not yet written...
    pub wbuf: Vec<u8>,
    pub wpos: usize,
    /// ... and after them these, in order (empty unless a shared answer was queued).
    pub later: VecDeque<Piece>,
    /// Bytes the kernel has taken from the queue since the connection opened.
    pub written: u64,
    /// Our side is shut down for writing (a lingering close); we read on until the peer closes.
    pub write_shut: bool,
    pub writable_interest: bool,
    pub connecting: bool,
    pub connect_deadline: Option<Instant>,
    pub idle: Option<Duration>,
    /// Last time a byte moved in either direction.
    pub last_active: Instant,
    /// Last time the kernel took bytes of the queue.
    pub last_written: Instant,
    pub want_drained: bool,
    /// Queued in `Net::dirty` for the end of the batch.
    pub dirty: bool,
    pub close_after_flush: bool,
    pub closing: Option<CloseReason>,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, limit: FrameLimit, now: Instant, writable: bool) -> Conn {
        Conn {
            stream,
            peer,
            limit,
            rbuf: Vec::new(),
            rlen: 0,
            read_size: FIRST_READ,
            reading: true,
            resume: false,
            wbuf: Vec::new(),
            wpos: 0,
            later: VecDeque::new(),
            written: 0,
            write_shut: false,
            writable_interest: writable,
            connecting: false,
            connect_deadline: None,
            idle: None,
            last_active: now,
            last_written: now,
            want_drained: false,
            dirty: false,
            close_after_flush: false,
            closing: None,
        }
    }

    /// One `read` into the free end of the buffer. The buffer only grows, one
    /// read's worth at a time (zero-filled once), up to one frame plus a read:
    /// a 1 MiB chunk stream settles near 1.25 MiB and a steady stream costs no memset.
    pub fn read_some(&mut self) -> io::Result<usize> {
        let max = self.limit.max() as usize;
        let cap = max + FRAME_HEADER + READ_CHUNK.min(max);
        if self.rbuf.len() - self.rlen < self.read_size.min(cap - self.rlen) {
            self.rbuf.resize((self.rlen + self.read_size).min(cap), 0);
        }
        let free = self.rbuf.get_mut(self.rlen..).unwrap_or(&mut []);
        let room = free.len();
        let n = self.stream.read(free)?;
        if n == room {
            self.read_size = (self.read_size * 2).min(READ_CHUNK);
        }
        self.rlen += n;
        Ok(n)
    }

    /// Where frames are appended: the write buffer, or behind a shared answer.
    pub fn out(&mut self) -> &mut Vec<u8> {
        if self.later.is_empty() {
            return &mut self.wbuf;
        }
        if !matches!(self.later.back(), Some(Piece::Owned(_))) {
            self.later.push_back(Piece::Owned(Vec::new()));
        }
        match self.later.back_mut() {
            Some(Piece::Owned(v)) => v,
            _ => &mut self.wbuf, // not reached: an owned piece was just ensured
        }
    }

    /// Queues an answer that other connections may be sending too: it is
    /// written from the one shared copy, piece by piece, never copied here.
    pub fn push_shared(&mut self, bytes: Rc<[u8]>) {
        self.later.push_back(Piece::Shared(bytes, 0));
    }

    /// Gives back a write buffer grown past `KEEP_WBUF` once the queue is
    /// empty and nothing was written for `KEEP_IDLE`.
    pub fn shrink_idle(&mut self, now: Instant) {
        let idle = now >= self.last_written + KEEP_IDLE;
        if idle && self.wpos == self.wbuf.len() && self.later.is_empty() && self.wbuf.capacity() > KEEP_WBUF {
            self.wbuf = Vec::new();
            self.wpos = 0;
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.wbuf.len() - self.wpos + self.later.iter().map(Piece::left).sum::<usize>()
    }

    /// Writes the queue until it is empty or the socket would block; returns
    /// the bytes written. A short write just advances the offset.
    pub fn flush(&mut self) -> io::Result<usize> {
        let mut written = self.flush_wbuf()?;
        while self.wpos == self.wbuf.len() {
            match self.later.pop_front() {
                None => break,
                Some(Piece::Owned(v)) => {
                    (self.wbuf, self.wpos) = (v, 0);
                    written += self.flush_wbuf()?;
                }
                Some(Piece::Shared(bytes, mut pos)) => {
                    let start = pos;
                    while pos < bytes.len() {
                        match self.stream.write(bytes.get(pos..).unwrap_or(&[])) {
                            Ok(0) => return Err(ErrorKind::WriteZero.into()),
                            Ok(n) => pos += n,
                            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                            Err(e) => {
                                written += pos - start;
                                self.written += (pos - start) as u64;
                                self.later.push_front(Piece::Shared(bytes, pos));
                                return if e.kind() == ErrorKind::WouldBlock { Ok(written) } else { Err(e) };
                            }
                        }
                    }
                    written += pos - start;
                    self.written += (pos - start) as u64;
                }
            }
        }
        Ok(written)
    }

    fn flush_wbuf(&mut self) -> io::Result<usize> {
        let start = self.wpos;
        while self.wpos < self.wbuf.len() {
            match self.stream.write(self.wbuf.get(self.wpos..).unwrap_or(&[])) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let written = self.wpos - start;
        self.written += written as u64;
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > self.wbuf.len() / 2 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(written)
    }

    /// When this connection's timer (connect or idle) fires.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.connect_deadline, self.idle) {
            (Some(d), _) => Some(d),
            (None, Some(idle)) => Some(self.last_active + idle),
            (None, None) => None,
        }
    }

    /// Why the connection must close by `now`, if a timer has fired.
    pub fn expired(&self, now: Instant) -> Option<CloseReason> {
        match self.deadline() {
            Some(d) if now >= d && self.connecting => Some(CloseReason::ConnectFailed(std::io::ErrorKind::TimedOut)),
            Some(d) if now >= d => Some(CloseReason::Idle),
            _ => None,
        }
    }
}

/// Bytes queued behind the write buffer.
pub(super) enum Piece {
    Owned(Vec<u8>),
    /// A shared answer and how much of it was written.
    Shared(Rc<[u8]>, usize),
}

impl Piece {
    fn left(&self) -> usize {
        match self {
            Piece::Owned(v) => v.len(),
            Piece::Shared(bytes, pos) => bytes.len() - pos,
        }
    }
}
