//! Strings from the network on a terminal: which characters may not appear
//! in a published name, and the one way to print such a string so that no
//! control sequence reaches the terminal and no look-alike hides.

use std::fmt;

/// Unicode general category Cf (format), Unicode 16.0: bidi overrides,
/// zero-width characters, tags. Checked against the Unicode data in the tests.
const FORMAT: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// True for the characters of general categories Cc (controls), Cf
/// (format), Zl and Zp (line and paragraph separators): those a terminal
/// acts on or draws as nothing.
pub fn is_hidden(c: char) -> bool {
    let cp = u32::from(c);
    c.is_control() || cp == 0x2028 || cp == 0x2029 || FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&cp))
}

/// `s` for a terminal: every [`is_hidden`] character as `\x1b` (ASCII) or
/// `\u{202e}`, and `\` as `\\` so an escape cannot be faked.
pub fn escape(s: &str) -> Escaped<'_> {
    Escaped(s)
}

/// See [`escape`].
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(|c: char| c == '\\' || is_hidden(c)) {
            f.write_str(rest.get(..at).unwrap_or(""))?;
            let c = rest.get(at..).and_then(|r| r.chars().next()).unwrap_or('\\');
            match c {
                '\\' => f.write_str("\\\\")?,
                c if c.is_ascii() => write!(f, "\\x{:02x}", u32::from(c))?,
                c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
            rest = rest.get(at + c.len_utf8()..).unwrap_or("");
        }
        f.write_str(rest)
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicode_general_category::{get_general_category, GeneralCategory as G};

    #[test]
    fn the_table_is_the_unicode_data() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let want =
                matches!(get_general_category(c), G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator);
            assert_eq!(is_hidden(c), want, "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        let hostile = "a\x1b[31mred\x1b]52;c;ZXZpbA==\x07\rb\u{202e}gpj.exe\u{200b}\u{2028}\u{9b}\\x1b ok ß";
        let shown = escape(hostile).to_string();
        assert_eq!(
            shown,
            "a\\x1b[31mred\\x1b]52;c;ZXZpbA==\\x07\\x0db\\u{202e}gpj.exe\\u{200b}\\u{2028}\\u{9b}\\\\x1b ok ß"
        );
        assert!(!shown.chars().any(is_hidden));
        assert_eq!(escape("plain name.bin").to_string(), "plain name.bin");
    }
}
