//! Grafana's Postgres macros, as its back end expands them after the front end has replaced
//! the template variables: first the SQL engine's plain replacements (`$__interval_ms`,
//! `$__interval`, `$__unixEpochFrom()`, `$__unixEpochTo()`), then every `$name(args)` (the
//! pattern `\$([_a-zA-Z0-9]+)\(([^)]*)\)`: arguments cannot hold a `)`), split on commas:
//!
//! | macro | becomes |
//! |---|---|
//! | `$__time(c)` | `c AS "time"` |
//! | `$__timeEpoch(c)` | `extract(epoch from c) as "time"` |
//! | `$__timeFilter(c)` | `c BETWEEN '<from>' AND '<to>'` (RFC 3339, UTC, inclusive) |
//! | `$__timeFrom()`, `$__timeTo()` | `'<from>'`, `'<to>'` |
//! | `$__timeGroup(c, '1d')` | `floor(extract(epoch from c)/86400)*86400` |
//! | `$__timeGroupAlias(c, '1d')` | the same `AS "time"` |
//! | `$__unixEpochFilter(c)` | `c >= <from s> AND c <= <to s>` |
//! | `$__unixEpochNanoFilter(c)`, `…NanoFrom()`, `…NanoTo()` | nanoseconds |
//! | `$__unixEpochGroup(c, '1h')`, `…GroupAlias` | `floor((c)/3600)*3600` |
//!
//! An unknown `$name(…)` is an error, as in Grafana. Grafana's pre-5.3 rule is kept too: a
//! `$__timeGroup(…)` whose first occurrence is followed by a comma gets the alias. One
//! difference: calendar intervals (`1M`, `1y`) count back from the range's end rather than
//! from the wall clock, so an expansion is reproducible.
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::interval::{format_interval, go_float, parse_interval};
use super::range::TimeRange;

/// A macro that cannot be expanded: its name and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("macro ${name}: {detail}")]
pub struct MacroError {
    pub name: String,
    pub detail: String,
}

/// Go's RFC3339Nano in UTC: fractional seconds without trailing zeros, none when whole.
pub fn rfc3339_nano(t: DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// The SQL engine's replacements that run before the macros.
pub fn engine_replacements(sql: &str, range: &TimeRange, interval: Duration) -> String {
    sql.replace("$__interval_ms", &interval.as_millis().to_string())
        .replace("$__interval", &format_interval(interval))
        .replace("$__unixEpochFrom()", &range.from.timestamp().to_string())
        .replace("$__unixEpochTo()", &range.to.timestamp().to_string())
}

/// A `$name(args)` found in the SQL.
struct Call<'a> {
    start: usize,
    end: usize,
    name: &'a str,
    args: &'a str,
}

fn call_at(sql: &str, start: usize) -> Option<Call<'_>> {
    let rest = sql[start..].strip_prefix('$')?;
    let n = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    if n == 0 || !rest[n..].starts_with('(') {
        return None;
    }
    let close = rest[n + 1..].find(')')?;
    Some(Call {
        start,
        end: start + 1 + n + 1 + close + 1,
        name: &rest[..n],
        args: &rest[n + 1..n + 1 + close],
    })
}

