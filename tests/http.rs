//! The tracker's HTTP face against the real binary: the pages, metrics and
//! the HTTP tracker protocol shared with UDP, then hostile HTTP clients
//! (oversized and trickled heads, pipelined garbage, a client that never
//! reads, 10,000 connections from one address), each followed by a check
//! that the tracker still answers and its peak memory stayed bounded.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::http::{announce_path, closed_within, get, publish, read_answers};
use common::*;
use lmk::wire::udp::{self, Event};

const MIB: u64 = 1024 * 1024;
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// The value of an unlabelled metric.
fn metric(text: &str, name: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn still_serves(tracker: SocketAddr) {
    let a = get(tracker, "/metrics");
    assert_eq!(a.status, 200);
    assert!(a.text().contains("# TYPE lmk_tracker_peers gauge"));
}

fn assert_peak_below(proc: &Proc, bound: u64, what: &str) {
    let hwm = proc.peak_rss_kib() * 1024;
    eprintln!("{what}: peak RSS {:.1} MiB (bound {} MiB)", hwm as f64 / MIB as f64, bound / MIB);
    assert!(hwm < bound, "{what}: peak RSS {} MiB, bound {} MiB", hwm / MIB, bound / MIB);
}

#[test]
fn pages_list_the_catalog_and_escape_names() {
    let (_tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    let id = publish(addr, "big.iso", 3 * 1024 * 1024);
    publish(addr, HOSTILE, 1000);
    for i in 0..150 {
        publish(addr, &format!("bulk-{i:03}.bin"), 20_000);
    }
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.head.contains("content-type: text/html"), "{}", page.head);
    let html = page.text();
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains(HOSTILE), "the hostile name reached the page unescaped");
    assert!(html.contains(&id.to_hex()) && html.contains("152 file(s)") && html.contains("page 1 of 2"));
    let filtered = get(addr, "/?q=BIG").text();
    assert!(filtered.contains("1 file(s) matching") && filtered.contains("big.iso") && !filtered.contains("bulk-000"));
    let second = get(addr, "/?page=2").text();
    assert!(second.contains("bulk-149.bin") && !second.contains("big.iso"));

    let json = get(addr, "/stats.json");
    assert!(json.head.contains("application/json"));
    let text = json.text();
    assert!(text.starts_with("{\"figures\":{\"uptime_seconds\":"), "{text}");
    assert!(text.contains(r#""files":152,"#) && text.contains(r#""matching":152"#));
    assert_eq!(text.matches("\"content_id\":").count(), 152, "every file, streamed");
    assert!(text.contains(r#"{"name":"\u003cimg src=x onerror=alert(1)>","#));

    let metrics = get(addr, "/metrics");
    assert!(metrics.head.contains("text/plain; version=0.0.4"));
    let m = metrics.text();
    assert!(m.contains("lmk_tracker_catalog_files 152\n"));
    assert!(m.contains("\nlmk_tracker_connections{kind=\"http\"} 1\n"), "{m}");
    assert_eq!(get(addr, "/nothing-here").status, 404);
}

#[test]
fn http_and_udp_clients_of_one_torrent_meet() {
    let (_tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    let hash = lmk::hash::Hash20([7; 20]);
    let mut udp_client = UdpClient::connect(addr);
    match udp_client.announce(hash, 0, Event::Started, 7001) {
        udp::Response::Announce { seeders: 1, .. } => {}
        other => panic!("{other:?}"),
    }
    let a = get(addr, &announce_path(&hash, "-TR4000-abcdefghijkl", 7002, 100));
    let body = a.body;
    let want: &[u8] = &[b'5', b':', b'p', b'e', b'e', b'r', b's', b'6', b':', 127, 0, 0, 1, 0x1b, 0x59];
    assert!(body.windows(want.len()).any(|w| w == want), "the UDP seeder in {:?}", String::from_utf8_lossy(&body));
    assert!(body.starts_with(b"d8:completei1e10:incompletei1e"));
    match udp_client.announce(hash, 10, Event::None, 7003) {
        udp::Response::Announce { peers, .. } => {
            assert!(peers.contains(&SocketAddr::from(([127, 0, 0, 1], 7002))), "the HTTP leecher in {peers:?}")
        }
        other => panic!("{other:?}"),
    }
    let scrape = get(addr, &format!("/scrape?info_hash={}", common::http::escape_bytes(&hash.0)));
    assert!(scrape.text().contains("d8:completei1e10:downloadedi0e10:incompletei2e"), "{}", scrape.text());
    let bad = get(addr, "/announce?info_hash=x");
    assert_eq!(bad.text(), "d14:failure reason44:bad announce: bad value in field `info_hash`e");
}

#[test]
fn oversized_head_is_refused() {
    let (tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut head = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    head.resize(64 * 1024, b'a');
    let _ = s.write_all(&head); // the tracker may close before all of it is sent
    let answers = read_answers(&mut s, 1);
    assert_eq!(answers[0].status, 431);
    assert!(closed_within(&mut s, Duration::from_secs(10)), "closed after the 431");
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..65 {
        many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&many).expect("send");
    assert_eq!(read_answers(&mut s, 1)[0].status, 431, "65 headers");
    still_serves(addr);
    assert!(get(addr, "/metrics").text().contains("lmk_tracker_errors_total{kind=\"http_head_too_large\"} 2"));
    assert_peak_below(&tracker, 16 * MIB, "oversized heads");
}

#[test]
fn trickled_head_is_closed_at_its_deadline() {
    let (_tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    let mut s = TcpStream::connect(addr).expect("connect");
    // One byte every 200 ms: the 10 s deadline counts from the first byte.
    let head = b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let start = std::time::Instant::now();
    let mut closed = false;
    for &b in head.iter().cycle().take(150) {
        if s.write_all(&[b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(closed || closed_within(&mut s, Duration::from_secs(10)), "trickled head not closed");
    eprintln!("trickled head closed after {:.1} s", start.elapsed().as_secs_f64());
    assert!(get(addr, "/metrics")
        .text()
        .contains("lmk_tracker_connections_closed_total{kind=\"http\",reason=\"slow_request\"} 1"));
}

#[test]
fn pipelined_requests_then_garbage() {
    let (_tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(
        b"GET /metrics HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n\x00\x01\x02garbage\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    )
    .expect("send");
    let answers = read_answers(&mut s, 3);
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 404, 400]);
    assert!(closed_within(&mut s, Duration::from_secs(10)), "closed after the 400, the last GET unanswered");
    still_serves(addr);
}

#[test]
fn client_that_never_reads() {
    let (tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    for i in 0..300 {
        publish(addr, &format!("file-with-a-longish-name-{i:04}.bin"), 100_000);
    }
    // 400,000 pipelined requests for answers of 5-60 KB each: about 12 GB if
    // they were all queued. The tracker holds at most 64 KiB and one answer;
    // the requests it does not read fill the kernel's buffers.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_write_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let requests = b"GET /metrics HTTP/1.1\r\n\r\nGET /stats.json HTTP/1.1\r\n\r\n".repeat(200_000);
    let mut sent = 0;
    while sent < requests.len() {
        match s.write(&requests[sent..]) {
            Ok(n) => sent += n,
            Err(_) => break, // the kernel buffers are full: the tracker stopped reading
        }
    }
    eprintln!("sent {sent} of {} bytes of requests before the tracker stopped reading", requests.len());
    assert!(sent < requests.len(), "the tracker read every request although nobody took the answers");
    let m = get(addr, "/metrics").text();
    let served: u64 = metric(&m, "lmk_tracker_http_requests_total");
    eprintln!("{served} requests read of {}", 400_000);
    assert!(served < 1000, "{served} requests read from a client that takes no answer");
    assert_peak_below(&tracker, 16 * MIB, "a client that never reads");
}

#[test]
fn ten_thousand_connections_from_one_address() {
    raise_nofile(12_000);
    let (tracker, addr) = start_tracker_with(INTERVAL, 60, &["--open"]);
    // From 127.0.0.1; the checks come from 127.0.0.2.
    let start = std::time::Instant::now();
    // Ten threads: a connect now and then waits a second for a SYN retry.
    let threads: Vec<_> = (0..10)
        .map(|t| {
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for i in 0..1000 {
                    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {t}/{i}: {e}"));
                    let _ = s.write_all(if i % 2 == 0 { b"GET /metrics HTTP/1.1\r\n" } else { b"\x00\x00" });
                    held.push(s);
                }
                held
            })
        })
        .collect();
    let held: Vec<Vec<TcpStream>> = threads.into_iter().map(|t| t.join().expect("connecting thread")).collect();
    eprintln!("10,000 connections made in {:.1} s", start.elapsed().as_secs_f64());
    let sum = |m: &str, prefix: &str, part: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(part))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    // The tracker takes them from its backlog at its own pace: wait for all.
    let mut m = String::new();
    wait_until(Duration::from_secs(60), "the tracker to take 10,000 connections", || {
        let mut check = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr).expect("connect from 127.0.0.2");
        check.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").expect("send");
        m = read_answers(&mut check, 1).remove(0).text();
        sum(&m, "lmk_tracker_connections_closed_total{", "") + sum(&m, "lmk_tracker_connections{", "") >= 10_000
    });
    let refused = sum(&m, "lmk_tracker_connections_closed_total{", "refused_per_ip");
    eprintln!("10,000 connections from 127.0.0.1: {refused} refused by the per-address caps");
    assert!(refused >= 9_000, "{refused} refused:\n{m}");
    let open = sum(&m, "lmk_tracker_connections{", "");
    assert!(open <= 32 + 16 + 1, "{open} connections held");
    assert_peak_below(&tracker, 16 * MIB, "10,000 connections from one address");
    drop(held);
}
