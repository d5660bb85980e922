//! The simulator's network: each host has an uplink and a downlink, and the
//! flows through a link share it max-min fairly, as TCP flows roughly do.
//!
//! A flow is one direction of one connection, busy while a data frame is on
//! it. Its rate changes only when the set of busy flows changes, so between
//! changes every busy flow progresses linearly and its completion time is
//! known: `start` and `finish` return the completions to (re)schedule.
//! With no downlink capped, a flow's rate is its uplink's capacity over the
//! uplink's busy flows, and a change touches one host's flows only; with a
//! capped downlink the shares couple across hosts and every busy flow is
//! recomputed by progressive filling.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A host's index.
pub type HostId = usize;

/// A flow's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub usize);

/// Nanoseconds of simulated time.
pub type Nanos = u64;

/// A flow's head frame will be sent at `at`, unless `version` is outdated by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub at: Nanos,
    pub flow: FlowId,
    pub version: u32,
}

struct Flow {
    from: HostId,
    to: HostId,
    busy: bool,
    /// Bytes of the head frame still to send, as of `since`.
    remaining: f64,
    /// Bytes per second.
    rate: f64,
    since: Nanos,
    version: u32,
    /// The head frame's size, and its bytes counted as arrived (`take_arrived`).
    size: f64,
    told: f64,
}

/// Capacities in bytes per second; `f64::INFINITY` for an unlimited link.
#[derive(Default)]
pub struct Links {
    up: Vec<f64>,
    down: Vec<f64>,
    flows: Vec<Flow>,
    /// Busy flows per uplink and per downlink.
    sending: Vec<Vec<FlowId>>,
    receiving: Vec<Vec<FlowId>>,
    /// Some downlink is capped: shares couple across hosts.
    coupled: bool,
}

impl Links {
    pub fn add_host(&mut self, up: f64, down: f64) -> HostId {
        self.coupled |= down.is_finite();
        self.up.push(up);
        self.down.push(down);
        self.sending.push(Vec::new());
        self.receiving.push(Vec::new());
        self.up.len() - 1
    }

    pub fn up(&self, host: HostId) -> f64 {
        self.up[host]
    }

    pub fn add_flow(&mut self, from: HostId, to: HostId) -> FlowId {
        self.flows.push(Flow {
            from,
            to,
            busy: false,
            remaining: 0.0,
            rate: 0.0,
            since: 0,
            version: 0,
            size: 0.0,
            told: 0.0,
        });
        FlowId(self.flows.len() - 1)
    }

    pub fn is_busy(&self, flow: FlowId) -> bool {
        self.flows[flow.0].busy
    }

    /// The flows sending a frame on `host`'s uplink.
    pub fn sending(&self, host: HostId) -> &[FlowId] {
        &self.sending[host]
    }

    /// The flow starts sending a frame of `bytes`.
    pub fn start(&mut self, now: Nanos, flow: FlowId, bytes: u64, out: &mut Vec<Completion>) {
        let f = &mut self.flows[flow.0];
        debug_assert!(!f.busy);
        f.busy = true;
        f.remaining = bytes as f64;
        f.since = now;
        f.rate = 0.0;
        f.size = bytes as f64;
        f.told = 0.0;
        let (from, to) = (f.from, f.to);
        self.sending[from].push(flow);
        self.receiving[to].push(flow);
        self.reshare(now, from, out);
    }

    /// The flow's head frame is sent (or the connection is gone): it stops.
    pub fn finish(&mut self, now: Nanos, flow: FlowId, out: &mut Vec<Completion>) {
        let f = &mut self.flows[flow.0];
        if !f.busy {
            return;
        }
        f.busy = false;
        f.version = f.version.wrapping_add(1);
        let (from, to) = (f.from, f.to);
        remove(&mut self.sending[from], flow);
        remove(&mut self.receiving[to], flow);
        self.reshare(now, from, out);
    }

    /// Bytes of the head frame sent since the last call (or its start), in
    /// whole bytes: what its receiver has seen arrive of it.
    pub fn take_arrived(&mut self, now: Nanos, flow: FlowId) -> u64 {
        let f = &mut self.flows[flow.0];
        if !f.busy {
            return 0;
        }
        let dt = now.saturating_sub(f.since) as f64 / 1e9;
        let left = if f.rate.is_infinite() { 0.0 } else { (f.remaining - f.rate * dt).max(0.0) };
        let more = (f.size - left - f.told).floor().max(0.0);
        f.told += more;
        more as u64
    }

    /// Whether `c` is still the flow's pending completion.
    pub fn is_current(&self, c: &Completion) -> bool {
        let f = &self.flows[c.flow.0];
        f.busy && f.version == c.version
    }

    /// The flow's current rate in bytes per second (0 when idle).
    pub fn rate(&self, flow: FlowId) -> f64 {
        let f = &self.flows[flow.0];
        if f.busy {
            f.rate
        } else {
            0.0
        }
    }

