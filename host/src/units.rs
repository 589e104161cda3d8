//! Sizes and durations as users type them. Both are bounded here, so that nothing further
//! on (a deadline computed as `Instant::now() + d`, a byte count shifted into QEMU's `-m`)
//! meets a value it cannot represent: a bad value is a one-line usage error, never a panic.

use std::num::IntErrorKind;
use std::time::Duration;

/// A size or duration that cannot be used, with the text as the user typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not digits followed by an optional unit.
    #[error("invalid size {text:?}: expected a number with an optional unit such as 512M or 2G")]
    SizeNotANumber { text: String },

    /// A unit other than B, K, M, G or T (and their KB/KiB spellings).
    #[error("invalid size {text:?}: unknown unit {unit:?} (use K, M, G or T)")]
    SizeUnit { text: String, unit: String },

    /// More bytes than 64 bits hold.
    #[error("invalid size {text:?}: too large")]
    SizeTooLarge { text: String },

    /// Not a sequence of numbers each followed by a unit (or one bare number).
    #[error("invalid duration {text:?}: expected e.g. 30s, 500ms, 5m or 1h30m")]
    Duration { text: String },

    /// Longer than [`MAX_DURATION`].
    #[error("invalid duration {text:?}: too long (at most 100 years)")]
    DurationTooLong { text: String },
}

/// The longest duration accepted: 100 years of 365.25 days. No sandbox runs that long,
/// and every deadline built from it stays far from the limit of the monotonic clock.
pub const MAX_DURATION: Duration = Duration::from_secs(3_155_760_000);

/// `512M`, `2G`, `64MiB`, `1048576` (bytes) -> bytes; at most `u64::MAX`.
pub fn parse_size(s: &str) -> Result<u64, Error> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let too_large = || Error::SizeTooLarge { text: s.into() };
    let n: u64 = num.parse().map_err(|e: std::num::ParseIntError| match e.kind() {
        IntErrorKind::PosOverflow => too_large(),
        _ => Error::SizeNotANumber { text: s.into() },
    })?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(Error::SizeUnit { text: s.into(), unit: unit.into() }),
    };
    n.checked_mul(mult).ok_or_else(too_large)
}

/// `2s`, `500ms`, `5m`, `1h30m`, `10` or `1.5` (seconds) -> a duration of at most
/// [`MAX_DURATION`]. Numbers are decimal digits with an optional fraction: no sign, no
/// exponent, no `inf` or `nan`, which a float parser would otherwise let through.
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let invalid = || Error::Duration { text: s.into() };
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid());
    }
    let mut secs = 0.0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let letters = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, next) = tail.split_at(letters);
        let n = decimal(num).ok_or_else(invalid)?;
        secs += match unit {
            // A bare number is seconds, but only on its own: "1h30" is a typo, not 1h30s.
            "" if rest.len() == t.len() => n,
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(invalid()),
        };
        rest = next;
    }
    // A sum that overflowed is infinity, and refused too (never NaN: no part is negative).
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(Error::DurationTooLong { text: s.into() });
    }
    Duration::try_from_secs_f64(secs).map_err(|_| invalid())
}

/// A non-negative decimal number: digits with at most one `.`, and at least one digit.
/// A digit string too long for an `f64` reads as infinity, which the caller's bound refuses.
fn decimal(num: &str) -> Option<f64> {
    let valid = num.bytes().any(|b| b.is_ascii_digit()) && num.bytes().filter(|&b| b == b'.').count() <= 1;
    valid.then(|| num.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("16777215T").unwrap(), 16_777_215 << 40);
        assert_eq!(parse_size("18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(parse_size("12Q"), Err(Error::SizeUnit { text: "12Q".into(), unit: "Q".into() }));
        for bad in ["M", "", "-1M"] {
            assert_eq!(parse_size(bad), Err(Error::SizeNotANumber { text: bad.into() }), "{bad}");
        }
        assert!(matches!(parse_size("1.5G"), Err(Error::SizeUnit { .. })));
    }

    #[test]
    fn messages_quote_the_text_and_say_what_is_accepted() {
        assert_eq!(
            parse_size("12Q").unwrap_err().to_string(),
            r#"invalid size "12Q": unknown unit "Q" (use K, M, G or T)"#
        );
        assert_eq!(
            parse_duration("soon").unwrap_err().to_string(),
            r#"invalid duration "soon": expected e.g. 30s, 500ms, 5m or 1h30m"#
        );
    }

    #[test]
    fn sizes_beyond_64_bits_are_too_large() {
        let long = "9".repeat(400);
        for big in ["16777216T", "99999999999T", "18446744073709551616", "99999999999999999999999G", &long] {
            assert_eq!(parse_size(big), Err(Error::SizeTooLarge { text: big.into() }), "{big}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1ms").unwrap(), Duration::from_millis(1));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(" 5m ").unwrap(), Duration::from_secs(300));
        for bad in ["", "abc", "5x", "-1", "s", "1h30", "1..5s", ".s", "+5", "5 s", "1e3", "0x10"] {
            assert_eq!(parse_duration(bad), Err(Error::Duration { text: bad.into() }), "{bad}");
        }
    }

    #[test]
    fn durations_up_to_a_hundred_years() {
        assert_eq!(parse_duration("876600h").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("3155760000").unwrap(), MAX_DURATION);
        let long = "9".repeat(400);
        let longer = format!("{}s", "9".repeat(5000));
        for big in ["876601h", "3155760001", "99999999999999999999h", "18446744073709551615s", &long, &longer] {
            assert_eq!(parse_duration(big), Err(Error::DurationTooLong { text: big.into() }), "{big}");
        }
        // Each part is in range, their sum is not.
        assert!(matches!(parse_duration("876600h1s"), Err(Error::DurationTooLong { .. })));
    }

    #[test]
    fn float_spellings_are_not_numbers() {
        for bad in ["1e20", "1e400", "1E5", "inf", "infinity", "nan", "NaN", "-inf", "1h1e20s", "1h-5m", "-0"] {
            assert_eq!(parse_duration(bad), Err(Error::Duration { text: bad.into() }), "{bad}");
        }
    }
}
