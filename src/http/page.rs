//! The status page (`GET /`) and the file list of `/stats.json`, streamed:
//! the figures first, then the files a few dozen rows at a time as the
//! connection's queue drains, each piece continuing after the last file
//! sent. Every string from the network reaches the page through [`html`].

use std::fmt::Write as _;

use super::metrics;
use super::{Figures, FileRow, Files, Listing};
use crate::common::fmt;
use crate::common::json::Object;
use crate::hash::Hash20;

/// Rows written per piece: a piece stays a few KiB, well under the queue bound.
const ROWS_PER_PIECE: usize = 64;

/// Escapes `s` for HTML text and attribute values: the one way a name, a
/// filter or any other text from the network reaches the page.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes `s` for a query value in a link.
fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

/// An answer under way: where its file list goes on from.
#[derive(Debug)]
pub struct Stream {
    format: Format,
    listing: Listing,
    /// The last file sent; `None` before the first.
    after: Option<(String, Hash20)>,
    /// Files sent so far.
    sent: usize,
    matching: usize,
    done: bool,
    rows: Vec<FileRow>,
}

impl Stream {
    /// Appends the start of the answer (the figures) and returns the stream
    /// of the rest.
    pub fn start(format: Format, listing: Listing, f: &Figures, files: &impl Files, out: &mut Vec<u8>) -> Stream {
        let matching = files.count(&listing.q);
        let s = Stream { format, listing, after: None, sent: 0, matching, done: false, rows: Vec::new() };
        match format {
            Format::Html => out.extend_from_slice(s.page_head(f).as_bytes()),
            Format::Json => {
                let mut text = String::from("{\"figures\":");
                metrics::json(f, &mut text);
                let l = &s.listing;
                let _ = write!(
                    text,
                    ",\"matching\":{matching},\"page\":{},\"per\":{},\"files\":[",
                    if l.all { 0 } else { l.page },
                    if l.all { matching } else { l.per }
                );
                out.extend_from_slice(text.as_bytes());
            }
        }
        s
    }

    /// Appends the next piece; returns false once the answer is complete.
    pub fn feed(&mut self, files: &impl Files, out: &mut Vec<u8>) -> bool {
        if self.done {
            return false;
        }
        let room = self.listing.limit().saturating_sub(self.sent).min(ROWS_PER_PIECE);
        self.rows.clear();
        if room > 0 {
            let skip = if self.after.is_none() { self.listing.skip() } else { 0 };
            let after = self.after.as_ref().map(|(name, id)| (name.as_str(), id));
            files.files(&self.listing.q, after, skip, room, &mut self.rows);
        }
        for row in &self.rows {
            match self.format {
                Format::Html => out.extend_from_slice(html_row(row).as_bytes()),
                Format::Json => {
                    if self.sent > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(json_row(row).as_bytes());
                }
            }
            self.sent += 1;
        }
        if let Some(last) = self.rows.last() {
            self.after = Some((last.name.clone(), last.id));
        }
        if self.rows.len() < room || room == 0 {
            self.done = true;
            match self.format {
                Format::Html => out.extend_from_slice(self.page_tail().as_bytes()),
                Format::Json => out.extend_from_slice(b"]}"),
            }
        }
        !self.done
    }

