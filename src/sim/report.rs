//! What a simulation prints: a table per class, one JSON object as the last
//! line, and with `--out` per-peer JSON lines and an SVG of the run.

use std::fmt::Write as _;

use super::run::{Outcome, Peer};
use super::scenario::{Arrivals, MIB};
use super::world::Hostile;

/// Figures of a run, as in the JSON line.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub t_p2p: f64,
    /// The last downloader's finish, seconds from the release.
    pub last: f64,
    pub ratio: f64,
    /// Each peer's own time (done - arrival) over T_p2p, on average: with
    /// Poisson arrivals, how long a peer waits for its copy.
    pub own_ratio: f64,
    pub seed_copies: f64,
    pub first_chunk_max: f64,
    pub unfinished: usize,
    /// How long finished peers stayed after done (until their seeding goal
    /// was met), on average and at most, seconds: what a user's `get` waits.
    pub stay_mean: f64,
    pub stay_max: f64,
    /// Finished peers still serving at the limit.
    pub staying: usize,
}

/// A peer expected to finish: it neither crashed nor is hostile.
fn counted(p: &Peer) -> bool {
    !p.crashed && !p.poisoner && p.hostile.is_none()
}

pub fn summary(o: &Outcome) -> Summary {
    let honest: Vec<&Peer> = o.peers.iter().filter(|p| counted(p)).collect();
    let last = honest.iter().filter_map(|p| p.done).fold(0.0, f64::max);
    let own: Vec<f64> = honest.iter().filter_map(|p| Some((p.done? - p.arrive) / o.t_p2p)).collect();
    let stays: Vec<f64> = honest.iter().filter_map(|p| Some(p.left? - p.done?)).collect();
    Summary {
        n: o.peers.len(),
        t_p2p: o.t_p2p,
        last,
        ratio: last / o.t_p2p,
        own_ratio: own.iter().sum::<f64>() / own.len().max(1) as f64,
        seed_copies: o.seed_uploaded as f64 / o.scenario.size as f64,
        first_chunk_max: honest.iter().filter_map(|p| Some(p.first_chunk? - p.arrive)).fold(0.0, f64::max),
        unfinished: honest.iter().filter(|p| p.done.is_none()).count(),
        stay_mean: stays.iter().sum::<f64>() / stays.len().max(1) as f64,
        stay_max: stays.iter().copied().fold(0.0, f64::max),
        staying: honest.iter().filter(|p| p.done.is_some() && p.left.is_none()).count(),
    }
}