    /// New rates after a change at `host`'s uplink: its flows only, or every
    /// busy flow when downlinks couple the shares.
    ///
    /// An uplink's flows share it evenly, so they finish in the order of the
    /// bytes they have left whatever the number of flows: only the first
    /// needs a completion. (Rescheduling every flow at each change made most
    /// of the simulator's events outdated completions.)
    fn reshare(&mut self, now: Nanos, host: HostId, out: &mut Vec<Completion>) {
        if self.coupled {
            return self.fill(now, out);
        }
        let n = self.sending[host].len();
        let share = self.up[host] / n.max(1) as f64;
        let mut first: Option<FlowId> = None;
        for i in 0..n {
            let flow = self.sending[host][i];
            self.advance(now, flow, share);
            let f = &mut self.flows[flow.0];
            f.version = f.version.wrapping_add(1); // outdates any earlier completion
            let left = self.flows[flow.0].remaining;
            if first.is_none_or(|f| (left, flow) < (self.flows[f.0].remaining, f)) {
                first = Some(flow);
            }
        }
        if let Some(flow) = first {
            let f = &self.flows[flow.0];
            if let Some(at) = completion(now, f) {
                out.push(Completion { at, flow, version: f.version });
            }
        }
    }

    /// Max-min fair rates for every busy flow by progressive filling: the
    /// link with the smallest fair share fixes its flows at that share, which
    /// leaves the rest of their other link to that link's other flows.
    fn fill(&mut self, now: Nanos, out: &mut Vec<Completion>) {
        let hosts = self.up.len();
        // Links 0..hosts are uplinks, hosts..2*hosts downlinks.
        let mut cap: Vec<f64> = self.up.iter().chain(self.down.iter()).copied().collect();
        let mut unfixed: Vec<usize> = self.sending.iter().chain(self.receiving.iter()).map(Vec::len).collect();
        let mut fixed: Vec<bool> = vec![false; self.flows.len()];
        let mut heap = BinaryHeap::new();
        for (link, &n) in unfixed.iter().enumerate() {
            if n > 0 {
                heap.push(Share { share: cap[link] / n as f64, link });
            }
        }
        let mut rates = Vec::new();
        while let Some(Share { share, link }) = heap.pop() {
            let n = unfixed[link];
            if n == 0 || share != cap[link] / n as f64 {
                continue; // outdated entry
            }
            let flows = if link < hosts { &self.sending[link] } else { &self.receiving[link - hosts] };
            for &flow in flows {
                if fixed[flow.0] {
                    continue;
                }
                fixed[flow.0] = true;
                rates.push((flow, share));
                let f = &self.flows[flow.0];
                let other = if link < hosts { hosts + f.to } else { f.from };
                if share.is_finite() {
                    cap[other] = (cap[other] - share).max(0.0);
                }
                unfixed[other] -= 1;
                if unfixed[other] > 0 {
                    heap.push(Share { share: cap[other] / unfixed[other] as f64, link: other });
                }
            }
            unfixed[link] = 0;
        }
        for (flow, rate) in rates {
            self.set_rate(now, flow, rate, out);
        }
    }

    fn set_rate(&mut self, now: Nanos, flow: FlowId, rate: f64, out: &mut Vec<Completion>) {
        if self.flows[flow.0].rate == rate {
            return; // unchanged: its completion stands
        }
        self.advance(now, flow, rate);
        let f = &mut self.flows[flow.0];
        f.version = f.version.wrapping_add(1);
        if let Some(at) = completion(now, f) {
            out.push(Completion { at, flow, version: f.version });
        }
    }

    /// Counts what the flow sent since its last change and sets its new rate.
    fn advance(&mut self, now: Nanos, flow: FlowId, rate: f64) {
        let f = &mut self.flows[flow.0];
        let dt = now.saturating_sub(f.since) as f64 / 1e9;
        f.remaining = (f.remaining - f.rate * dt).max(0.0);
        f.since = now;
        f.rate = rate;
    }
}

/// When the flow's head frame is sent at its current rate; none while stalled.
fn completion(now: Nanos, f: &Flow) -> Option<Nanos> {
    if f.rate.is_infinite() || f.remaining == 0.0 {
        Some(now)
    } else if f.rate <= 0.0 {
        None // stalled until a share frees up
    } else {
        Some(now + (f.remaining / f.rate * 1e9).ceil() as Nanos)
    }
}

fn remove(list: &mut Vec<FlowId>, flow: FlowId) {
    if let Some(i) = list.iter().position(|f| *f == flow) {
        list.swap_remove(i);
    }
}

/// A link's fair share, smallest first out of the heap.
#[derive(PartialEq)]
struct Share {
    share: f64,
    link: usize,
}

