//! The leecher's core fed arbitrary event sequences: the catalog connection
//! opening, failing and answering (the right metadata, a different file, an
//! unsafe name, a list, an error or any decodable frame), then the peer
//! events of common/peer_ops.rs on the file it goes on to fetch. It must
//! never panic, and every catalog request it sends encodes and decodes.
#![no_main]

#[path = "../common/files.rs"]
mod files;
#[path = "../common/peer_ops.rs"]
mod peer_ops;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lmk::common::net::ConnId;
use lmk::leecher::machine::{Command, Config, Disk, Leecher, Note, Opened, Output};
use lmk::meta::FileMeta;
use lmk::peer::bitfield::Bitfield;
use lmk::peer::machine::Config as PeerConfig;
use lmk::peer::torrent::Goal;
use lmk::sim::content::{Content, Store};
use lmk::sim::harness::TRACKER;
use lmk::wire::catalog::{ErrorCode, ListEntry, Request, Response, Selector};
use lmk::wire::Frame;
use peer_ops::{PeerOp, Peers};

/// Creates in-memory files (of whichever test content has the hashes
/// asked for), kept by name to check what a download holds; `found` picks
/// what opening finds: a new file, a full disk, another writer, or the file
/// complete already.
struct MemDisk {
    found: u8,
    contents: [Rc<Content>; 2],
    files: Rc<RefCell<Vec<(String, Store)>>>,
}

impl Disk for MemDisk {
    fn open(&mut self, meta: &FileMeta) -> Result<Opened, String> {
        match self.found % 4 {
            1 => return Err("disk full".into()),
            2 => return Ok(Opened::Busy { holder: "process 1".into() }),
            3 => return Ok(Opened::Complete),
            _ => {}
        }
        let [file, other] = &self.contents;
        let content = if meta.hashes() == file.meta.hashes() { file } else { other };
        let store = content.store(None, Bitfield::new(meta.chunk_count()));
        self.files.borrow_mut().push((meta.name().to_string(), store.clone()));
        Ok(Opened::Part { storage: Box::new(store), have: Bitfield::new(meta.chunk_count()) })
    }
}

/// Runs `f` on the harness with the leecher's peer core in it as host 0.
fn on_core(peers: &mut Peers, leecher: &mut Leecher<MemDisk>, f: impl FnOnce(&mut Peers)) {
    std::mem::swap(&mut leecher.peer, &mut peers.sw.hosts[0].m);
    f(peers);
    std::mem::swap(&mut leecher.peer, &mut peers.sw.hosts[0].m);
}

