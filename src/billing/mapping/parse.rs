//! The lenient value parsers: decimals and money strings, floats through their shortest
//! round-trip text, timestamps (`TimeShape`), and tags (JSON, Python literals, `k:v` lists).
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::*;

/// Parses an exact decimal. Plain decimals first; then scientific notation
/// (`5.64902E-05`), surrounding whitespace, and US money strings (`"$10,100.00 "`), each
/// counted. `None` if the text is not a number.
pub fn parse_decimal(s: &str, dev: &mut Deviations) -> Option<Decimal> {
    if let Ok(d) = Decimal::from_str_exact(s) {
        return Some(d);
    }
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let trimmed = t.len() != s.len();
    if t.len() != s.len()
        && let Ok(d) = Decimal::from_str_exact(t)
    {
        dev.add(Dev::WhitespaceTrimmed);
        return Some(d);
    }
    if t.bytes().any(|b| b == b'e' || b == b'E') {
        if !t
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'e' | b'E' | b'.' | b'-' | b'+'))
        {
            return None;
        }
        let d = Decimal::from_scientific(t).or_else(|_| {
            dev.add(Dev::DecimalRounded);
            Decimal::from_scientific_lossy(t)
        });
        if let Ok(d) = d {
            dev.add(Dev::ScientificNotation);
            if trimmed {
                dev.add(Dev::WhitespaceTrimmed);
            }
            return Some(d);
        }
        return None;
    }
    if let Some(d) = parse_money_string(t) {
        dev.add(Dev::MoneyFormattedString);
        return Some(d);
    }
    // More than 28 significant digits: plain digits, rounded (counted).
    if t.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'))
        && t.bytes().filter(|b| *b == b'.').count() <= 1
        && t.bytes().any(|b| b.is_ascii_digit())
    {
        let stripped = if t.contains('.') {
            t.trim_end_matches('0').trim_end_matches('.')
        } else {
            t
        };
        if let Ok(d) = Decimal::from_str_exact(stripped) {
            return Some(d);
        }
        if let Ok(d) = t.parse::<Decimal>() {
            dev.add(Dev::DecimalRounded);
            return Some(d);
        }
    }
    None
}

/// `$10,100.00`, `-$5.00`, `($5.00)` is not accepted; commas must group by three.
pub(super) fn parse_money_string(t: &str) -> Option<Decimal> {
    let (neg, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r.trim_start()),
        None => (false, t),
    };
    let rest = rest.strip_prefix('$').unwrap_or(rest).trim();
    let (neg, rest) = match rest.strip_prefix('-') {
        Some(r) if !neg => (true, r),
        Some(_) => return None,
        None => (neg, rest),
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit() || b == b',') {
        return None;
    }
    let groups: Vec<&str> = int.split(',').collect();
    if groups.len() > 1 {
        if groups[0].is_empty() || groups[0].len() > 3 || groups[1..].iter().any(|g| g.len() != 3) {
            return None;
        }
    } else if t == rest {
        // Nothing money-like (no `$`, no grouping): not a money string.
        return None;
    }
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut plain = String::with_capacity(rest.len() + 1);
    if neg {
        plain.push('-');
    }
    plain.extend(int.chars().filter(|c| *c != ','));
    if let Some(f) = frac {
        plain.push('.');
        plain.push_str(f);
    }
    Decimal::from_str_exact(&plain).ok()
}