impl Eq for Share {}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        other.share.total_cmp(&self.share).then(other.link.cmp(&self.link))
    }
}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn two_flows_on_one_uplink_get_half_each() {
        let mut l = Links::default();
        let (a, b, c) = (l.add_host(10.0, INF), l.add_host(10.0, INF), l.add_host(10.0, INF));
        let (ab, ac) = (l.add_flow(a, b), l.add_flow(a, c));
        let mut out = Vec::new();
        l.start(0, ab, 10, &mut out);
        assert_eq!(l.rate(ab), 10.0);
        l.start(0, ac, 10, &mut out);
        assert_eq!((l.rate(ab), l.rate(ac)), (5.0, 5.0));
        let last = out.iter().rev().find(|c| c.flow == ab).unwrap();
        assert_eq!(last.at, 2_000_000_000, "10 bytes at 5 B/s");
        assert!(l.is_current(last));
        l.finish(1_000_000_000, ac, &mut out);
        assert_eq!(l.rate(ab), 10.0, "alone again");
        let last = *out.last().unwrap();
        assert_eq!((last.flow, last.at), (ab, 1_500_000_000), "5 bytes left at 10 B/s");
    }

    #[test]
    fn a_flow_limited_elsewhere_leaves_its_share_to_the_others() {
        let mut l = Links::default();
        let a = l.add_host(10.0, INF);
        let (b, c) = (l.add_host(10.0, INF), l.add_host(10.0, 2.0));
        let (ab, ac) = (l.add_flow(a, b), l.add_flow(a, c));
        let mut out = Vec::new();
        l.start(0, ab, 100, &mut out);
        l.start(0, ac, 100, &mut out);
        assert_eq!((l.rate(ab), l.rate(ac)), (8.0, 2.0), "c's downlink holds its flow to 2");
        // Two senders into one capped downlink share it.
        let d = l.add_host(10.0, INF);
        let dc = l.add_flow(d, c);
        l.start(0, dc, 100, &mut out);
        assert_eq!((l.rate(ac), l.rate(dc), l.rate(ab)), (1.0, 1.0, 9.0));
    }

    /// Runs the links' completions in time order, outdated ones skipped, and
    /// returns when each flow finished.
    fn drain(l: &mut Links, mut out: Vec<Completion>) -> Vec<(FlowId, Nanos)> {
        let mut done = Vec::new();
        while let Some(i) = (0..out.len()).min_by_key(|&i| (out[i].at, out[i].flow)) {
            let c = out.swap_remove(i);
            if l.is_current(&c) {
                done.push((c.flow, c.at));
                l.finish(c.at, c.flow, &mut out);
            }
        }
        done
    }

    #[test]
    fn flows_on_one_uplink_finish_in_order_of_what_they_have_left() {
        let mut l = Links::default();
        let (a, b, c, d) = (l.add_host(10.0, INF), l.add_host(1.0, INF), l.add_host(1.0, INF), l.add_host(1.0, INF));
        let (ab, ac, ad) = (l.add_flow(a, b), l.add_flow(a, c), l.add_flow(a, d));
        let mut out = Vec::new();
        l.start(0, ad, 30, &mut out);
        l.start(0, ac, 20, &mut out);
        l.start(0, ab, 10, &mut out);
        assert_eq!(out.iter().filter(|c| l.is_current(c)).count(), 1, "only the first has a completion");
        // 10 bytes each at 10/3 B/s, then 10 more each at 5 B/s, then 10 alone.
        let s = 1_000_000_000;
        assert_eq!(drain(&mut l, out), vec![(ab, 3 * s), (ac, 5 * s), (ad, 6 * s)]);
    }

    #[test]
    fn what_arrived_of_a_frame_is_told_once() {
        let mut l = Links::default();
        let (a, b) = (l.add_host(10.0, INF), l.add_host(10.0, INF));
        let ab = l.add_flow(a, b);
        let mut out = Vec::new();
        l.start(0, ab, 100, &mut out);
        let s = 1_000_000_000;
        assert_eq!(l.take_arrived(s, ab), 10);
        assert_eq!(l.take_arrived(s, ab), 0, "told once");
        let c = l.add_host(1.0, INF);
        let ac = l.add_flow(a, c);
        l.start(2 * s, ac, 100, &mut out); // from 2 s, ab's share is 5 B/s
        assert_eq!(l.take_arrived(4 * s, ab), 10 + 10);
        l.finish(4 * s, ab, &mut out);
        assert_eq!(l.take_arrived(5 * s, ab), 0, "an idle flow sends nothing");
    }

    #[test]
    fn an_unlimited_uplink_sends_at_once() {
        let mut l = Links::default();
        let (a, b) = (l.add_host(INF, INF), l.add_host(1.0, INF));
        let ab = l.add_flow(a, b);
        let mut out = Vec::new();
        l.start(7, ab, 1 << 20, &mut out);
        assert_eq!(out.last().map(|c| c.at), Some(7));
    }
}
