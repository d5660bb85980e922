//! What each source address holds over all swarms (peers, swarms opened),
//! for the per-address caps, in memory fixed by the peer cap rather than one
//! table entry per address: a count-min sketch. Each address is counted in
//! one cell of each of two rows, picked by a keyed hash; its figure is the
//! smaller of its two cells. A cell is the exact sum of the addresses that
//! share it, so leaves and expiry take back exactly what joins added, and a
//! figure is never below the truth: a cap may refuse an address a little
//! early (only if another address shares both its cells), never let one
//! past it. The key is drawn at start, so nobody can aim at a collision.

/// A source address as the caps count it: an IPv4 address, or the /64 of an
/// IPv6 one (one host commonly holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    V4(u32),
    V6(u64),
}

/// The two cells of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cells(u32, u32);

/// An address's peers and the swarms it opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub peers: u32,
    pub swarms: u32,
}

#[derive(Debug)]
pub struct Usage {
    /// Two rows of `width` cells, each `peers | swarms << 32`. Zeroed on
    /// allocation, so pages no address hashes to cost nothing.
    cells: Vec<u64>,
    mask: u64,
    key: [u64; 2],
    /// Non-zero cells of the first row: the addresses holding something,
    /// exact unless two of them share a cell.
    addresses: usize,
}

/// Fewest cells per row, so a few addresses never share one.
const MIN_WIDTH: usize = 1 << 12;
/// Most cells per row (64 MiB for both rows).
const MAX_WIDTH: usize = 1 << 22;

impl Usage {
    /// Sized for `max_peers`: one cell per row for every 16 peers, so a full
    /// table costs 1 byte per peer and an address's figure is off by about
    /// 16 at most (invisible against caps in the thousands).
    pub fn new(max_peers: usize, seed: u64) -> Usage {
        let width = (max_peers / 16).clamp(MIN_WIDTH, MAX_WIDTH).next_power_of_two();
        let key = [mix(seed ^ 0x243F_6A88_85A3_08D3), mix(seed ^ 0x1319_8A2E_0370_7344)];
        Usage { cells: vec![0; 2 * width], mask: width as u64 - 1, key, addresses: 0 }
    }

    pub fn cells(&self, host: Host) -> Cells {
        let (tag, bits) = match host {
            Host::V4(ip) => (0x5634_9C12_u64, u64::from(ip)),
            Host::V6(prefix) => (0xB10C_6464_u64, prefix),
        };
        let width = self.mask + 1;
        let a = mix(bits ^ self.key[0] ^ tag) & self.mask;
        let b = mix(bits.rotate_left(29) ^ self.key[1] ^ tag) & self.mask;
        Cells(a as u32, (width + b) as u32)
    }

    pub fn get(&self, c: Cells) -> Held {
        let cell = |i: u32| self.cells.get(i as usize).copied().unwrap_or(0);
        let (a, b) = (cell(c.0), cell(c.1));
        Held { peers: (a as u32).min(b as u32), swarms: ((a >> 32) as u32).min((b >> 32) as u32) }
    }

    pub fn add(&mut self, c: Cells, peers: u32, swarms: u32) {
        let delta = u64::from(peers) | u64::from(swarms) << 32;
        for (row, i) in [c.0, c.1].into_iter().enumerate() {
            if let Some(cell) = self.cells.get_mut(i as usize) {
                if row == 0 && *cell == 0 {
                    self.addresses += 1;
                }
                *cell = cell.wrapping_add(delta);
            }
        }
    }

    pub fn sub(&mut self, c: Cells, peers: u32, swarms: u32) {
        for (row, i) in [c.0, c.1].into_iter().enumerate() {
            if let Some(cell) = self.cells.get_mut(i as usize) {
                let was = *cell;
                let p = (*cell as u32).saturating_sub(peers);
                let s = ((*cell >> 32) as u32).saturating_sub(swarms);
                *cell = u64::from(p) | u64::from(s) << 32;
                if row == 0 && was != 0 && *cell == 0 {
                    self.addresses = self.addresses.saturating_sub(1);
                }
            }
        }
    }

    /// Addresses holding a peer or a swarm (a lower bound once they number
    /// near the width of a row).
    pub fn addresses(&self) -> usize {
        self.addresses
    }
}

/// A 64-bit finaliser (MurmurHash3's): every input bit moves every output bit.
pub(super) fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}