/// A Parquet double → Decimal through its shortest round-trip text (what Python's
/// `repr` prints), so `0.1` is exactly 0.1.
pub fn float_to_decimal(x: f64, dev: &mut Deviations) -> Result<Decimal, String> {
    if !x.is_finite() {
        return Err(format!("not a finite number: {x}"));
    }
    if x == 0.0 {
        return Ok(Decimal::ZERO);
    }
    let mut buf = [0u8; 40];
    let text = {
        use std::io::Write;
        let mut cur = std::io::Cursor::new(&mut buf[..]);
        write!(cur, "{x:e}").map_err(|e| e.to_string())?;
        let n = cur.position() as usize;
        std::str::from_utf8(&buf[..n])
            .map_err(|e| e.to_string())?
            .to_string()
    };
    match Decimal::from_scientific(&text) {
        Ok(d) => Ok(d),
        Err(_) => match Decimal::from_scientific_lossy(&text) {
            Ok(d) => {
                dev.add(Dev::FloatRounded);
                Ok(d)
            }
            Err(_) if x.abs() < 1e-20 => {
                dev.add(Dev::FloatRounded);
                Ok(Decimal::ZERO)
            }
            Err(e) => Err(format!("number {text} out of range: {e}")),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------

/// What a timestamp looked like (to count deviations from `YYYY-MM-DDTHH:MM:SSZ`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeShape {
    pub date_only: bool,
    pub space_sep: bool,
    pub has_zone: bool,
    pub no_seconds: bool,
    pub am_pm: bool,
    /// An hour of 24..=47 ("T30:00:00" in the FOCUS spec examples: 30 h after midnight),
    /// rolled over into the next day.
    pub hour_overflow: bool,
    /// 0 = ISO; 1 = MM/DD/YYYY; 2 = M/D/YYYY (not padded); 3 = M/D/YY.
    pub slash: u8,
}

impl TimeShape {
    pub fn count(self, dev: &mut Deviations) {
        match self.slash {
            1 => dev.add(Dev::DateMmDdYyyy),
            2 => dev.add(Dev::DateMDYyyy),
            3 => dev.add(Dev::DateMDYy),
            _ => {}
        }
        if self.date_only {
            if self.slash == 0 {
                dev.add(Dev::DateOnly);
            }
            return;
        }
        if self.am_pm {
            dev.add(Dev::TimestampAmPm);
        }
        if self.slash == 0 {
            match (self.space_sep, self.has_zone) {
                (true, false) => dev.add(Dev::TimestampSpaceNoZ),
                (true, true) => dev.add(Dev::TimestampSpaceWithOffset),
                (false, false) => dev.add(Dev::TimestampNoZone),
                (false, true) => {}
            }
        }
        if self.no_seconds {
            dev.add(Dev::TimestampNoSeconds);
        }
        if self.hour_overflow {
            dev.add(Dev::TimestampHourOverflow);
        }
    }
}

#[inline]
pub(super) fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as u32;
    }
    Some(n)
}

