//! The one parser for option values: durations (`30`, `1.5`, `2m`, `1h`),
//! sizes and rates (`300000`, `512K`, `1.5M`, `1G`), counts and plain
//! numbers, each checked against the option's range. Whatever the text
//! (huge, negative, NaN, inf, empty, a wrong unit), the answer is a value in
//! range or an error that states the range: never a panic, never a value a
//! later `Duration` or `Instant` sum could overflow on.

use std::fmt;
use std::time::Duration;

/// What an option's value measures, and so which units it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Seconds, fractions allowed; units ms, s, m, h, d.
    Duration,
    /// Seconds, whole only (BEP 15 carries the announce interval so); units s, m, h, d.
    WholeSeconds,
    /// Bytes (or bytes per second), whole; units B, K, M, G, T (powers of 1024,
    /// also written KB or KiB, any case).
    Bytes,
    /// A whole number, no unit.
    Count,
    /// Any number, no unit.
    Number,
}

/// An option's kind and inclusive range, in its base unit (seconds, bytes, 1).
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub kind: Kind,
    pub min: f64,
    pub max: f64,
}

/// A value that is malformed or out of its range; displays as
/// `must be a duration from 1s to 1d (e.g. 30, 1.5, 2m)`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutOfRange {
    kind: Kind,
    min: f64,
    max: f64,
}

impl Range {
    pub const fn new(kind: Kind, min: f64, max: f64) -> Range {
        Range { kind, min, max }
    }

    /// A duration range.
    pub const fn secs(min: f64, max: f64) -> Range {
        Range::new(Kind::Duration, min, max)
    }

    /// Parses `raw` to a value in base units within the range.
    pub fn parse(&self, raw: &str) -> Result<f64, OutOfRange> {
        let err = OutOfRange { kind: self.kind, min: self.min, max: self.max };
        let value = number_and_unit(raw.trim(), self.kind).ok_or_else(|| err.clone())?;
        let whole = !matches!(self.kind, Kind::Duration | Kind::Number);
        if !value.is_finite() || value < self.min || value > self.max || (whole && value.fract() != 0.0) {
            return Err(err);
        }
        Ok(value)
    }

    /// Parses a duration within the range (whose bounds are far below `u64::MAX` seconds).
    pub fn duration(&self, raw: &str) -> Result<Duration, OutOfRange> {
        let secs = self.parse(raw)?;
        Duration::try_from_secs_f64(secs).map_err(|_| OutOfRange { kind: self.kind, min: self.min, max: self.max })
    }

    /// Parses a whole number within the range, as any integer type the range fits.
    pub fn whole<T: TryFrom<u64>>(&self, raw: &str) -> Result<T, OutOfRange> {
        let err = || OutOfRange { kind: self.kind, min: self.min, max: self.max };
        let value = self.parse(raw)?;
        // Whole and within a range that is below 2^53, so exact.
        T::try_from(value as u64).map_err(|_| err())
    }
}

/// Splits `raw` into a number and a unit of `kind` and returns the value in
/// base units; `None` when either part is not understood.
fn number_and_unit(raw: &str, kind: Kind) -> Option<f64> {
    // "inf", "nan" and "1e9" are numbers to `f64::from_str`; a unit is the
    // alphabetic tail of anything else.
    if let Ok(n) = raw.parse::<f64>() {
        return Some(n);
    }
    let split = raw.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len();
    let (number, unit) = raw.split_at(split);
    let scale = unit_scale(&unit.to_ascii_lowercase(), kind)?;
    let n: f64 = number.parse().ok()?;
    Some(n * scale)
}

/// The base units in one `unit` of `kind`.
fn unit_scale(unit: &str, kind: Kind) -> Option<f64> {
    let scale = match (kind, unit) {
        (Kind::Duration, "ms") => 0.001,
        (Kind::Duration | Kind::WholeSeconds, "s") => 1.0,
        (Kind::Duration | Kind::WholeSeconds, "m") => 60.0,
        (Kind::Duration | Kind::WholeSeconds, "h") => 3600.0,
        (Kind::Duration | Kind::WholeSeconds, "d") => 86400.0,
        (Kind::Bytes, "b") => 1.0,
        (Kind::Bytes, "k" | "kb" | "kib") => (1u64 << 10) as f64,
        (Kind::Bytes, "m" | "mb" | "mib") => (1u64 << 20) as f64,
        (Kind::Bytes, "g" | "gb" | "gib") => (1u64 << 30) as f64,
        (Kind::Bytes, "t" | "tb" | "tib") => (1u64 << 40) as f64,
        _ => return None,
    };
    Some(scale)
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, examples) = match self.kind {
            Kind::Duration => ("a duration", " (e.g. 30, 1.5, 2m)"),
            Kind::WholeSeconds => ("whole seconds", " (e.g. 10, 2m)"),
            Kind::Bytes => ("a whole number of bytes", " (e.g. 300000, 512K, 1.5M)"),
            Kind::Count => ("a whole number", ""),
            Kind::Number => ("a number", ""),
        };
        let (min, max) = (bound(self.kind, self.min), bound(self.kind, self.max));
        write!(f, "must be {what} from {min} to {max}{examples}")
    }
}