/// Expands every macro call in `sql` (after `engine_replacements`).
pub fn expand_macros(sql: &str, range: &TimeRange) -> Result<String, MacroError> {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut i = 0;
    while i < sql.len() {
        let Some(call) = (sql.as_bytes()[i] == b'$')
            .then(|| call_at(sql, i))
            .flatten()
        else {
            let c = sql[i..].chars().next().expect("i < len");
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        let mut name = call.name;
        if name == "__timeGroup" {
            let whole = &sql[call.start..call.end];
            let first = sql.find(whole).expect("the call is in the SQL") + whole.len();
            if sql[first..].starts_with(',') {
                name = "__timeGroupAlias";
            }
        }
        let args: Vec<&str> = call.args.split(',').map(|a| a.trim_matches(' ')).collect();
        out.push_str(&evaluate(name, &args, range)?);
        i = call.end;
    }
    Ok(out)
}

fn evaluate(name: &str, args: &[&str], range: &TimeRange) -> Result<String, MacroError> {
    let err = |detail: &str| MacroError {
        name: name.into(),
        detail: detail.into(),
    };
    // Grafana splits "" into one empty argument: a macro without arguments still has one.
    let col = || {
        args.first()
            .copied()
            .ok_or_else(|| err("missing time column argument"))
    };
    let from = rfc3339_nano(range.from);
    let to = rfc3339_nano(range.to);
    let nanos = |t: DateTime<Utc>| {
        t.timestamp_nanos_opt()
            .map(|n| n.to_string())
            .ok_or_else(|| err("time outside the nanosecond range"))
    };
    let group_seconds = || -> Result<String, MacroError> {
        if args.len() < 2 {
            return Err(err(
                "needs time column and interval and optional fill value",
            ));
        }
        let text = args[1].trim_matches('\'');
        let d = parse_interval(text, range.to)
            .map_err(|_| err(&format!("error parsing interval {}", args[1])))?;
        Ok(go_float(d.as_secs_f64()))
    };
    Ok(match name {
        "__time" => format!("{} AS \"time\"", col()?),
        "__timeEpoch" => format!("extract(epoch from {}) as \"time\"", col()?),
        "__timeFilter" => format!("{} BETWEEN '{from}' AND '{to}'", col()?),
        "__timeFrom" => format!("'{from}'"),
        "__timeTo" => format!("'{to}'"),
        "__timeGroup" | "__timeGroupAlias" => {
            let s = group_seconds()?;
            let g = format!("floor(extract(epoch from {})/{s})*{s}", col()?);
            if name == "__timeGroupAlias" {
                format!("{g} AS \"time\"")
            } else {
                g
            }
        }
        "__unixEpochFilter" => {
            let c = col()?;
            format!(
                "{c} >= {} AND {c} <= {}",
                range.from.timestamp(),
                range.to.timestamp()
            )
        }
        "__unixEpochNanoFilter" => {
            let c = col()?;
            format!(
                "{c} >= {} AND {c} <= {}",
                nanos(range.from)?,
                nanos(range.to)?
            )
        }
        "__unixEpochNanoFrom" => nanos(range.from)?,
        "__unixEpochNanoTo" => nanos(range.to)?,
        "__unixEpochGroup" | "__unixEpochGroupAlias" => {
            let s = group_seconds()?;
            let g = format!("floor(({})/{s})*{s}", col()?);
            if name == "__unixEpochGroupAlias" {
                format!("{g} AS \"time\"")
            } else {
                g
            }
        }
        _ => return Err(err("unknown macro")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> TimeRange {
        TimeRange {
            from: "2026-10-01T00:00:00Z".parse().unwrap(),
            to: "2026-10-31T23:59:59.5Z".parse().unwrap(),
        }
    }

    fn ex(sql: &str) -> String {
        expand_macros(sql, &range()).unwrap()
    }

    #[test]
    fn time_macros_expand_as_grafana_postgres_does() {
        let cases = [
            (
                "WHERE $__timeFilter(day)",
                "WHERE day BETWEEN '2026-10-01T00:00:00Z' AND '2026-10-31T23:59:59.5Z'",
            ),
            (
                "x >= $__timeFrom() AND x < $__timeTo()",
                "x >= '2026-10-01T00:00:00Z' AND x < '2026-10-31T23:59:59.5Z'",
            ),
            (
                "SELECT $__timeGroupAlias(day, '1d'), SUM(v)",
                "SELECT floor(extract(epoch from day)/86400)*86400 AS \"time\", SUM(v)",
            ),
            (
                "SELECT $__timeGroupAlias(at,1h) AS x",
                "SELECT floor(extract(epoch from at)/3600)*3600 AS \"time\" AS x",
            ),
            (
                "GROUP BY $__timeGroup(day, '30d')",
                "GROUP BY floor(extract(epoch from day)/2.592e+06)*2.592e+06",
            ),
            ("$__time(at)", "at AS \"time\""),
            ("$__timeEpoch(at)", "extract(epoch from at) as \"time\""),
            (
                "$__unixEpochFilter(at_s)",
                "at_s >= 1790812800 AND at_s <= 1793491199",
            ),
            (
                "$__unixEpochGroupAlias(at_s, '5m')",
                "floor((at_s)/300)*300 AS \"time\"",
            ),
            ("$__unixEpochNanoFrom()", "1790812800000000000"),
            // Dollar-quoted text and parameters are not macros.
            ("SELECT $1, $$x$$, 'US$ (x)'", "SELECT $1, $$x$$, 'US$ (x)'"),
        ];
        for (sql, want) in cases {
            assert_eq!(ex(sql), want, "{sql}");
        }
    }

    #[test]
    fn time_group_followed_by_a_comma_gets_its_alias_as_before_grafana_5_3() {
        assert_eq!(
            ex("SELECT $__timeGroup(day, '1d'), v FROM t GROUP BY 1"),
            "SELECT floor(extract(epoch from day)/86400)*86400 AS \"time\", v FROM t GROUP BY 1"
        );
    }

    #[test]
    fn errors_name_the_macro() {
        for (sql, name) in [
            ("$__nosuch(x)", "__nosuch"),
            ("$__timeGroup(day)", "__timeGroup"),
            ("$__timeGroup(day, 'soon')", "__timeGroup"),
        ] {
            let e = expand_macros(sql, &range()).unwrap_err();
            assert_eq!(e.name, name, "{sql}");
        }
    }

    #[test]
    fn engine_replacements_run_first() {
        let r = range();
        let d = Duration::from_secs(86_400);
        assert_eq!(
            engine_replacements(
                "$__interval_ms $__interval $__unixEpochFrom() $__unixEpochTo()",
                &r,
                d
            ),
            "86400000 1d 1790812800 1793491199"
        );
    }

    #[test]
    fn rfc3339_nano_trims_trailing_zeros() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            rfc3339_nano(t("2026-01-02T03:04:05Z")),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            rfc3339_nano(t("2026-01-02T03:04:05.120Z")),
            "2026-01-02T03:04:05.12Z"
        );
        assert_eq!(
            rfc3339_nano(t("2026-01-02T03:04:05.000000001+00:00")),
            "2026-01-02T03:04:05.000000001Z"
        );
    }
}
