//! The little JSON the programs write (the tracker's `/stats.json`, the
//! leecher's `--json` lines), by hand: objects of numbers, strings and nested
//! objects. (serde_json's `PartialEq<Value>` impls for
//! integers break type inference of `assert_eq!(x, [])` across the crate.)

use std::fmt::{Display, Write as _};

/// Appends `s` as a JSON string: quotes, backslashes and control characters escaped.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // '<' too, so no JSON string can close a <script> it is put in.
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '<' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An object being written: `{`, then members, then [`Object::end`].
pub struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl Object<'_> {
    pub fn new(out: &mut String) -> Object<'_> {
        out.push('{');
        Object { out, first: true }
    }

    /// Writes the key of the next member; its value follows, written by the caller.
    pub fn key(&mut self, key: &str) -> &mut String {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        string(self.out, key);
        self.out.push(':');
        self.out
    }

    pub fn number(&mut self, key: &str, n: impl Display) -> &mut Self {
        let _ = write!(self.key(key), "{n}");
        self
    }

    pub fn string(&mut self, key: &str, s: &str) -> &mut Self {
        string(self.key(key), s);
        self
    }

    pub fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_json() {
        let mut out = String::new();
        let mut o = Object::new(&mut out);
        o.number("n", 3).string("s", "a\"b\\c\n\u{1}</script>");
        let inner = o.key("o");
        let mut inner = Object::new(inner);
        inner.number("x", 1.5);
        inner.end();
        o.end();
        assert_eq!(out, r#"{"n":3,"s":"a\"b\\c\n\u0001\u003c/script>","o":{"x":1.5}}"#);
        out.clear();
        Object::new(&mut out).end();
        assert_eq!(out, "{}");
        out.clear();
        string(&mut out, "\u{7f}\t\u{e9}");
        assert_eq!(out, r#""\u007f\té""#);
    }
}