/// A range bound in the largest unit that divides it: `0`, `0.1s`, `2m`, `7d`, `16K`, `1T`.
fn bound(kind: Kind, value: f64) -> String {
    let units: &[(f64, &str)] = match kind {
        Kind::Duration | Kind::WholeSeconds => &[(86400.0, "d"), (3600.0, "h"), (60.0, "m"), (1.0, "s")],
        Kind::Bytes => {
            &[((1u64 << 40) as f64, "T"), ((1u64 << 30) as f64, "G"), ((1u64 << 20) as f64, "M"), (1024.0, "K")]
        }
        Kind::Count | Kind::Number => &[],
    };
    if value == 0.0 {
        return "0".to_string();
    }
    match units.iter().find(|(scale, _)| value >= *scale && (value / scale).fract() == 0.0) {
        Some((scale, unit)) => format!("{}{unit}", value / scale),
        None if matches!(kind, Kind::Duration | Kind::WholeSeconds) => format!("{value}s"),
        None => format!("{value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: f64 = 86400.0;

    #[test]
    fn durations_take_fractions_and_units() {
        let r = Range::secs(0.0, DAY);
        for (raw, secs) in
            [("30", 30.0), ("1.5", 1.5), ("2m", 120.0), ("1h", 3600.0), ("250ms", 0.25), ("0", 0.0), (" 2m ", 120.0)]
        {
            assert_eq!(r.parse(raw), Ok(secs), "{raw}");
        }
        assert_eq!(r.duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(r.duration("1d"), Ok(Duration::from_secs(86400)));
    }

    #[test]
    fn sizes_are_binary_and_whole() {
        let r = Range::new(Kind::Bytes, 1.0, (1u64 << 40) as f64);
        for (raw, n) in
            [("300000", 300000u64), ("512K", 512 << 10), ("1.5M", 3 << 19), ("20mib", 20 << 20), ("1G", 1 << 30)]
        {
            assert_eq!(r.whole::<u64>(raw), Ok(n), "{raw}");
        }
        assert!(r.whole::<u64>("1.5").is_err(), "a fraction of a byte");
        assert!(r.whole::<u32>("1T").is_err(), "beyond the target type");
    }

    #[test]
    fn whole_seconds_refuse_fractions() {
        let r = Range::new(Kind::WholeSeconds, 1.0, DAY);
        assert_eq!(r.whole::<u32>("2m"), Ok(120));
        assert!(r.whole::<u32>("1.5").is_err());
        assert!(r.whole::<u32>("250ms").is_err(), "no millisecond unit for whole seconds");
    }

    #[test]
    fn malformed_and_out_of_range_values_are_errors() {
        let ranges = [
            Range::secs(1.0, DAY),
            Range::new(Kind::WholeSeconds, 1.0, DAY),
            Range::new(Kind::Bytes, 1.0, (1u64 << 40) as f64),
            Range::new(Kind::Count, 1.0, 1e8),
            Range::new(Kind::Number, 0.0, 1000.0),
        ];
        let bad = [
            "",
            " ",
            "-1",
            "-0.5",
            "99999999999999999999",
            "1e19",
            "1e400",
            "inf",
            "-inf",
            "infinity",
            "NaN",
            "nan",
            "1x",
            "x",
            "K",
            "1.2.3",
            "--1",
            "1 K",
            "0x10",
            "1e",
            "5Q",
            "\u{661}",
        ];
        for r in ranges {
            for raw in bad {
                assert!(r.parse(raw).is_err(), "{:?} {raw:?}", r.kind);
                assert!(r.duration(raw).is_err() && r.whole::<u64>(raw).is_err(), "{:?} {raw:?}", r.kind);
            }
        }
        assert!(Range::secs(1.0, DAY).parse("0.5").is_err(), "below the minimum");
        assert!(Range::new(Kind::Bytes, 1.0, 1e6).parse("1G").is_err(), "above the maximum");
        assert!(Range::new(Kind::Count, 1.0, 10.0).parse("2m").is_err(), "a count has no unit");
    }

    #[test]
    fn the_error_states_the_range() {
        let e = |r: Range, raw| r.parse(raw).unwrap_err().to_string();
        assert_eq!(e(Range::secs(1.0, DAY), "inf"), "must be a duration from 1s to 1d (e.g. 30, 1.5, 2m)");
        assert_eq!(e(Range::secs(0.0, 7.0 * DAY), "x"), "must be a duration from 0 to 7d (e.g. 30, 1.5, 2m)");
        assert_eq!(
            e(Range::new(Kind::WholeSeconds, 1.0, DAY), "1.5"),
            "must be whole seconds from 1s to 1d (e.g. 10, 2m)"
        );
        let chunk = Range::new(Kind::Bytes, 16384.0, 16777216.0);
        assert_eq!(e(chunk, "100"), "must be a whole number of bytes from 16K to 16M (e.g. 300000, 512K, 1.5M)");
        assert!(e(chunk, "4.2M").starts_with("must be a whole number of bytes"), "4.2M is 4404019.2 bytes");
        assert_eq!(e(Range::new(Kind::Count, 1.0, 1024.0), "0"), "must be a whole number from 1 to 1024");
        assert_eq!(e(Range::new(Kind::Number, 0.0, 1000.0), "-1"), "must be a number from 0 to 1000");
        assert_eq!(e(Range::secs(0.1, 90.0), "0"), "must be a duration from 0.1s to 90s (e.g. 30, 1.5, 2m)");
    }
}