/// Parses `YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH[:]MM| UTC]`, `MM/DD/YYYY`, `M/D/YYYY`,
/// `M/D/YY` (20YY) with an optional ` HH:MM[:SS][ AM|PM]`. No zone means UTC.
pub fn parse_time(s: &str) -> Option<(DateTime<Utc>, TimeShape)> {
    let b = s.trim().as_bytes();
    let mut shape = TimeShape::default();
    let (y, mo, d, mut pos);
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        y = num(&b[0..4])? as i32;
        mo = num(&b[5..7])?;
        d = num(&b[8..10])?;
        pos = 10;
    } else {
        // Slash date.
        let end = b
            .iter()
            .position(|c| *c == b' ' || *c == b'T')
            .unwrap_or(b.len());
        let date = &b[..end];
        let mut parts = date.split(|c| *c == b'/');
        let m = parts.next()?;
        let dd = parts.next()?;
        let yy = parts.next()?;
        if parts.next().is_some() || m.is_empty() || m.len() > 2 || dd.is_empty() || dd.len() > 2 {
            return None;
        }
        mo = num(m)?;
        d = num(dd)?;
        y = match yy.len() {
            4 => {
                shape.slash = if m.len() == 2 && dd.len() == 2 { 1 } else { 2 };
                num(yy)? as i32
            }
            2 => {
                shape.slash = 3;
                2000 + num(yy)? as i32
            }
            _ => return None,
        };
        pos = end;
    }
    let date = NaiveDate::from_ymd_opt(y, mo, d)?;
    if pos == b.len() {
        shape.date_only = true;
        return Some((date.and_hms_opt(0, 0, 0)?.and_utc(), shape));
    }
    match b[pos] {
        b'T' | b't' => {}
        b' ' => shape.space_sep = true,
        _ => return None,
    }
    pos += 1;
    // HH:MM
    let h_end = pos + b[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
    if h_end == pos || h_end - pos > 2 || h_end >= b.len() || b[h_end] != b':' {
        return None;
    }
    let mut hour = num(&b[pos..h_end])?;
    pos = h_end + 1;
    if b.len() < pos + 2 {
        return None;
    }
    let minute = num(&b[pos..pos + 2])?;
    pos += 2;
    let mut sec = 0;
    let mut nanos = 0u32;
    if pos < b.len() && b[pos] == b':' {
        if b.len() < pos + 3 {
            return None;
        }
        sec = num(&b[pos + 1..pos + 3])?;
        pos += 3;
        if pos < b.len() && (b[pos] == b'.' || b[pos] == b',') {
            pos += 1;
            let start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                if pos - start < 9 {
                    nanos = nanos * 10 + (b[pos] - b'0') as u32;
                }
                pos += 1;
            }
            if pos == start {
                return None;
            }
            for _ in (pos - start).min(9)..9 {
                nanos *= 10;
            }
        }
    } else {
        shape.no_seconds = true;
    }
    // Zone / AM-PM.
    let mut rest = &b[pos..];
    if rest.first() == Some(&b' ') {
        rest = &rest[1..];
    }
    let mut offset_secs: i64 = 0;
    if shape.slash != 0 && (rest.eq_ignore_ascii_case(b"AM") || rest.eq_ignore_ascii_case(b"PM")) {
        shape.am_pm = true;
        if hour == 0 || hour > 12 {
            return None;
        }
        let pm = rest.eq_ignore_ascii_case(b"PM");
        hour = match (pm, hour) {
            (false, 12) => 0,
            (true, 12) => 12,
            (true, h) => h + 12,
            (false, h) => h,
        };
        rest = &[];
    }
    match rest {
        [] => {}
        b"Z" | b"z" | b"UTC" | b"utc" | b"GMT" => shape.has_zone = true,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (hh, mm) = match tail.len() {
                2 => (num(tail)?, 0),
                4 => (num(&tail[..2])?, num(&tail[2..])?),
                5 if tail[2] == b':' => (num(&tail[..2])?, num(&tail[3..])?),
                _ => return None,
            };
            if hh > 23 || mm > 59 {
                return None;
            }
            offset_secs = (hh as i64 * 3600 + mm as i64 * 60) * if *sign == b'-' { -1 } else { 1 };
            shape.has_zone = true;
        }
        _ => return None,
    }
    if sec == 60 {
        sec = 59; // leap second
    }
    let (date, hour) = if (24..48).contains(&hour) && !shape.am_pm {
        shape.hour_overflow = true;
        (date.succ_opt()?, hour - 24)
    } else {
        (date, hour)
    };
    let naive = date.and_hms_nano_opt(hour, minute, sec, nanos)?;
    let t = naive.and_utc() - chrono::Duration::seconds(offset_secs);
    Some((t, shape))
}

// ---------------------------------------------------------------------------------------
// Tags
// ---------------------------------------------------------------------------------------

/// CUR 2.0 map keys: `user_team`/`user:team` → `team`; `aws_x`/`aws:x` → `aws:x`.
pub fn tag_key_from_map(k: &str) -> String {
    if let Some(r) = k.strip_prefix("user:").or_else(|| k.strip_prefix("user_")) {
        r.to_string()
    } else if let Some(r) = k.strip_prefix("aws_") {
        format!("aws:{r}")
    } else {
        k.to_string()
    }
}

/// A tag value read straight from JSON text (strings as-is, numbers and booleans as their
/// JSON text, null as empty); nested values are refused so the caller falls back to
/// `serde_json::Value`.
pub(super) struct TagText(String);