#[derive(Arbitrary, Debug)]
enum Answer {
    /// The file asked for.
    Meta,
    /// Another file under the same name, or under an unsafe one.
    OtherMeta {
        unsafe_name: bool,
    },
    List,
    Error,
    /// Any catalog frame that decodes.
    Raw {
        kind: u8,
        body: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Opened {
        conn: u8,
    },
    /// The catalog connection failed; `refused`: it could not be opened at all (nothing listens).
    Failed {
        refused: bool,
    },
    Answer(Answer),
    Peer(PeerOp),
    Shutdown,
}

#[derive(Arbitrary, Debug)]
struct Input {
    list: bool,
    by_id: bool,
    /// How many files are asked for (all the same one).
    files: u8,
    /// What opening the download finds (see `MemDisk`).
    disk: u8,
    wait: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let t0 = Instant::now();
    let file = files::test_file(2, "f.bin");
    let other = files::test_file(1, if input.by_id { "f.bin" } else { "g.bin" });
    let selector = if input.by_id { Selector::Id(file.meta.content_id()) } else { Selector::Name("f.bin".into()) };
    let command =
        if input.list { Command::List } else { Command::Get(vec![selector; usize::from(input.files % 3) + 1]) };
    let peer = PeerConfig {
        tracker: TRACKER,
        port: 0,
        slots: 2,
        max_peers: 4,
        max_inbound: 2,
        up_limit: None,
        down_limit: None,
        timeout: Duration::from_secs(12),
        interval: Duration::from_secs(10),
        seed: 4,
    };
    let goal = Goal::Until { idle: Duration::from_secs(3), ratio: Some(1.0), time: Some(Duration::from_secs(5)) };
    let files = Rc::new(RefCell::new(Vec::new()));
    let disk = MemDisk { found: input.disk, contents: [file.clone(), other.clone()], files: files.clone() };
    let mut leecher = Leecher::new(Config { command, peer: peer.clone(), goal, wait: input.wait }, disk, t0);
    let mut shell = Peers::new(t0, file, peer);
    // The leecher reads its peer core's events itself.
    shell.sw.hosts[0].keep_events = true;
    let mut catalog: Option<ConnId> = None;
    // The shell opens the catalog connection only when asked.
    let mut opening = false;
    for op in input.ops {
        let now = shell.now;
        match op {
            Op::Opened { conn } => {
                if !std::mem::take(&mut opening) {
                    continue;
                }
                let c = ConnId(100 + usize::from(conn % 4));
                catalog = Some(c);
                leecher.handle_catalog_opened(c);
            }
            Op::Failed { refused } => {
                if !std::mem::take(&mut opening) && catalog.is_none() {
                    continue;
                }
                catalog = None;
                leecher.handle_catalog_failed(now, refused.then(|| "connection refused".to_string()));
            }
            Op::Answer(answer) => {
                if catalog.is_none() {
                    continue;
                }
                let response = match answer {
                    Answer::Meta => Response::Meta(shell.file.meta.clone()),
                    Answer::OtherMeta { unsafe_name } => {
                        let m = &other.meta;
                        let name = if unsafe_name { "../f.bin" } else { m.name() };
                        Response::Meta(
                            FileMeta::new(name.into(), m.size(), m.chunk_size(), m.hashes().to_vec()).unwrap(),
                        )
                    }
                    Answer::List => Response::List(vec![ListEntry {
                        id: shell.file.meta.content_id(),
                        name: "f.bin".into(),
                        size: shell.file.meta.size(),
                        chunk_size: shell.file.meta.chunk_size(),
                        seeders: 1,
                    }]),
                    Answer::Error => Response::Error { code: ErrorCode::NotFound, message: "no such file".into() },
                    Answer::Raw { kind, body } => match Response::decode(Frame { kind, body: &body }) {
                        Ok(r) => r,
                        Err(_) => continue,
                    },
                };
                leecher.handle_catalog_response(now, response);
            }
            Op::Peer(op) => {
                on_core(&mut shell, &mut leecher, |shell| shell.step(op));
                // The shell's timer also drives the catalog retries and deadline.
                leecher.handle_timeout(shell.now);
            }
            Op::Shutdown => leecher.shutdown(now),
        }
        leecher.after_peer(shell.now);
        on_core(&mut shell, &mut leecher, Peers::settle);
        leecher.after_peer(shell.now);
        while let Some(output) = leecher.poll_output() {
            match output {
                Output::OpenCatalog => opening = true,
                Output::CatalogSend(c, req) => {
                    assert_eq!(Some(c), catalog, "sent on the catalog connection");
                    let mut out = Vec::new();
                    req.encode(&mut out);
                    let frame = lmk::wire::split_frame(&out, 1 << 24).unwrap().unwrap().0;
                    assert_eq!(Request::decode(frame), Ok(req));
                }
                Output::Close(c) => {
                    if catalog == Some(c) {
                        catalog = None;
                    }
                }
            }
        }
        while let Some(note) = leecher.poll_note() {
            if let Note::Done { name, .. } = note {
                // Only the file asked for can finish: another one has other hashes.
                let files = files.borrow();
                let (_, store) = files.iter().rev().find(|(n, _)| *n == name).expect("a done file was created");
                assert!(store.holds_file(), "a download reported done holds the file's bytes");
            }
        }
        let _ = leecher.finished(shell.now);
    }
});
