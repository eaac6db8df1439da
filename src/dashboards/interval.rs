//! Intervals as Grafana writes and reads them: `parse_interval` (gtime.ParseInterval: `1d`,
//! `1w`, `1M`, `1y` or a Go duration such as `1h30m`), `format_interval` (gtime.FormatInterval,
//! what `$__interval` becomes), `auto_interval` (the panel interval Grafana picks for a range:
//! range / resolution, rounded to its table of nice steps, at least the panel's minimum), and
//! `go_float` (Go's `%v` of a float64, which `$__timeGroup` prints its seconds with).
use std::time::Duration;

use chrono::{DateTime, Months, Utc};

const SECOND_NS: f64 = 1e9;

/// Parses an interval the way Grafana's backend does. `1d` is 24 h and `1w` 7 days; `1M` and
/// `1y` are calendar months and years counted back from `now` (Grafana uses the wall clock;
/// callers pass the range's end so an expansion is reproducible). Anything else is a Go
/// duration: a sequence of decimal numbers with units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
pub fn parse_interval(text: &str, now: DateTime<Utc>) -> Result<Duration, String> {
    if text.is_empty() {
        return Ok(Duration::ZERO);
    }
    if let Some((n, unit)) = date_unit(text) {
        let day = 86_400u64;
        return match unit {
            'd' => Ok(Duration::from_secs(n * day)),
            'w' => Ok(Duration::from_secs(n * 7 * day)),
            'M' | 'y' => {
                let months = if unit == 'M' { n } else { n * 12 };
                let months = u32::try_from(months).map_err(|_| format!("{text}: too long"))?;
                let later = now
                    .checked_add_months(Months::new(months))
                    .ok_or_else(|| format!("{text}: too long"))?;
                (later - now)
                    .to_std()
                    .map_err(|_| format!("{text}: too long"))
            }
            _ => unreachable!("date_unit returns d, w, M or y"),
        };
    }
    go_duration(text)
}

/// `^(\d+)([dwMy])$`.
fn date_unit(text: &str) -> Option<(u64, char)> {
    let unit = text.chars().last()?;
    if !matches!(unit, 'd' | 'w' | 'M' | 'y') {
        return None;
    }
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|n| (n, unit))
}

/// Go's `time.ParseDuration` for non-negative durations.
fn go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not an interval (1d, 1w, 1M, 1y, 30m, 1h30m, ...)");
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total_ns = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => SECOND_NS,
            "m" => 60.0 * SECOND_NS,
            "h" => 3600.0 * SECOND_NS,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total_ns += value * scale;
    }
    if !total_ns.is_finite() || total_ns > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

/// gtime.FormatInterval: the largest whole unit of y (365 d), d, h, m, s, ms; `1ms` below that.
pub fn format_interval(d: Duration) -> String {
    const UNITS: [(u128, &str); 6] = [
        (365 * 86_400_000, "y"),
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
        (1, "ms"),
    ];
    let ms = d.as_millis();
    for (size, unit) in UNITS {
        if ms >= size {
            return format!("{}{unit}", ms / size);
        }
    }
    "1ms".into()
}

/// Grafana's `rangeutil.roundInterval`: a raw interval in milliseconds to the nice step at
/// or around it.
pub fn round_interval_ms(ms: u64) -> u64 {
    const STEPS: [(u64, u64); 29] = [
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (32_400_000, 21_600_000),
        (86_400_000, 43_200_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
        (3_628_800_000, 2_592_000_000),
        (u64::MAX, 31_536_000_000),
    ];
    STEPS
        .iter()
        .find(|(below, _)| ms < *below)
        .map_or(31_536_000_000, |(_, step)| *step)
}

/// The interval Grafana gives a panel's query: the range divided by `resolution` (the
/// panel's max data points, or its width in pixels), rounded, and at least `min` (the
/// panel's "Min interval").
pub fn auto_interval(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    resolution: u32,
    min: Option<Duration>,
) -> Duration {
    let span = (to - from).num_milliseconds().max(0) as u64;
    let raw = span / u64::from(resolution.max(1));
    let rounded = Duration::from_millis(round_interval_ms(raw));
    match min {
        Some(m) if m > rounded => m,
        _ => rounded,
    }
}

/// Go's `fmt.Sprintf("%v", f)` for a float64: the shortest digits that read back exactly,
/// in exponent form (`2.592e+06`, `1e-05`) when the decimal exponent is below -4 or at least
/// 6 (strconv's rule for the shortest `g` format).
pub fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` is the shortest round-trip digits with a decimal exponent.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e}'s exponent is an integer");
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn parses_grafana_and_go_intervals() {
        let now = t("2026-02-15T00:00:00Z");
        let cases = [
            ("1d", 86_400),
            ("7d", 7 * 86_400),
            ("1w", 7 * 86_400),
            ("1h", 3_600),
            ("5m", 300),
            ("1h30m", 5_400),
            ("90s", 90),
            ("1.5h", 5_400),
            ("1M", 28 * 86_400),
            ("1y", 365 * 86_400),
            ("0", 0),
            ("", 0),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_interval(text, now),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_interval("250ms", now), Ok(Duration::from_millis(250)));
        for bad in ["d", "1x", "1 d", "-1h", "1.d", "h1"] {
            assert!(parse_interval(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_intervals_in_their_largest_whole_unit() {
        let cases = [
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(2 * 86_400 + 5), "2d"),
            (Duration::from_secs(3_600), "1h"),
            (Duration::from_secs(90), "1m"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(20), "20ms"),
            (Duration::from_micros(10), "1ms"),
            (Duration::from_secs(400 * 86_400), "1y"),
        ];
        for (d, want) in cases {
            assert_eq!(format_interval(d), want, "{d:?}");
        }
    }

    #[test]
    fn auto_interval_rounds_and_respects_the_minimum() {
        let from = t("2026-01-01T00:00:00Z");
        let to = t("2026-01-31T00:00:00Z");
        // 30 days / 1000 points = 2,592 s: rounds to 30 min; / 100 points to 6 h.
        assert_eq!(
            auto_interval(from, to, 1000, None),
            Duration::from_secs(1800)
        );
        assert_eq!(
            auto_interval(from, to, 100, None),
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(
            auto_interval(from, to, 1000, Some(Duration::from_secs(86_400))),
            Duration::from_secs(86_400)
        );
        assert_eq!(round_interval_ms(10), 10);
        assert_eq!(round_interval_ms(100_000_000), 86_400_000);
        assert_eq!(round_interval_ms(u64::MAX), 31_536_000_000);
    }

    #[test]
    fn floats_print_as_go_prints_them() {
        let cases = [
            (86_400.0, "86400"),
            (3_600.0, "3600"),
            (0.5, "0.5"),
            (604_800.0, "604800"),
            (2_592_000.0, "2.592e+06"),
            (31_536_000.0, "3.1536e+07"),
            (1_000_000.0, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
        ];
        for (f, want) in cases {
            assert_eq!(go_float(f), want, "{f}");
        }
    }
}