    fn page_head(&self, f: &Figures) -> String {
        let mut s = String::from(PAGE_START);
        let _ = write!(
            s,
            "<p class=\"up\">up {} &middot; memory <b data-k=\"rss_bytes\" data-f=\"bytes\">{}</b></p>\n<dl>",
            fmt::duration(f.uptime),
            fmt::bytes(f.rss_bytes)
        );
        let scalar = |s: &mut String, key: &str, label: &str, value: String| {
            let _ = write!(s, "<div><dt>{label}</dt><dd data-k=\"{key}\">{value}</dd></div>");
        };
        scalar(&mut s, "files", "files", f.files.to_string());
        let _ = write!(
            s,
            "<div><dt>catalog size</dt><dd data-k=\"file_bytes\" data-f=\"bytes\">{}</dd></div>",
            fmt::bytes(f.file_bytes)
        );
        scalar(&mut s, "swarms", "swarms", f.swarms.to_string());
        scalar(&mut s, "peers", "peers", f.peers.to_string());
        scalar(&mut s, "peer_addresses", "peer addresses", f.peer_addresses.to_string());
        scalar(&mut s, "announce_rate", "announces/s", format!("{:.1}", f.announce_rate));
        scalar(&mut s, "scrape_rate", "scrapes/s", format!("{:.1}", f.scrape_rate));
        scalar(&mut s, "joins", "joins", f.joins.to_string());
        scalar(&mut s, "leaves", "leaves", f.leaves.to_string());
        scalar(&mut s, "expired", "expired", f.expired.to_string());
        s.push_str("</dl>\n<div class=\"cols\">");
        let table = |s: &mut String, title: &str, rows: &mut dyn Iterator<Item = (String, u64)>| {
            let _ = write!(s, "<table class=\"small\"><caption>{title}</caption>");
            for (label, value) in rows {
                let _ = write!(s, "<tr><td>{}</td><td class=\"n\">{value}</td></tr>", html(&label));
            }
            s.push_str("</table>");
        };
        let join = |l: &[&str]| l.join(" ");
        table(&mut s, "announces", &mut f.announces.iter().map(|(l, v)| (join(l), *v)));
        table(&mut s, "scrapes", &mut f.scrapes.iter().map(|(l, v)| (join(l), *v)));
        table(&mut s, "refused by cap", &mut f.refusals.iter().map(|(l, v)| (join(l), *v)));
        table(&mut s, "errors", &mut f.errors.iter().map(|(l, v)| (join(l), *v)));
        table(&mut s, "connections open", &mut f.connections.iter().map(|(l, v)| (join(l), *v)));
        table(&mut s, "connections closed", &mut f.connections_closed.iter().map(|(l, v)| (join(l), *v)));
        let q = html(&self.listing.q);
        let _ = write!(
            s,
            "</div>\n<form method=\"get\" action=\"/\"><input name=\"q\" value=\"{q}\" placeholder=\"filter by name\" aria-label=\"filter by name\"> <button>Filter</button></form>\n<p id=\"matching\">{} file(s){}</p>\n<table id=\"files\"><thead><tr><th>Name</th><th>Size</th><th>Chunks</th><th>Seeders</th><th>Leechers</th><th>Completed</th><th>Content id</th></tr></thead><tbody>\n",
            self.matching,
            if q.is_empty() { String::new() } else { format!(" matching \u{201c}{q}\u{201d}") }
        );
        s
    }

    fn page_tail(&self) -> String {
        let l = &self.listing;
        let pages = self.matching.div_ceil(l.per.max(1)).max(1);
        let link = |page: usize, text: &str| {
            format!("<a href=\"/?q={}&amp;page={page}&amp;per={}\">{text}</a>", html(&url_component(&l.q)), l.per)
        };
        let mut s = String::from("</tbody></table>\n<nav>");
        if l.page > 1 {
            s.push_str(&link(l.page - 1, "&larr; previous"));
        }
        let _ = write!(s, " page {} of {pages} ", l.page);
        if l.page < pages {
            s.push_str(&link(l.page + 1, "next &rarr;"));
        }
        s.push_str("</nav>\n");
        s.push_str(PAGE_END);
        s
    }
}

fn html_row(r: &FileRow) -> String {
    format!(
        "<tr><td class=\"name\">{}</td><td class=\"n\" title=\"{} bytes\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><code>{}</code></td></tr>\n",
        html(&r.name),
        r.size,
        fmt::bytes(r.size),
        r.chunks,
        r.seeders,
        r.leechers,
        r.completed,
        r.id.to_hex()
    )
}

fn json_row(r: &FileRow) -> String {
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.string("name", &r.name)
        .string("content_id", &r.id.to_hex())
        .number("size", r.size)
        .number("chunks", r.chunks)
        .number("seeders", r.seeders)
        .number("leechers", r.leechers)
        .number("completed", r.completed);
    o.end();
    out
}

