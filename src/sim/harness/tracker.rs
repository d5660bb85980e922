//! The tracker side of the harness: a host's datagrams go to a real
//! tracker core (made at the first one unless a test set its own), or a
//! test's list of peers answers a host's announces; held datagrams wait
//! for the caller.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Harness, LOOPBACK};
use crate::tracker::machine::{Config as TrackerConfig, Tracker};
use crate::wire::udp;

impl Harness {
    /// Takes host `i`'s datagrams not yet answered, oldest first.
    pub fn take_datagrams(&mut self, i: usize) -> Vec<Vec<u8>> {
        let (mine, rest) = std::mem::take(&mut self.datagrams).into_iter().partition(|(n, _)| *n == i);
        self.datagrams = rest;
        mine.into_iter().map(|(_, d): (usize, Vec<u8>)| d).collect()
    }

    /// Host `i`'s oldest datagram reaches the tracker (or is lost) and its
    /// answer comes back at once.
    pub fn answer(&mut self, now: Instant, i: usize, lost: bool) {
        if let Some(at) = self.datagrams.iter().position(|(n, _)| *n == i) {
            if let Some((_, d)) = self.datagrams.remove(at) {
                self.datagram(now, i, &d, lost);
            }
        }
    }

    pub(super) fn datagram(&mut self, now: Instant, i: usize, d: &[u8], lost: bool) {
        let tracker = self.tracker.get_or_insert_with(|| {
            let config = TrackerConfig {
                interval: Duration::from_secs(60),
                expiry: Duration::from_secs(300),
                seed: 1,
                ..TrackerConfig::default()
            };
            Tracker::new(config, now)
        });
        if lost {
            return;
        }
        let mut answer = Vec::new();
        tracker.handle_datagram(now, SocketAddr::new(LOOPBACK, 17000 + i as u16), d, &mut answer);
        if let Ok(udp::Request::Announce(a)) = udp::Request::decode(d) {
            if let Some(peers) = self.tracker_says.get(&i) {
                answer.clear();
                let (transaction_id, peers) = (a.transaction_id, peers.clone());
                udp::Response::Announce { transaction_id, interval: 60, leechers: 0, seeders: 0, peers }
                    .encode(&mut answer, false);
            }
            self.announces.push((i, a));
        }
        if !answer.is_empty() {
            self.hosts[i].m.handle_datagram(now, &answer);
        }
    }
}
