//! Room for callers once greeted: per file, and over all files. Per file a
//! caller's address block takes at most half of `--max-peers-per-file` and
//! callers at most three quarters; over all files at most `max_inbound`
//! callers are held, whatever the number of files, so what they can make us
//! hold (each its queue and read buffer) has one bound. When that is full a
//! newcomer takes the place of a caller of the address block, else of the
//! file, holding the most connections (at least two more than the
//! newcomer's): neither one address nor one file keeps the others out.
//! Our own dials take at most half of a file's connections, so peers that
//! arrive later find room.

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
    /// Whether another peer that dialled us from `ip` may trade `id`:
    /// inbound peers leave a quarter of `--max-peers` to our own dials, so a
    /// peer filled by callers that hold nothing still reaches the ones it
    /// chose (a seed that appears later, say), and one address block takes
    /// at most half of them, so one address cannot fill a file.
    pub(super) fn inbound_room(&self, id: ContentId, ip: IpAddr) -> bool {
        let (mut inbound, mut open, mut same) = (0, 0, 0);
        let block = ip_block(ip);
        for s in self.sessions.values().filter(|s| s.phase == Phase::Open && s.torrent == Some(id)) {
            open += 1;
            inbound += usize::from(!s.outbound);
            same += usize::from(!s.outbound && ip_block(s.addr.ip()) == block);
        }
        let max = self.config.max_peers;
        open < max && inbound < inbound_share(max) && same < (max / 2).max(1)
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
        if callers.len() < self.config.max_inbound.max(inbound_share(self.config.max_peers)) {
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

/// Callers one file takes at most: all of `max_peers` but a quarter kept for our own dials.
fn inbound_share(max_peers: usize) -> usize {
    max_peers.saturating_sub((max_peers / 4).max(1)).max(1)
}

/// Connections of a file we dial ourselves: half of `--max-peers-per-file`,
/// so the other half waits for peers that learn of us later. Peers that all
/// arrive at once otherwise fill each other: the first 50 to announce know
/// only each other and, dialling every one, formed a clique the other 950
/// could not reach, fed by the seed and served last (`lmk-sim --peers 1000
/// --size 64M`, seeds 1, 2, 4: last 1.51-1.54 x T_p2p, 1.40-1.42 with this
/// share and dials chosen at random; the seed's copies 1.49-1.54 -> 1.38-1.43).
pub(super) fn dial_share(max_peers: usize) -> usize {
    (max_peers / 2).max(1)
}
