//! The tracker's HTTP face, sans IO: request heads parsed by `httparse`,
//! the connection rules ([`conns`]), routing, and the answers: the status
//! page ([`page`]), `/stats.json` and `/metrics` ([`metrics`]). The tracker
//! hands in its figures ([`Figures`]) and a view of its catalog ([`Files`]);
//! `/announce` and `/scrape` are answered by the tracker core itself
//! (`wire::http` holds their encoding).

pub mod answer;
pub mod conns;
pub mod metrics;
pub mod page;
pub mod request;

use std::time::{Duration, Instant};

use crate::hash::Hash20;
use crate::wire::http::{pairs, percent_decode};

/// A counter or gauge with its label values, as /metrics and /stats.json show it.
pub type Labelled<const N: usize> = Vec<([&'static str; N], u64)>;

/// Everything the status page, /stats.json and /metrics show, taken from
/// the tracker when a request comes.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub uptime: Duration,
    /// Resident set size of the process, from /proc.
    pub rss_bytes: u64,
    pub files: usize,
    /// Bytes of the files in the catalog (sum of their sizes).
    pub file_bytes: u64,
    pub swarms: usize,
    pub peers: usize,
    pub peer_addresses: usize,
    /// Announces by `[protocol, result]` (`ok`, `refused`).
    pub announces: Labelled<2>,
    /// Scrapes by `[protocol]`.
    pub scrapes: Labelled<1>,
    /// Announces per second over the last window (all protocols), and scrapes.
    pub announce_rate: f64,
    pub scrape_rate: f64,
    /// Announces refused, by `[cap]`.
    pub refusals: Labelled<1>,
    /// Malformed or refused input, by `[kind]`.
    pub errors: Labelled<1>,
    /// Peers that joined, left (event=stopped) and expired.
    pub joins: u64,
    pub leaves: u64,
    pub expired: u64,
    /// HTTP requests read (heads parsed whole).
    pub http_requests: u64,
    /// Open TCP connections by `[kind]` (`catalog`, `http`).
    pub connections: Labelled<1>,
    /// Connections the rules closed or refused, by `[kind, reason]`.
    pub connections_closed: Labelled<2>,
    /// Bytes received and sent, by `[protocol]` (`udp`, `tcp`).
    pub received_bytes: Labelled<1>,
    pub sent_bytes: Labelled<1>,
}

/// One catalog file as the status page and /stats.json list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub name: String,
    pub id: Hash20,
    pub size: u64,
    pub chunks: u32,
    pub seeders: u32,
    pub leechers: u32,
    pub completed: u32,
}

/// The catalog as the HTTP face reads it: files in (name, content id)
/// order, so an answer can be continued after its last row whatever was
/// published or dropped in between.
pub trait Files {
    /// Appends up to `max` files whose name contains `q` (ASCII letters
    /// matched in any case), after the file `after`, past the first `skip` such.
    fn files(&self, q: &str, after: Option<(&str, &Hash20)>, skip: usize, max: usize, out: &mut Vec<FileRow>);
    /// Files whose name contains `q`.
    fn count(&self, q: &str) -> usize;
}