const PAGE_START: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>lmk-tracker</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}.up{color:#666;margin:0 0 1em}
dl{display:flex;flex-wrap:wrap;gap:.5em;margin:0 0 1em}dl div{background:#fff;border:1px solid #ddd;padding:.4em .8em;border-radius:4px}
dt{font-size:.8em;color:#666}dd{margin:0;font-size:1.2em;font-variant-numeric:tabular-nums}
.cols{display:flex;flex-wrap:wrap;align-items:flex-start;gap:1em;margin-bottom:1em}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
caption{text-align:left;font-weight:bold;padding:.2em 0}.n{text-align:right;font-variant-numeric:tabular-nums}
#files{width:100%}.name{word-break:break-all}code{font-size:.85em}nav{margin:1em 0}input{padding:.3em;width:20em}
</style></head><body>
<h1>lmk-tracker</h1>
"#;

/// A small script refreshes the figures from /stats.json; the page is
/// complete without it.
const PAGE_END: &str = r#"<script>
function human(n){const u=['B','KiB','MiB','GiB','TiB'];let i=0;while(n>=1024&&i<4){n/=1024;i++}return i?n.toFixed(1)+' '+u[i]:n+' B'}
setInterval(function(){fetch('/stats.json?per=0&page=1').then(function(r){return r.json()}).then(function(j){
document.querySelectorAll('[data-k]').forEach(function(e){const v=j.figures[e.dataset.k];if(v!==undefined)e.textContent=e.dataset.f==='bytes'?human(v):String(v)})}).catch(function(){})},5000);
</script>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    struct Catalog(Vec<FileRow>);

    impl Files for Catalog {
        fn files(&self, q: &str, after: Option<(&str, &Hash20)>, skip: usize, max: usize, out: &mut Vec<FileRow>) {
            let rows = self.0.iter().filter(|r| super::super::matches(&r.name, q));
            let rows = rows.filter(|r| after.is_none_or(|(name, id)| (r.name.as_str(), &r.id) > (name, id)));
            out.extend(rows.skip(skip).take(max).cloned());
        }

        fn count(&self, q: &str) -> usize {
            self.0.iter().filter(|r| super::super::matches(&r.name, q)).count()
        }
    }

    fn catalog(n: usize) -> Catalog {
        let row = |i: usize| FileRow {
            name: format!("file{i:04}"),
            id: Hash20([i as u8; 20]),
            size: 1 << 20,
            chunks: 1,
            seeders: 1,
            leechers: 0,
            completed: 0,
        };
        let mut rows: Vec<FileRow> = (0..n).map(row).collect();
        rows.push(FileRow { name: "<img src=x onerror=alert(1)>".into(), ..row(n) });
        rows.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        Catalog(rows)
    }

    fn render(format: Format, listing: Listing, files: &Catalog) -> String {
        let mut out = Vec::new();
        let mut s = Stream::start(format, listing, &Figures::default(), files, &mut out);
        let mut pieces = 0;
        while s.feed(files, &mut out) {
            pieces += 1;
            assert!(pieces < 1000, "the stream ends");
        }
        String::from_utf8(out).unwrap()
    }

    fn listing(q: &str, page: usize, per: usize, all: bool) -> Listing {
        Listing { q: q.into(), page, per, all }
    }

    #[test]
    fn escape_is_the_one_way_in() {
        assert_eq!(html("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let page = render(Format::Html, listing("", 1, 1000, false), &catalog(3));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!page.contains("<img"));
        let page = render(Format::Html, listing("\"><script>", 1, 10, false), &catalog(3));
        assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;\""));
        assert!(page.contains("0 file(s)"));
    }

    #[test]
    fn pages_and_filter() {
        let files = catalog(250);
        let page = render(Format::Html, listing("", 2, 100, false), &files);
        assert!(page.contains("file0099") && page.contains("file0198") && !page.contains("file0199<"));
        assert!(page.contains("page 2 of 3"));
        assert!(page.contains("href=\"/?q=&amp;page=1&amp;per=100\"") && page.contains("page=3&amp;per=100"));
        let page = render(Format::Html, listing("FILE01", 1, 100, false), &files);
        assert!(page.contains("100 file(s) matching"));
        assert_eq!(page.matches("<tr><td class=\"name\">").count(), 100);
        assert!(page.ends_with("</html>\n"));
    }

    #[test]
    fn json_lists_every_file_in_pieces() {
        let files = catalog(200);
        let text = render(Format::Json, listing("", 1, 100, true), &files);
        assert_eq!(text.matches("{\"name\":").count(), 201);
        assert!(text
            .contains(r#","matching":201,"page":0,"per":201,"files":[{"name":"\u003cimg src=x onerror=alert(1)>","#));
        assert!(text.contains(&format!(r#"}},{{"name":"file0000","content_id":"{}","size":1048576,"chunks":1,"seeders":1,"leechers":0,"completed":0}},"#, Hash20([0; 20]).to_hex())));
        assert!(text.ends_with("}]}"));
        let text = render(Format::Json, listing("file", 1, 0, false), &files);
        assert!(text.ends_with(r#","matching":200,"page":1,"per":0,"files":[]}"#), "{text}");
    }
}
