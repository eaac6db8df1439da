//! The dashboard's time range: `TimeRange`, and Grafana's relative times (`now`, `now-30d`,
//! `now/M`, `now-1M/M`) resolved against a given `now`.
use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};

/// The dashboard's time range, both ends included (Grafana's `BETWEEN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// A range written as Grafana saves it (`"now-30d"`, `"now"`), in UTC. Absolute times
    /// (RFC 3339) are accepted too.
    pub fn relative(from: &str, to: &str, now: DateTime<Utc>) -> Result<TimeRange, String> {
        Ok(TimeRange {
            from: relative_time(from, now, false)?,
            to: relative_time(to, now, true)?,
        })
    }
}

/// One end of a range: `now`, then any `+N<unit>`/`-N<unit>`, then an optional `/<unit>`
/// that rounds down to the unit's start (`round_up`: up to its last millisecond, as Grafana
/// does for the range's end). Units: s, m, h, d, w, M, y.
pub fn relative_time(
    text: &str,
    now: DateTime<Utc>,
    round_up: bool,
) -> Result<DateTime<Utc>, String> {
    let bad = |why: &str| format!("{text:?}: {why}");
    let Some(mut rest) = text.strip_prefix("now") else {
        return DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad("not a time (now-30d, now/M, or RFC 3339)"));
    };
    let mut t = now;
    while let Some(sign) = rest.chars().next().filter(|c| *c == '+' || *c == '-') {
        rest = &rest[1..];
        let n_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = if n_len == 0 {
            1
        } else {
            rest[..n_len].parse().map_err(|_| bad("number"))?
        };
        let unit = rest[n_len..]
            .chars()
            .next()
            .ok_or_else(|| bad("missing unit"))?;
        rest = &rest[n_len + unit.len_utf8()..];
        let n = if sign == '-' { -n } else { n };
        t = shift(t, n, unit).ok_or_else(|| bad("unknown unit or out of range"))?;
    }
    if let Some(unit) = rest.strip_prefix('/') {
        let mut chars = unit.chars();
        let u = chars.next().ok_or_else(|| bad("missing unit"))?;
        if chars.next().is_some() {
            return Err(bad("one unit after /"));
        }
        let start = start_of(t, u).ok_or_else(|| bad("unknown unit"))?;
        t = if round_up {
            shift(start, 1, u).ok_or_else(|| bad("out of range"))? - Duration::milliseconds(1)
        } else {
            start
        };
    } else if !rest.is_empty() {
        return Err(bad("unexpected text"));
    }
    Ok(t)
}

fn shift(t: DateTime<Utc>, n: i64, unit: char) -> Option<DateTime<Utc>> {
    let months = |m: i64| -> Option<DateTime<Utc>> {
        let m32 = u32::try_from(m.unsigned_abs()).ok()?;
        if m >= 0 {
            t.checked_add_months(Months::new(m32))
        } else {
            t.checked_sub_months(Months::new(m32))
        }
    };
    match unit {
        's' => t.checked_add_signed(Duration::try_seconds(n)?),
        'm' => t.checked_add_signed(Duration::try_minutes(n)?),
        'h' => t.checked_add_signed(Duration::try_hours(n)?),
        'd' => t.checked_add_signed(Duration::try_days(n)?),
        'w' => t.checked_add_signed(Duration::try_weeks(n)?),
        'M' => months(n),
        'y' => months(n.checked_mul(12)?),
        _ => None,
    }
}

fn start_of(t: DateTime<Utc>, unit: char) -> Option<DateTime<Utc>> {
    let day = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"));
    let date = t.date_naive();
    Some(match unit {
        's' => t - Duration::nanoseconds(i64::from(t.timestamp_subsec_nanos())),
        'm' => Utc
            .timestamp_opt(t.timestamp() - t.timestamp().rem_euclid(60), 0)
            .single()?,
        'h' => Utc
            .timestamp_opt(t.timestamp() - t.timestamp().rem_euclid(3600), 0)
            .single()?,
        'd' => day(date),
        // Grafana's weeks start on the browser locale's first day; Monday here (ISO).
        'w' => day(date - Duration::days(i64::from(date.weekday().num_days_from_monday()))),
        'M' => day(date.with_day(1)?),
        'y' => day(NaiveDate::from_ymd_opt(date.year(), 1, 1)?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn resolves_grafana_relative_times() {
        let now = t("2026-12-06T09:15:30.250Z");
        let cases = [
            ("now", false, "2026-12-06T09:15:30.250Z"),
            ("now-30d", false, "2026-11-06T09:15:30.250Z"),
            ("now-6h", false, "2026-12-06T03:15:30.250Z"),
            ("now/d", false, "2026-12-06T00:00:00Z"),
            ("now/d", true, "2026-12-06T23:59:59.999Z"),
            ("now/M", false, "2026-12-01T00:00:00Z"),
            ("now-1M/M", false, "2026-11-01T00:00:00Z"),
            ("now-1M/M", true, "2026-11-30T23:59:59.999Z"),
            ("now/y", false, "2026-01-01T00:00:00Z"),
            ("now-1y", false, "2025-12-06T09:15:30.250Z"),
            ("now/w", false, "2026-11-30T00:00:00Z"),
            ("2026-10-01T00:00:00Z", false, "2026-10-01T00:00:00Z"),
        ];
        for (text, up, want) in cases {
            assert_eq!(relative_time(text, now, up), Ok(t(want)), "{text} {up}");
        }
        for bad in ["then", "now-3x", "now/", "now/dd", "now-", "nowish"] {
            assert!(relative_time(bad, now, false).is_err(), "{bad}");
        }
        let r = TimeRange::relative("now-1M/M", "now-1M/M", now).unwrap();
        assert!(r.from < r.to);
    }
}