/// Whether `name` contains `q`, ASCII letters in any case (no allocation:
/// a filter runs over every name of a large catalog).
pub fn matches(name: &str, q: &str) -> bool {
    let (name, q) = (name.as_bytes(), q.as_bytes());
    q.is_empty() || name.windows(q.len()).any(|w| w.eq_ignore_ascii_case(q))
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/announce?...` and `/scrape?...`, with the raw query.
    Announce(&'a str),
    Scrape(&'a str),
    Metrics,
    /// `/stats.json` and `/`, the list filtered and paged.
    Stats(Listing),
    Page(Listing),
    NotFound,
}

/// Longest filter kept, in bytes (a file name's limit).
const MAX_FILTER: usize = 255;
/// Files per page by default, and at most (`per=`).
pub const PER_PAGE: usize = 100;
pub const MAX_PER_PAGE: usize = 1000;

/// Which files a listing shows: `q=` the filter, `page=` from 1, `per=` per
/// page (`/stats.json` without `page=` lists every file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub q: String,
    pub page: usize,
    pub per: usize,
    pub all: bool,
}

impl Route<'_> {
    pub fn of<'a>(path: &str, query: &'a str) -> Route<'a> {
        match path {
            "/announce" => Route::Announce(query),
            "/scrape" => Route::Scrape(query),
            "/metrics" => Route::Metrics,
            "/stats.json" => Route::Stats(Listing::of(query, true)),
            "/" => Route::Page(Listing::of(query, false)),
            _ => Route::NotFound,
        }
    }
}

impl Listing {
    fn of(query: &str, all_by_default: bool) -> Listing {
        let mut listing = Listing { q: String::new(), page: 1, per: PER_PAGE, all: all_by_default };
        for (key, raw) in pairs(query) {
            let mut value = Vec::new();
            if percent_decode(raw, &mut value).is_err() {
                continue;
            }
            let value = String::from_utf8_lossy(&value);
            match key {
                "q" => listing.q = cut(value.trim(), MAX_FILTER).to_string(),
                "page" => {
                    listing.page = value.parse().unwrap_or(1).max(1);
                    listing.all = false;
                }
                "per" => listing.per = value.parse().unwrap_or(PER_PAGE).min(MAX_PER_PAGE),
                _ => {}
            }
        }
        listing
    }

    /// Files before this page.
    pub fn skip(&self) -> usize {
        if self.all {
            0
        } else {
            (self.page - 1).saturating_mul(self.per)
        }
    }

    /// Files on this page at most.
    pub fn limit(&self) -> usize {
        if self.all {
            usize::MAX
        } else {
            self.per
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// A per-second rate over windows of `WINDOW`: the last full window's.
#[derive(Debug, Clone)]
pub struct Rate {
    since: Instant,
    count_then: u64,
    rate: f64,
}

impl Rate {
    pub const WINDOW: Duration = Duration::from_secs(5);

    pub fn new(now: Instant) -> Rate {
        Rate { since: now, count_then: 0, rate: 0.0 }
    }

    /// Tells the counter's value at `now`; returns the rate.
    pub fn update(&mut self, now: Instant, count: u64) -> f64 {
        let dt = now.saturating_duration_since(self.since);
        if dt >= Rate::WINDOW {
            self.rate = count.saturating_sub(self.count_then) as f64 / dt.as_secs_f64();
            self.since = now;
            self.count_then = count;
        }
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_listings() {
        assert_eq!(Route::of("/announce", "a=1"), Route::Announce("a=1"));
        assert_eq!(Route::of("/scrape", ""), Route::Scrape(""));
        assert_eq!(Route::of("/metrics", ""), Route::Metrics);
        assert_eq!(Route::of("/nope", ""), Route::NotFound);
        let Route::Page(l) = Route::of("/", "q=%3Cimg+x&page=3&per=5000") else { panic!() };
        assert_eq!(l, Listing { q: "<img x".into(), page: 3, per: MAX_PER_PAGE, all: false });
        assert_eq!((l.skip(), l.limit()), (2000, 1000));
        let Route::Stats(l) = Route::of("/stats.json", "q=%zz&page=0") else { panic!() };
        assert_eq!((l.q.as_str(), l.page, l.all), ("", 1, false));
        let Route::Stats(l) = Route::of("/stats.json", "") else { panic!() };
        assert_eq!((l.skip(), l.limit()), (0, usize::MAX));
        let Route::Page(l) = Route::of("/", &format!("q={}", "é".repeat(200))) else { panic!() };
        assert_eq!(l.q.len(), 254, "cut at a character boundary");
    }

    #[test]
    fn filter_ignores_ascii_case() {
        assert!(matches("Big.ISO", "big.iso"));
        assert!(matches("anything", ""));
        assert!(!matches("a", "ab"));
    }

    #[test]
    fn rate_over_whole_windows() {
        let t0 = Instant::now();
        let mut r = Rate::new(t0);
        assert_eq!(r.update(t0 + Duration::from_secs(4), 100), 0.0, "not a whole window yet");
        assert_eq!(r.update(t0 + Duration::from_secs(5), 100), 20.0);
        assert_eq!(r.update(t0 + Duration::from_secs(9), 1000), 20.0);
        assert_eq!(r.update(t0 + Duration::from_secs(10), 150), 10.0);
    }
}
