//! BEP 15 connection ids: the keyed hash (SipHash-2-4 under a secret) of
//! the client's IP address and a coarse time, so none is stored per client,
//! plus a small table of the ids lately found valid. A client announcing
//! many torrents, or a NAT in front of many clients, sends one id again and
//! again; a hit costs two compares instead of one or two SipHash runs (about
//! 4% of the core's time per announce under aquatic's load, `announce_cost`).

use std::net::IpAddr;

use crate::common::siphash::siphash24;

/// Slots of the table of ids found valid: 2 KiB.
const RECENT: usize = 64;

/// An id found valid for `ip` while the epoch was `epoch`.
#[derive(Clone, Copy)]
struct Recent {
    ip: [u8; 16],
    id: u64,
    epoch: u64,
}

pub(super) struct ConnectionIds {
    secret: [u8; 16],
    /// By the id's low bits: the ids are keyed hashes, so a client cannot
    /// aim at another's slot (and a slot taken from it costs a hash, no more).
    recent: Box<[Recent; RECENT]>,
}

impl ConnectionIds {
    pub fn new(secret: [u8; 16]) -> ConnectionIds {
        let empty = Recent { ip: [0; 16], id: 0, epoch: u64::MAX };
        ConnectionIds { secret, recent: Box::new([empty; RECENT]) }
    }

    /// Not the port: BEP 15 ties nothing to it, and libtorrent uses one id
    /// from all its sockets.
    pub fn issue(&self, ip: IpAddr, epoch: u64) -> u64 {
        self.hash(octets(ip), epoch)
    }

    /// Whether `id` was issued to `ip` in `epoch` or the one before. A slot
    /// is trusted only in the epoch it was filled in, where the answer is
    /// the same as the hash's.
    pub fn check(&mut self, ip: IpAddr, epoch: u64, id: u64) -> bool {
        let ip = octets(ip);
        let slot = (id % RECENT as u64) as usize;
        if self.recent.get(slot).is_some_and(|r| r.id == id && r.epoch == epoch && r.ip == ip) {
            return true;
        }
        let valid = id == self.hash(ip, epoch) || (epoch > 0 && id == self.hash(ip, epoch - 1));
        if let Some(r) = self.recent.get_mut(slot).filter(|_| valid) {
            *r = Recent { ip, id, epoch };
        }
        valid
    }

    fn hash(&self, ip: [u8; 16], epoch: u64) -> u64 {
        let mut input = [0u8; 24];
        input[..16].copy_from_slice(&ip);
        input[16..].copy_from_slice(&epoch.to_be_bytes());
        siphash24(&self.secret, &input)
    }
}

/// The address as 16 bytes, an IPv4 one (or a v4-mapped one) mapped.
fn octets(ip: IpAddr) -> [u8; 16] {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table answers as the hash does: an id found valid is refused two
    /// epochs later, and from another address, though it sits in its slot.
    #[test]
    fn a_remembered_id_is_valid_only_where_the_hash_says() {
        let mut ids = ConnectionIds::new([7; 16]);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let id = ids.issue(a, 5);
        for _ in 0..2 {
            assert!(ids.check(a, 5, id), "its epoch");
            assert!(!ids.check(b, 5, id), "another address");
        }
        assert!(ids.check(a, 6, id), "the next epoch");
        assert!(ids.check(a, 6, id), "the next epoch, remembered");
        assert!(!ids.check(a, 7, id), "the epoch after");
        assert!(!ids.check(a, 5, id ^ 1 << 32), "another id in the same slot");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(ids.check(mapped, 7, ids.issue(a, 7)), "a v4-mapped address is the IPv4 one");
    }
}
