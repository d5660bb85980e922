//! Human-readable sizes, rates and durations for status lines.

use std::time::Duration;

const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];

/// The unit `n` is shown in: the largest power of 1024 at most `n`.
fn unit_of(n: u64) -> usize {
    let mut unit = 0;
    while unit + 1 < UNITS.len() && n >> (10 * (unit + 1)) > 0 {
        unit += 1;
    }
    unit
}

/// `n` as a number in `unit`: `1.5` for 1536 in KiB.
fn number_in(n: u64, unit: usize) -> String {
    if unit == 0 {
        n.to_string()
    } else {
        format!("{:.1}", n as f64 / (1u64 << (10 * unit)) as f64)
    }
}

/// `1536` -> `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    let unit = unit_of(n);
    format!("{} {}", number_in(n, unit), UNITS[unit])
}

/// `n` as a bare number in the unit `bytes(like)` uses: `27.0` for 27 MiB
/// beside 64 MiB, so `27.0/64.0 MiB` needs the unit once.
pub fn bytes_number(n: u64, like: u64) -> String {
    number_in(n, unit_of(like))
}

/// `1 peer`, `0 peers`, `3 peers`, `2 subdirectories`.
pub fn plural(n: u64, noun: &str) -> String {
    match noun.strip_suffix('y') {
        _ if n == 1 => format!("1 {noun}"),
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

/// Bytes per second as `12.3 MiB/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", bytes(bytes_per_sec.max(0.0) as u64))
}

/// `75 s` -> `1m15s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{}.{}s", s, d.subsec_millis() / 100),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `2026-12-05T09:26:02Z`: the UTC time of day to the second, as the log lines show it.
pub fn timestamp(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
        assert_eq!(bytes_number(27 << 20, 64 << 20), "27.0");
        assert_eq!(bytes_number(512, 64 << 20), "0.0");
        assert_eq!(bytes_number(5, 9), "5");
        assert_eq!(
            (plural(0, "file"), plural(1, "file"), plural(2, "chunk")),
            ("0 files".into(), "1 file".into(), "2 chunks".into())
        );
        assert_eq!(rate(2048.0), "2.0 KiB/s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_secs(75)), "1m15s");
        assert_eq!(duration(Duration::from_secs(7300)), "2h01m");
        let at = |s: u64| timestamp(std::time::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_462_762), "2026-12-05T09:26:02Z");
    }
}
