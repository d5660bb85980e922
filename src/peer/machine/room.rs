//! Room for callers once greeted: per file, and over all files. Per file a
//! caller's address block takes at most half of `--max-peers-per-file`, and
//! while we download it callers take at most half and our own dials the
//! other half (`dial_share`); over all files at most `max_inbound`
//! callers are held, whatever the number of files, so what they can make us
//! hold (each its queue and read buffer) has one bound. When that is full a
//! newcomer takes the place of a caller of the address block, else of the
//! file, holding the most connections (at least two more than the
//! newcomer's): neither one address nor one file keeps the others out.

use std::cmp::Reverse;
use std::net::IpAddr;

use super::*;
use crate::common::ip_block;

/// A greeted caller as the rule over all files sees it.
struct Caller {
    conn: ConnId,
    file: ContentId,
    block: IpAddr,
    last_heard: Instant,
}

impl Machine {
    /// Whether another peer that dialled us from `ip` may trade `id`: while
    /// we download it, callers leave our dials their share (`dial_share`), so
    /// a peer filled by callers that hold nothing still reaches the ones it
    /// chose (a seed that appears later, say), and neither side fills a
    /// file alone; one address block takes at most half of `--max-peers`,
    /// so one address cannot fill a file.
    pub(super) fn inbound_room(&self, id: ContentId, ip: IpAddr) -> bool {
        let (mut inbound, mut open, mut same) = (0, 0, 0);
        let block = ip_block(ip);
        for s in self.sessions.values().filter(|s| s.phase == Phase::Open && s.torrent == Some(id)) {
            open += 1;
            inbound += usize::from(!s.outbound);
            same += usize::from(!s.outbound && ip_block(s.addr.ip()) == block);
        }
        let max = self.config.max_peers;
        let downloading = self.torrents.get(&id).is_some_and(|t| t.stage == Stage::Downloading);
        open < max && inbound < callers_share(max, downloading) && same < (max / 2).max(1)
    }

    /// Whether a caller from `ip` greeting on `conn` for `id` may be held
    /// among the greeted callers of all files; when they are all taken, a
    /// caller that holds no upload slot is closed to make room if its
    /// address block holds at least two more of them than the newcomer's, or
    /// (of a block holding no fewer) its file at least two more than `id`.
    /// The most crowded block goes first, then the most crowded file, then
    /// the caller heard from longest ago. Each move evens the blocks out, or
    /// the files without unevening the blocks, so callers cannot take each
    /// other's places in a circle.
    pub(super) fn room_in_all(&mut self, now: Instant, conn: ConnId, id: ContentId, ip: IpAddr) -> bool {
        let callers: Vec<(Caller, bool)> = self
            .sessions
            .iter()
            .filter(|(c, s)| **c != conn && !s.outbound && s.phase == Phase::Open)
            .filter_map(|(c, s)| {
                let caller =
                    Caller { conn: *c, file: s.torrent?, block: ip_block(s.addr.ip()), last_heard: s.last_heard };
                Some((caller, s.slot_since.is_some()))
            })
            .collect();
        if callers.len() < self.config.max_inbound.max(self.config.max_peers) {
            return true;
        }
        let (mut blocks, mut files) = (BTreeMap::<IpAddr, usize>::new(), BTreeMap::<ContentId, usize>::new());
        for (c, _) in &callers {
            *blocks.entry(c.block).or_default() += 1;
            *files.entry(c.file).or_default() += 1;
        }
        let block = ip_block(ip);
        let (b, f) = (blocks.get(&block).copied().unwrap_or(0), files.get(&id).copied().unwrap_or(0));
        let victim = callers
            .iter()
            .filter(|(_, slot)| !slot)
            .filter_map(|(c, _)| {
                let (a, g) = (blocks.get(&c.block).copied()?, files.get(&c.file).copied()?);
                let by_block = a > b + 1;
                let by_file = (c.block == block || a > b) && g > f + 1;
                (by_block || by_file).then_some((a, g, Reverse(c.last_heard), c.conn))
            })
            .max()
            .map(|(.., c)| c);
        let Some(victim) = victim else {
            debug!("{conn} {ip}: {} callers held over all files, none to make room; refused", callers.len());
            return false;
        };
        if let Some(s) = self.sessions.get(&victim) {
            debug!(
                "{victim} {}: closed to make room for {conn} {ip} ({} callers over all files)",
                s.addr,
                callers.len()
            );
        }
        self.disconnect(now, victim);
        true
    }
}

/// Connections of a file we dial ourselves while we download it: half of
/// `--max-peers-per-file`, and callers the other half, so each side finds
/// room. Peers that all arrive at once otherwise fill each other: the first
/// 50 to announce know only each other and, dialling every one and taking
/// each other's calls, formed a clique the other 950 could not reach, fed
/// by the seed and served last (`lmk-sim --peers 1000 --size 64M`, seeds 1,
/// 2, 4: last 1.51-1.54 x T_p2p; 1.38-1.43 with these shares and dials
/// chosen at random; the seed's copies 1.49-1.54 -> 1.33-1.35).
pub(super) fn dial_share(max_peers: usize) -> usize {
    (max_peers / 2).max(1)
}

/// Callers one file takes at most: while we download it, what our dials
/// leave; once complete we dial nobody, and callers may take them all.
fn callers_share(max_peers: usize, downloading: bool) -> usize {
    match downloading {
        true => max_peers.saturating_sub(dial_share(max_peers)).max(1),
        false => max_peers,
    }
}