/// The table: one row per class, then the seed.
pub fn table(o: &Outcome) -> String {
    let s = &o.scenario;
    let mut out = String::new();
    let arrivals = match s.arrivals {
        Arrivals::All => "all at once".to_string(),
        Arrivals::Poisson(span) => format!("poisson over {}s", span.as_secs_f64()),
    };
    let _ = writeln!(
        out,
        "{} peers, {} in {} KiB chunks, seed up {}, arrivals {arrivals}, seed {}: T_p2p {:.2}s",
        s.peers,
        mib(s.size as f64),
        s.chunk() >> 10,
        rate(s.seed_up),
        s.seed,
        o.t_p2p
    );
    let _ = writeln!(
        out,
        "{:<10} {:>5} {:>7} {:>7} {:>7} {:>9} {:>9} {:>8}",
        "class", "peers", "first", "median", "last", "1st chunk", "unfinished", "up use"
    );
    let end = summary(o).last;
    for (c, class) in s.classes.iter().enumerate() {
        let peers: Vec<&Peer> = o.peers.iter().filter(|p| p.class == c && counted(p)).collect();
        if peers.is_empty() {
            continue;
        }
        let mut times: Vec<f64> = peers.iter().filter_map(|p| p.done.map(|d| (d - p.arrive) / o.t_p2p)).collect();
        times.sort_by(f64::total_cmp);
        let pick = |q: f64| times.get(((times.len() as f64 - 1.0) * q).round() as usize).copied();
        let first_chunk = peers.iter().filter_map(|p| Some(p.first_chunk? - p.arrive)).fold(0.0, f64::max);
        let unfinished = peers.iter().filter(|p| p.done.is_none()).count();
        let _ = writeln!(
            out,
            "{:<10} {:>5} {:>7} {:>7} {:>7} {:>8.2}s {:>10} {:>7.0}%",
            rate(class.up),
            peers.len(),
            ratio(pick(0.0)),
            ratio(pick(0.5)),
            ratio(pick(1.0)),
            first_chunk,
            unfinished,
            100.0 * upload_use(&peers, end)
        );
    }
    let sum = summary(o);
    let hostile = |h: Hostile| o.peers.iter().filter(|p| p.hostile == Some(h)).count();
    let others: Vec<String> = [
        (o.peers.iter().filter(|p| p.crashed).count(), "crashed"),
        (o.peers.iter().filter(|p| p.poisoner).count(), "poisoners"),
        (hostile(Hostile::Staller), "stallers"),
        (hostile(Hostile::Rejecter), "rejecters"),
        (hostile(Hostile::NonReader), "non-readers"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let _ = writeln!(
        out,
        "seed: {:.3} copies sent; last {:.2}s = {:.3} x T_p2p{}; chunks verified {}, rejected {}; {} events",
        sum.seed_copies,
        sum.last,
        sum.ratio,
        if others.is_empty() { String::new() } else { format!("; {}", others.join(", ")) },
        o.verified,
        o.rejected,
        o.events
    );
    let _ = writeln!(
        out,
        "after done: peers stayed {:.2}s on average, {:.2}s at most{}",
        sum.stay_mean,
        sum.stay_max,
        if sum.staying > 0 { format!("; {} still serving at the limit", sum.staying) } else { String::new() }
    );
    if let Some(hops) = &o.hops {
        let _ = write!(out, "{hops}");
    }
    out
}

/// Chunk bytes the peers sent over what their uplinks could have sent
/// while they were there, up to `end`.
fn upload_use(peers: &[&Peer], end: f64) -> f64 {
    let sent: u64 = peers.iter().map(|p| p.sent_per_sec.iter().sum::<u64>()).sum();
    let could: f64 = peers.iter().map(|p| p.up * (p.left.unwrap_or(end).min(end) - p.arrive).max(0.0)).sum();
    if could > 0.0 {
        sent as f64 / could
    } else {
        0.0
    }
}

/// The last line: one JSON object.
pub fn json(o: &Outcome, wall: bool) -> String {
    let s = summary(o);
    let mut line = format!(
        "{{\"n\":{},\"t_p2p\":{:.3},\"last\":{:.3},\"ratio\":{:.4},\"own_ratio\":{:.4},\"seed_copies\":{:.4},\
         \"first_chunk_max\":{:.3},\"unfinished\":{},\"stay_mean\":{:.3},\"stay_max\":{:.3},\"staying\":{},\
         \"verified\":{},\"rejected\":{},\"events\":{}",
        s.n,
        s.t_p2p,
        s.last,
        s.ratio,
        s.own_ratio,
        s.seed_copies,
        s.first_chunk_max,
        s.unfinished,
        s.stay_mean,
        s.stay_max,
        s.staying,
        o.verified,
        o.rejected,
        o.events
    );
    if wall {
        let _ = write!(line, ",\"wall_s\":{:.2}", o.wall.as_secs_f64());
    }
    line.push('}');
    line
}

/// One JSON object per downloader.
pub fn peer_lines(o: &Outcome) -> String {
    let opt = |v: Option<f64>| v.map_or("null".to_string(), |v| format!("{v:.4}"));
    let mut out = String::new();
    for (i, p) in o.peers.iter().enumerate() {
        let _ = writeln!(
            out,
            "{{\"peer\":{i},\"class\":{},\"up\":{},\"arrive\":{:.4},\"first_chunk\":{},\"done\":{},\"left\":{},\
             \"crashed\":{},\"poisoner\":{},\"hostile\":{},\"failed\":{},\"uploaded\":{},\"from_seeders\":{},\
             \"from_peers\":{}}}",
            p.class,
            p.up,
            p.arrive,
            opt(p.first_chunk),
            opt(p.done),
            opt(p.left),
            p.crashed,
            p.poisoner,
            p.hostile.map_or("null".to_string(), |h| format!("\"{}\"", h.name())),
            p.failed.is_some(),
            p.uploaded,
            p.from_seeders,
            p.from_peers
        );
    }
    out
}

/// The completion curve (share of downloaders done) and the use of all
/// upload capacity, second by second, in one SVG.
pub fn svg(o: &Outcome) -> String {
    let (w, h, pad) = (800.0, 300.0, 40.0);
    let end = summary(o).last.max(1.0);
    let x = |t: f64| pad + (w - 2.0 * pad) * t / end;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v.clamp(0.0, 1.0);
    let mut done: Vec<f64> = o.peers.iter().filter_map(|p| p.done).collect();
    done.sort_by(f64::total_cmp);
    let n = o.peers.len().max(1) as f64;
    let mut curve = format!("{:.1},{:.1}", x(0.0), y(0.0));
    for (k, t) in done.iter().enumerate() {
        let _ = write!(curve, " {:.1},{:.1} {:.1},{:.1}", x(*t), y(k as f64 / n), x(*t), y((k + 1) as f64 / n));
    }
    let secs = end.ceil() as usize;
    let mut used = String::new();
    for t in 0..secs {
        let mid = t as f64 + 0.5;
        let present: Vec<&Peer> =
            o.peers.iter().filter(|p| p.arrive <= mid && p.left.is_none_or(|l| l > mid)).collect();
        let cap: f64 = o.scenario.seed_up + present.iter().map(|p| p.up).sum::<f64>();
        let sent: u64 = o.seed_sent_per_sec.get(t).copied().unwrap_or(0)
            + o.peers.iter().map(|p| p.sent_per_sec.get(t).copied().unwrap_or(0)).sum::<u64>();
        let _ = write!(used, " {:.1},{:.1}", x(mid), y(sent as f64 / cap));
    }
    let tp = x(o.t_p2p.min(end));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{tp:.1}\" y1=\"{pad}\" x2=\"{tp:.1}\" y2=\"{b}\" stroke=\"gray\" stroke-dasharray=\"4\"/>\n\
         <text x=\"{tp:.1}\" y=\"{top}\">T_p2p</text>\n\
         <polyline fill=\"none\" stroke=\"steelblue\" stroke-width=\"2\" points=\"{curve}\"/>\n\
         <polyline fill=\"none\" stroke=\"darkorange\" points=\"{used}\"/>\n\
         <text x=\"{pad}\" y=\"20\">{} peers: share done (blue), upload capacity in use (orange); 0 to {end:.1} s</text>\n\
         </svg>\n",
        o.peers.len(),
        b = h - pad,
        r = w - pad,
        top = pad - 4.0,
    )
}

fn ratio(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.3}"))
}

fn mib(bytes: f64) -> String {
    format!("{:.0} MiB", bytes / MIB)
}

fn rate(bytes: f64) -> String {
    if bytes.is_infinite() {
        "unlimited".to_string()
    } else {
        format!("{:.0}M/s", bytes / MIB)
    }
}
