//! `/metrics` in the Prometheus text exposition format (0.0.4): every name
//! `lmk_tracker_*`, with its unit (`_bytes`, `_seconds`), `_total` on
//! counters, and HELP and TYPE lines; and the same figures as JSON.

use std::fmt::Write as _;

use super::Figures;
use crate::common::json::Object;

/// One metric family: name, type, help text and labels.
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
}

impl Family<'_> {
    fn head(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", self.name, self.help, self.name, self.kind);
    }

    fn value(&self, out: &mut String, value: impl std::fmt::Display) {
        self.head(out);
        let _ = writeln!(out, "{} {value}", self.name);
    }

    fn labelled<const N: usize>(&self, out: &mut String, labels: [&str; N], values: &[([&'static str; N], u64)]) {
        self.head(out);
        for (label_values, value) in values {
            let _ = write!(out, "{}{{", self.name);
            for (i, (label, v)) in labels.iter().zip(label_values).enumerate() {
                let _ = write!(out, "{}{label}=\"{v}\"", if i > 0 { "," } else { "" });
            }
            let _ = writeln!(out, "}} {value}");
        }
    }
}

const fn gauge<'a>(name: &'a str, help: &'a str) -> Family<'a> {
    Family { name, kind: "gauge", help }
}

const fn counter<'a>(name: &'a str, help: &'a str) -> Family<'a> {
    Family { name, kind: "counter", help }
}

/// Appends the exposition of `f`. Label values are fixed names chosen here
/// and in the tracker, never text from the network, so none needs escaping.
pub fn prometheus(f: &Figures, out: &mut String) {
    let announces = counter("lmk_tracker_announces_total", "Announces answered, by protocol and result.");
    announces.labelled(out, ["protocol", "result"], &f.announces);
    counter("lmk_tracker_scrapes_total", "Scrapes answered, by protocol.").labelled(out, ["protocol"], &f.scrapes);
    let refusals = counter("lmk_tracker_refusals_total", "Announces refused, by the cap or rule that refused them.");
    refusals.labelled(out, ["cap"], &f.refusals);
    counter("lmk_tracker_errors_total", "Malformed or refused input, by kind.").labelled(out, ["kind"], &f.errors);
    counter("lmk_tracker_joins_total", "Peers that joined a swarm.").value(out, f.joins);
    counter("lmk_tracker_leaves_total", "Peers that left a swarm with event=stopped.").value(out, f.leaves);
    counter("lmk_tracker_expired_peers_total", "Peers dropped for not announcing in time.").value(out, f.expired);
    gauge("lmk_tracker_peers", "Peers held, all swarms.").value(out, f.peers);
    gauge("lmk_tracker_swarms", "Swarms (info hashes with a live peer) held.").value(out, f.swarms);
    gauge("lmk_tracker_peer_addresses", "Distinct source addresses of the peers held.").value(out, f.peer_addresses);
    gauge("lmk_tracker_catalog_files", "Files in the catalog.").value(out, f.files);
    gauge("lmk_tracker_catalog_bytes", "Bytes of the files in the catalog.").value(out, f.file_bytes);
    counter("lmk_tracker_http_requests_total", "HTTP requests read.").value(out, f.http_requests);
    let conns = gauge("lmk_tracker_connections", "Open TCP connections, by kind.");
    conns.labelled(out, ["kind"], &f.connections);
    let closed = counter("lmk_tracker_connections_closed_total", "TCP connections refused or closed by a rule.");
    closed.labelled(out, ["kind", "reason"], &f.connections_closed);
    let received = counter("lmk_tracker_received_bytes_total", "Bytes received, by protocol.");
    received.labelled(out, ["protocol"], &f.received_bytes);
    counter("lmk_tracker_sent_bytes_total", "Bytes sent, by protocol.").labelled(out, ["protocol"], &f.sent_bytes);
    gauge("lmk_tracker_resident_memory_bytes", "Resident set size of the process.").value(out, f.rss_bytes);
    gauge("lmk_tracker_uptime_seconds", "Seconds since the tracker started.").value(out, f.uptime.as_secs_f64());
}

fn object<const N: usize>(o: &mut Object<'_>, key: &str, values: &[([&'static str; N], u64)]) {
    let mut inner = Object::new(o.key(key));
    for (labels, value) in values {
        inner.number(&labels.join("_"), value);
    }
    inner.end();
}

/// Appends the figures as one JSON object; labelled figures are objects
/// keyed by their label values joined with `_` (`"udp_ok"`).
pub fn json(f: &Figures, out: &mut String) {
    let mut o = Object::new(out);
    o.number("uptime_seconds", f.uptime.as_secs())
        .number("rss_bytes", f.rss_bytes)
        .number("files", f.files)
        .number("file_bytes", f.file_bytes)
        .number("swarms", f.swarms)
        .number("peers", f.peers)
        .number("peer_addresses", f.peer_addresses)
        .number("announce_rate", format_args!("{:.1}", f.announce_rate))
        .number("scrape_rate", format_args!("{:.1}", f.scrape_rate))
        .number("joins", f.joins)
        .number("leaves", f.leaves)
        .number("expired", f.expired)
        .number("http_requests", f.http_requests);
    object(&mut o, "announces", &f.announces);
    object(&mut o, "scrapes", &f.scrapes);
    object(&mut o, "refusals", &f.refusals);
    object(&mut o, "errors", &f.errors);
    object(&mut o, "connections", &f.connections);
    object(&mut o, "connections_closed", &f.connections_closed);
    object(&mut o, "received_bytes", &f.received_bytes);
    object(&mut o, "sent_bytes", &f.sent_bytes);
    o.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn figures() -> Figures {
        Figures {
            uptime: Duration::from_millis(1500),
            peers: 3,
            announces: vec![(["udp", "ok"], 5), (["http", "refused"], 1)],
            refusals: vec![(["peers_per_ip"], 1)],
            ..Figures::default()
        }
    }

    #[test]
    fn exposition_lines() {
        let mut out = String::new();
        prometheus(&figures(), &mut out);
        for line in [
            "# HELP lmk_tracker_peers Peers held, all swarms.\n# TYPE lmk_tracker_peers gauge\nlmk_tracker_peers 3\n",
            "# TYPE lmk_tracker_announces_total counter\nlmk_tracker_announces_total{protocol=\"udp\",result=\"ok\"} 5\nlmk_tracker_announces_total{protocol=\"http\",result=\"refused\"} 1\n",
            "lmk_tracker_refusals_total{cap=\"peers_per_ip\"} 1\n",
            "lmk_tracker_uptime_seconds 1.5\n",
        ] {
            assert!(out.contains(line), "{line} not in\n{out}");
        }
        let names: Vec<&str> =
            out.lines().filter(|l| l.starts_with("# TYPE")).map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert!(names.iter().all(|n| n.starts_with("lmk_tracker_")));
        assert!(names.iter().filter(|n| out.contains(&format!("# TYPE {n} counter"))).all(|n| n.ends_with("_total")));
    }

    #[test]
    fn json_figures() {
        let mut out = String::new();
        json(&figures(), &mut out);
        for part in [
            r#"{"uptime_seconds":1,"rss_bytes":0,"files":0,"#,
            r#""peers":3,"#,
            r#""announce_rate":0.0,"#,
            r#""announces":{"udp_ok":5,"http_refused":1},"scrapes":{},"refusals":{"peers_per_ip":1},"#,
        ] {
            assert!(out.contains(part), "{part} not in {out}");
        }
        assert!(out.ends_with(r#""sent_bytes":{}}"#));
    }
}