impl<'de> serde::Deserialize<'de> for TagText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TagText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a scalar tag value")
            }
            fn visit_str<E>(self, v: &str) -> Result<TagText, E> {
                Ok(TagText(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<TagText, E> {
                Ok(TagText(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<TagText, E> {
                Ok(TagText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<TagText, E> {
                Ok(TagText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<TagText, E> {
                Ok(TagText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<TagText, E> {
                Ok(TagText(
                    serde_json::Number::from_f64(v)
                        .map_or_else(|| v.to_string(), |n| n.to_string()),
                ))
            }
            fn visit_unit<E>(self) -> Result<TagText, E> {
                Ok(TagText(String::new()))
            }
            fn visit_none<E>(self) -> Result<TagText, E> {
                Ok(TagText(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object of scalar tag values, read straight into the map a cost line keeps.
pub(super) struct TagMap(BTreeMap<String, String>);

impl<'de> serde::Deserialize<'de> for TagMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TagMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of tags")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<TagMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = m.next_entry::<String, TagText>()? {
                    out.insert(k, v.0);
                }
                Ok(TagMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

pub(super) fn json_object_tags(t: &str) -> Option<BTreeMap<String, String>> {
    if let Ok(m) = serde_json::from_str::<TagMap>(t) {
        return Some(m.0);
    }
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t)
        .ok()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), json_value_text(v)))
                .collect()
        })
}

pub(super) fn json_value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Parses tags text: a JSON object, an object fragment missing its braces (Azure), a
/// Python-repr dict, or a list of `{key, value}` dicts (GCP labels, JSON or Python repr).
/// Unparseable text yields no tags and counts `tags_unparseable`; text nested deeper than
/// `lit::MAX_DEPTH` is an error (the row is quarantined): no exporter writes that.
pub fn parse_tags(text: &str, dev: &mut Deviations) -> Result<BTreeMap<String, String>, String> {
    let t = text.trim();
    if t.is_empty() || t == "{}" || t == "[]" {
        return Ok(BTreeMap::new());
    }
    match t.as_bytes()[0] {
        b'{' => {
            if let Some(m) = json_object_tags(t) {
                return Ok(m);
            }
        }
        b'"' => {
            if let Some(m) = json_object_tags(&format!("{{{t}}}")) {
                dev.add(Dev::TagsMissingBraces);
                return Ok(m);
            }
        }
        _ => {}
    }
    let parsed = if t.starts_with('\'') {
        lit::parse(&format!("{{{t}}}"))
    } else {
        lit::parse(t)
    };
    if let Some(v) = parsed {
        let python = t.contains('\'');
        let mut out = BTreeMap::new();
        let ok = match v {
            lit::Lit::Dict(pairs) => {
                for (k, v) in pairs {
                    if let Some(k) = k.as_text() {
                        out.insert(k, v.as_text().unwrap_or_default());
                    }
                }
                true
            }
            lit::Lit::List(items) => {
                let mut ok = true;
                for it in items {
                    match (it.get("key"), it.get("value")) {
                        (Some(k), v) => {
                            if let Some(k) = k.as_text() {
                                out.insert(k, v.and_then(|v| v.as_text()).unwrap_or_default());
                            }
                        }
                        _ => ok = false,
                    }
                }
                ok
            }
            _ => false,
        };
        if ok {
            if python && t.starts_with('{') {
                dev.add(Dev::TagsPythonRepr);
            }
            if t.starts_with('\'') {
                dev.add(Dev::TagsMissingBraces);
            }
            return Ok(out);
        }
    }
    if let Some(at) = lit::too_deep_at(t) {
        return Err(format!(
            "tags nested deeper than {} levels (at character {at})",
            lit::MAX_DEPTH
        ));
    }
    dev.add(Dev::TagsUnparseable);
    Ok(BTreeMap::new())
}
