//! Loop tests on real loopback sockets: the write pump (issue 9's lost
//! wake-up) and pausing and resuming reads.

use super::*;
use std::io::{Read, Write};

/// Feeds `feeds` answers of `size` bytes, one per `on_drained`.
struct Feeder {
    conn: Option<ConnId>,
    size: usize,
    feeds: usize,
    asked: usize,
}

impl Handler for Feeder {
    fn on_accept(&mut self, net: &mut Net, _now: Instant, conn: ConnId) {
        self.conn = Some(conn);
        net.want_drained(conn, true);
        if let Some(out) = net.out(conn) {
            out.resize(self.size, 1);
        }
    }
    fn on_frame(&mut self, _: &mut Net, _: Instant, _: ConnId, _: Frame<'_>) -> Result<(), DecodeError> {
        Ok(())
    }
    fn on_drained(&mut self, net: &mut Net, _now: Instant, conn: ConnId) {
        self.asked += 1;
        if self.feeds > 0 {
            self.feeds -= 1;
            if let Some(out) = net.out(conn) {
                out.resize(out.len() + self.size, 2);
            }
        }
    }
    fn on_tick(&mut self, _: &mut Net, _: Instant) {}
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

/// Finding 9 of issue 9: a queue that starts a pass above the low-water
/// mark and is emptied by one write must still ask the handler for the
/// next answer. The old pump stopped there (nothing fed this pass),
/// dropped write interest with nothing queued, and never asked again.
#[test]
fn emptied_queue_still_asks_for_more() {
    let mut net = Net::new().unwrap();
    net.low_water = 8; // a 100-byte answer is above it; one write empties it
    let addr = net.listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    let mut feeder = Feeder { conn: None, size: 100, feeds: 3, asked: 0 };
    let now = Instant::now();
    net.accept(&mut feeder, now, 0, FrameLimit::Any(64));
    let conn = feeder.conn.expect("accepted");
    net.finish_batch(&mut feeder, now);

    assert_eq!(feeder.feeds, 0, "the handler was asked for every answer");
    assert_eq!(feeder.asked, 4, "three answers, then asked once more and had none");
    let c = net.conns.get(conn.0).unwrap();
    assert_eq!(c.wbuf.len() - c.wpos, 0);
    assert!(!c.writable_interest, "no WRITABLE interest with nothing queued");
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = vec![0u8; 400];
    client.read_exact(&mut got).unwrap();
    assert!(got[..100].iter().all(|&b| b == 1) && got[100..].iter().all(|&b| b == 2));
}

/// A write buffer that a large answer grew (a chunk) keeps its capacity
/// while answers follow, and gives it back once empty for KEEP_IDLE.
#[test]
fn an_idle_write_buffer_gives_back_what_a_large_answer_grew_it_to() {
    use crate::common::conn::KEEP_IDLE;
    let mut net = Net::new().unwrap();
    let addr = net.listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    let mut feeder = Feeder { conn: None, size: 200_000, feeds: 0, asked: 0 };
    let now = Instant::now();
    net.accept(&mut feeder, now, 0, FrameLimit::Any(64));
    let conn = feeder.conn.expect("accepted");
    net.finish_batch(&mut feeder, now);
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.read_exact(&mut vec![0u8; 200_000]).unwrap();
    let capacity = |net: &Net| net.conns.get(conn.0).unwrap().wbuf.capacity();
    for _ in 0..100 {
        if net.conns.get(conn.0).unwrap().queued() == 0 {
            break;
        }
        net.mark_dirty(conn);
        net.finish_batch(&mut feeder, now);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(capacity(&net) >= 200_000, "kept while it may be reused");
    net.check_deadlines(now + KEEP_IDLE - Duration::from_millis(1));
    assert!(capacity(&net) >= 200_000, "one tick before KEEP_IDLE");
    net.check_deadlines(now + KEEP_IDLE);
    assert_eq!(capacity(&net), 0, "given back once idle");
}

/// A handler that feeds only an empty queue (the tracker resumes reading
/// a client once its answers are taken) is asked again after a write
/// that empties the queue, even though it declined earlier in the pass.
#[test]
fn asked_again_after_the_write_that_empties_the_queue() {
    struct EmptyOnly {
        conn: Option<ConnId>,
        fed: usize,
    }
    impl Handler for EmptyOnly {
        fn on_accept(&mut self, net: &mut Net, _: Instant, conn: ConnId) {
            self.conn = Some(conn);
            net.want_drained(conn, true);
            if let Some(out) = net.out(conn) {
                out.resize(600, 1);
            }
        }
        fn on_frame(&mut self, _: &mut Net, _: Instant, _: ConnId, _: Frame<'_>) -> Result<(), DecodeError> {
            Ok(())
        }
        fn on_drained(&mut self, net: &mut Net, _: Instant, conn: ConnId) {
            if net.queued(conn) == 0 && self.fed < 2 {
                self.fed += 1;
                if let Some(out) = net.out(conn) {
                    out.resize(600, 2);
                }
            }
        }
        fn on_tick(&mut self, _: &mut Net, _: Instant) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
    }
    let mut net = Net::new().unwrap();
    net.low_water = 1000; // 600 queued: asked, declines, then one write empties it
    let addr = net.listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let _client = std::net::TcpStream::connect(addr).unwrap();
    let mut handler = EmptyOnly { conn: None, fed: 0 };
    let now = Instant::now();
    net.accept(&mut handler, now, 0, FrameLimit::Any(64));
    net.finish_batch(&mut handler, now);
    assert_eq!(handler.fed, 2, "asked again once the queue was empty");
    let c = net.conns.get(handler.conn.unwrap().0).unwrap();
    assert!(c.wbuf.len() == c.wpos && !c.writable_interest);
}

/// A paused connection's frames wait; resuming hands them over at the
/// end of the batch without a new readiness edge.
#[test]
fn paused_reading_resumes_without_an_edge() {
    struct Pauser {
        conn: Option<ConnId>,
        frames: usize,
    }
    impl Handler for Pauser {
        fn on_accept(&mut self, _: &mut Net, _: Instant, conn: ConnId) {
            self.conn = Some(conn);
        }
        fn on_frame(&mut self, net: &mut Net, _: Instant, c: ConnId, _: Frame<'_>) -> Result<(), DecodeError> {
            self.frames += 1;
            net.set_reading(c, false);
            Ok(())
        }
        fn on_tick(&mut self, _: &mut Net, _: Instant) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
    }
    use std::io::Write as _;
    let mut net = Net::new().unwrap();
    let addr = net.listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    let mut pauser = Pauser { conn: None, frames: 0 };
    let now = Instant::now();
    net.accept(&mut pauser, now, 0, FrameLimit::Any(64));
    let conn = pauser.conn.unwrap();
    client.write_all(&[0, 0, 0, 1, 7, 0, 0, 0, 1, 7, 0, 0, 0, 1, 7]).unwrap();
    let mut events = Events::with_capacity(8);
    while pauser.frames == 0 {
        net.poll.poll(&mut events, Some(Duration::from_secs(5))).unwrap();
        net.read_conn(&mut pauser, now, conn);
    }
    assert_eq!(pauser.frames, 1, "paused after the first frame");
    net.finish_batch(&mut pauser, now);
    assert_eq!(pauser.frames, 1);
    for expected in [2, 3] {
        net.set_reading(conn, true);
        net.finish_batch(&mut pauser, now);
        assert_eq!(pauser.frames, expected);
    }
}

/// A close after the flush asked while the handler still feeds the queue
/// (the rest of a frame) waits until the handler has nothing more, even when
/// the kernel takes each answer whole at once.
#[test]
fn a_close_after_flush_waits_for_what_the_handler_still_feeds() {
    let mut net = Net::new().unwrap();
    net.low_water = 8;
    let addr = net.listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    let mut feeder = Feeder { conn: None, size: 100, feeds: 3, asked: 0 };
    let now = Instant::now();
    net.accept(&mut feeder, now, 0, FrameLimit::Any(64));
    net.close_after_flush(feeder.conn.expect("accepted"));
    net.finish_batch(&mut feeder, now);
    assert_eq!(feeder.feeds, 0, "every answer was asked for before the close");
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 400, "the first answer and the three fed after it, then EOF");
}

/// A lingering close: the queue is flushed, the peer reads every byte and
/// then EOF, and the connection stays (reading) until the peer closes; the
/// handler is told each time the kernel takes bytes, in stream offsets.
#[test]
fn a_lingering_close_delivers_everything_and_waits_for_the_peer() {
    struct Closer {
        conn: Option<ConnId>,
        written: u64,
        closed: bool,
    }
    impl Handler for Closer {
        fn on_accept(&mut self, net: &mut Net, _: Instant, conn: ConnId) {
            self.conn = Some(conn);
            if let Some(out) = net.out(conn) {
                out.resize(3000, 5);
            }
            net.close_after_flush(conn);
        }
        fn on_frame(&mut self, _: &mut Net, _: Instant, _: ConnId, _: Frame<'_>) -> Result<(), DecodeError> {
            Ok(())
        }
        fn on_written(&mut self, _: &mut Net, _: Instant, _: ConnId, written: u64) {
            self.written = written;
        }
        fn on_closed(&mut self, _: &mut Net, _: Instant, _: ConnId, _: CloseReason) {
            self.closed = true;
        }
        fn on_tick(&mut self, _: &mut Net, _: Instant) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
    }
    let mut net = Net::new().unwrap();
    net.linger_on_close();
    let addr = net.listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    let mut handler = Closer { conn: None, written: 0, closed: false };
    let now = Instant::now();
    net.accept(&mut handler, now, 0, FrameLimit::Any(64));
    let conn = handler.conn.unwrap();
    assert_eq!(net.queued_through(conn), 3000);
    net.finish_batch(&mut handler, now);
    assert_eq!(handler.written, 3000, "told when the kernel took the queue");
    assert!(!handler.closed && net.connection_count() == 1, "kept until the peer closes");
    assert!(net.out(conn).is_none(), "nothing more is queued after the write side is shut");
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, vec![5u8; 3000], "every byte, then EOF");
    drop(client);
    let mut events = Events::with_capacity(8);
    for _ in 0..100 {
        if handler.closed {
            break;
        }
        net.poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
        net.read_conn(&mut handler, now, conn);
        net.finish_batch(&mut handler, now);
    }
    assert!(handler.closed, "closed once the peer closed");
    assert_eq!(net.connection_count(), 0);
}

