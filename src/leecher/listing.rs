//! `list` as a table whose columns line up whatever the names: widths are
//! measured in terminal columns (an East Asian character takes two), names
//! are escaped, and the name column is as wide as the longest name (at most
//! `MAX_NAME_COLUMNS`; a longer name pushes its own row's other columns
//! right rather than being cut, so it can still be copied whole).

use unicode_width::UnicodeWidthStr;

use crate::common::{fmt, text};
use crate::wire::catalog::ListEntry;

const MAX_NAME_COLUMNS: usize = 48;

/// The header and one row per entry.
pub fn table(entries: &[ListEntry]) -> Vec<String> {
    let rows: Vec<(String, String, String, String)> = entries
        .iter()
        .map(|e| (text::escape(&e.name).to_string(), fmt::bytes(e.size), e.seeders.to_string(), e.id.to_hex()))
        .collect();
    let header = ("NAME".to_string(), "SIZE".to_string(), "SEEDERS".to_string(), "CONTENT ID".to_string());
    let name_w = rows.iter().map(|r| r.0.width()).chain([4]).max().unwrap_or(4).min(MAX_NAME_COLUMNS);
    let size_w = rows.iter().map(|r| r.1.len()).chain([4]).max().unwrap_or(4);
    let seeders_w = rows.iter().map(|r| r.2.len()).chain([7]).max().unwrap_or(7);
    std::iter::once(&header)
        .chain(rows.iter())
        .map(|(name, size, seeders, id)| {
            let pad = " ".repeat(name_w.saturating_sub(name.width()));
            format!("{name}{pad}  {size:>size_w$}  {seeders:>seeders_w$}  {id}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hash20;

    fn entry(name: &str, size: u64) -> ListEntry {
        ListEntry { id: Hash20::of(name.as_bytes()), name: name.into(), size, chunk_size: 1 << 20, seeders: 1 }
    }

    #[test]
    fn columns_line_up_with_wide_and_long_names() {
        let lines = table(&[entry("a.txt", 5), entry("東京の地図.zip", 3 << 30), entry("x\u{1b}y", 1 << 20)]);
        let header_id_at = lines[0][..lines[0].find("CONTENT ID").unwrap()].width();
        let id_at: Vec<usize> = lines.iter().skip(1).map(|l| l.width() - 40).chain([header_id_at]).collect();
        assert!(id_at.iter().all(|&c| c == id_at[0]), "the content ids start in one column:\n{}", lines.join("\n"));
        assert!(lines[0].starts_with("NAME "), "{}", lines[0]);
        assert!(lines[3].starts_with("x\\x1by "), "escaped: {}", lines[3]);
        assert!(lines[2].contains("3.0 GiB"), "{}", lines[2]);
        let long = "n".repeat(100);
        let lines = table(&[entry(&long, 1), entry("b", 1)]);
        assert!(lines[1].starts_with(&long), "a long name is kept whole: {lines:?}");
        assert_eq!(
            lines[2].find("1 B"),
            Some(MAX_NAME_COLUMNS + 3),
            "the column stays at most {MAX_NAME_COLUMNS} wide"
        );
    }
}
