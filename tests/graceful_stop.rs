//! A seeder stopped by SIGTERM (issue 16): it finishes the chunks it has
//! started before it leaves, and the bytes its status line calls sent are
//! bytes the kernel took, so a leecher holds every chunk counted as sent.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use lmk::meta::FileMeta;
use lmk::wire::peer::{Message, State, MAX_PEER_FRAME};
use lmk::wire::split_frame;

const MIB: usize = 1024 * 1024;
/// How long the slow reader reads at most (a hang guard, not a timing assertion).
const READ_FOR: Duration = Duration::from_secs(40);

/// A leecher that asks for every chunk, then reads 16 KiB every 30 ms
/// (about 0.5 MiB/s), so the seeder's queue and the kernel's buffers stay
/// full. Returns the chunk bytes it received and checked against `data`,
/// once the seeder has closed the connection.
fn slow_reader(seeder: SocketAddr, meta: FileMeta, data: Vec<u8>, verified: Arc<AtomicU64>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(seeder).expect("connect to the seeder");
        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut out = Vec::new();
        Message::Hello { id: meta.content_id(), port: 0, nonce: 0x5eed }.encode(&mut out);
        Message::Bitfield(&vec![0u8; (meta.chunk_count() as usize).div_ceil(8)]).encode(&mut out);
        stream.write_all(&out).unwrap();
        let (mut buf, mut piece, mut asked) = (Vec::new(), vec![0u8; 16 * 1024], false);
        let until = Instant::now() + READ_FOR;
        while Instant::now() < until {
            loop {
                let (used, request) = match split_frame(&buf, MAX_PEER_FRAME) {
                    Ok(Some((frame, used))) => match Message::decode(frame) {
                        Ok(Message::State(State::Available | State::Connected)) if !asked => (used, true),
                        Ok(Message::Chunk { index, data: got }) => {
                            let start = meta.chunk_offset(index) as usize;
                            if data.get(start..start + got.len()) == Some(got) {
                                verified.fetch_add(got.len() as u64, Ordering::SeqCst);
                            }
                            (used, false)
                        }
                        Ok(_) => (used, false),
                        Err(e) => return format!("bad frame: {e}"),
                    },
                    Ok(None) => break,
                    Err(e) => return format!("bad frame: {e}"),
                };
                buf.drain(..used);
                if request {
                    asked = true;
                    let mut out = Vec::new();
                    (0..meta.chunk_count()).for_each(|i| Message::Request { index: i, sole: false, more: false }.encode(&mut out));
                    stream.write_all(&out).unwrap();
                }
            }
            std::thread::sleep(Duration::from_millis(30));
            match stream.read(&mut piece) {
                Ok(0) => return "closed".into(),
                Ok(n) => buf.extend_from_slice(&piece[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return format!("error: {e}"),
            }
        }
        "still open".into()
    })
}

/// Shares a random file of `size` bytes in 1 MiB chunks to one slow reader
/// and SIGTERMs the seeder once its status counts `sent_at_least` bytes as
/// sent. The seeder must exit 0; returns what its last status line counts as
/// sent and the chunk bytes the reader received and checked.
fn stop_seeder_once_it_sent(tag: &str, size: usize, sent_at_least: u64) -> (u64, u64) {
    let tmp = TempDir::new(tag);
    let src = random_file(&tmp.sub("src"), "f.bin", size, 30);
    let meta = file_meta(&src, MIB as u32);
    let (_tracker, addr) = start_tracker(INTERVAL, EXPIRY);
    let (mut seeder, seeder_addr) = start_seeder(addr, &["--chunk-size", "1048576", "--status", "0.05"], &[&src]);
    wait_listed(addr, "f.bin", 1);

    let verified = Arc::new(AtomicU64::new(0));
    let reader = slow_reader(seeder_addr, meta, std::fs::read(&src).unwrap(), Arc::clone(&verified));
    let status = seeder.wait_stdout(DOWNLOAD, "the seeder's status to count enough as sent", |line| {
        parse_seeder_status(line).filter(|s| s.sent >= sent_at_least)
    });
    eprintln!("{tag}: SIGTERM at sent {} bytes, the reader has {}", status.sent, verified.load(Ordering::SeqCst));
    seeder.signal("TERM");
    let name = seeder.name.clone();
    let out = seeder.finish(Duration::from_secs(30));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{name} exits 0 on SIGTERM: {}\n{stdout}{}", out.status, text(&out.stderr));
    let last = last_seeder_status(&stdout.lines().map(str::to_string).collect::<Vec<_>>()).expect("a status line");
    let ended = reader.join().expect("the reader thread");
    let got = verified.load(Ordering::SeqCst);
    eprintln!(
        "{tag}: the seeder's last status: sent {}; the reader verified {got} bytes and ended: {ended}",
        last.sent
    );
    assert!(last.sent >= sent_at_least, "the seeder counts at least what it counted before the signal: {last:?}");
    assert!(got >= last.sent, "the seeder counts {} bytes as sent, the leecher received {got} ({ended})", last.sent);
    (last.sent, got)
}

/// SIGTERM while a chunk is on its way: the chunks started are finished,
/// the others are not sent.
#[test]
fn a_stopped_seeder_finishes_the_chunks_it_started() {
    let (_, got) = stop_seeder_once_it_sent("graceful-chunk", 8 * MIB, MIB as u64);
    assert!(got < 8 * MIB as u64, "the chunks not started when the signal came are not sent");
}

/// SIGTERM when the status says one copy sent: the one leecher has it all.
#[test]
fn a_stopped_seeder_delivers_the_copy_it_counts_as_sent() {
    let (sent, got) = stop_seeder_once_it_sent("graceful-copy", 4 * MIB, 4 * MIB as u64);
    assert_eq!((sent, got), (4 * MIB as u64, 4 * MIB as u64));
}