/// A handler that takes a connection's bytes itself (`on_bytes`, as the
/// tracker's HTTP side does) gets them unframed, consumes what it says, and
/// is offered the rest again; a connection it declines is split into frames.
#[test]
fn unframed_bytes_go_to_the_handler() {
    struct Lines {
        lines: Vec<Vec<u8>>,
        frames: usize,
    }
    impl Handler for Lines {
        fn on_bytes(&mut self, _: &mut Net, _: Instant, _: ConnId, buf: &[u8]) -> Option<usize> {
            if buf.first().is_some_and(|&b| b < b'A') {
                return None; // a frame
            }
            let end = buf.iter().position(|&b| b == b'\n')? + 1;
            self.lines.push(buf[..end].to_vec());
            Some(end)
        }
        fn on_frame(&mut self, _: &mut Net, _: Instant, _: ConnId, _: Frame<'_>) -> Result<(), DecodeError> {
            self.frames += 1;
            Ok(())
        }
        fn on_tick(&mut self, _: &mut Net, _: Instant) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
    }
    let mut net = Net::new().unwrap();
    let addr = net.listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut text = std::net::TcpStream::connect(addr).unwrap();
    let mut framed = std::net::TcpStream::connect(addr).unwrap();
    let mut h = Lines { lines: Vec::new(), frames: 0 };
    let now = Instant::now();
    net.accept(&mut h, now, 0, FrameLimit::Any(64));
    text.write_all(b"GET a\nGET b\nGET c").unwrap();
    framed.write_all(&[0, 0, 0, 1, 7]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.lines.len() < 2 || h.frames < 1 {
        assert!(Instant::now() < deadline, "lines {:?}, frames {}", h.lines, h.frames);
        for id in net.conns.iter().map(|(k, _)| ConnId(k)).collect::<Vec<_>>() {
            net.read_conn(&mut h, now, id);
        }
    }
    assert_eq!(h.lines, [b"GET a\n".to_vec(), b"GET b\n".to_vec()], "the unfinished third waits");
    assert_eq!(h.frames, 1);
}

/// A handler that raises a connection's frame limit on its first frame (a
/// peer's Hello) has the second frame of the same read measured against the
/// new limit, not the old one.
#[test]
fn a_limit_raised_by_a_frame_holds_for_the_next_in_the_same_read() {
    struct Raiser {
        conn: Option<ConnId>,
        frames: Vec<usize>,
    }
    impl Handler for Raiser {
        fn on_accept(&mut self, _: &mut Net, _: Instant, conn: ConnId) {
            self.conn = Some(conn);
        }
        fn on_frame(&mut self, net: &mut Net, _: Instant, c: ConnId, f: Frame<'_>) -> Result<(), DecodeError> {
            self.frames.push(f.body.len());
            net.set_limit(c, FrameLimit::Any(64));
            Ok(())
        }
        fn on_tick(&mut self, _: &mut Net, _: Instant) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
    }
    use std::io::Write as _;
    let mut net = Net::new().unwrap();
    let addr = net.listen(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    let mut h = Raiser { conn: None, frames: Vec::new() };
    let now = Instant::now();
    net.accept(&mut h, now, 0, FrameLimit::Any(2));
    let conn = h.conn.unwrap();
    let mut bytes = vec![0, 0, 0, 2, 7, 1];
    bytes.extend_from_slice(&[0, 0, 0, 11, 7]);
    bytes.extend_from_slice(&[9; 10]);
    client.write_all(&bytes).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.frames.len() < 2 {
        assert!(Instant::now() < deadline, "frames {:?}", h.frames);
        assert_eq!(net.connection_count(), 1, "not closed as malformed");
        net.read_conn(&mut h, now, conn);
    }
    assert_eq!(h.frames, [1, 10]);
}

#[test]
fn loopback_only_when_the_tracker_is_elsewhere() {
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(loopback_only(a("127.0.0.1:7000"), a("192.0.2.9:6969")));
    assert!(loopback_only(a("[::1]:7000"), a("[2001:db8::1]:6969")));
    assert!(!loopback_only(a("127.0.0.1:7000"), a("127.0.0.1:6969")));
    assert!(!loopback_only(a("0.0.0.0:7000"), a("192.0.2.9:6969")));
    assert!(!loopback_only(a("192.0.2.2:7000"), a("192.0.2.9:6969")));
    assert!(loopback_warning(a("127.0.0.1:7000"), a("192.0.2.9:6969")).contains("--listen 0.0.0.0:7000"));
}

/// Datagrams are taken in batches but handed over one by one, in order,
/// each answered by its own datagram, in the same order; more datagrams
/// than one batch, and a handler that answers some with two, are all served.
#[test]
fn datagrams_are_answered_one_by_one_in_order() {
    struct Echo {
        seen: Vec<Vec<u8>>,
    }
    impl Handler for Echo {
        fn on_frame(&mut self, _: &mut Net, _: Instant, _: ConnId, _: Frame<'_>) -> Result<(), DecodeError> {
            Ok(())
        }
        fn on_datagram(&mut self, net: &mut Net, _: Instant, from: SocketAddr, data: &[u8]) {
            self.seen.push(data.to_vec());
            net.send_to(from, data);
            if data[0].is_multiple_of(10) {
                net.send_to(from, b"extra");
            }
        }
        fn on_tick(&mut self, _: &mut Net, _: Instant) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
    }
    let mut net = Net::new().unwrap();
    let addr = net.bind_udp(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sent: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
    for d in &sent {
        client.send_to(d, addr).unwrap();
    }
    let mut echo = Echo { seen: Vec::new() };
    let deadline = Instant::now() + Duration::from_secs(5);
    while echo.seen.len() < sent.len() && Instant::now() < deadline {
        net.read_datagrams(&mut echo, Instant::now());
    }
    assert_eq!(echo.seen, sent, "every datagram handed over, in order");
    let mut buf = [0u8; 512];
    for d in &sent {
        let n = client.recv(&mut buf).expect("a reply within 5 s");
        assert_eq!(&buf[..n], &d[..]);
        if d[0].is_multiple_of(10) {
            let n = client.recv(&mut buf).expect("the extra reply within 5 s");
            assert_eq!(&buf[..n], b"extra");
        }
    }
}
