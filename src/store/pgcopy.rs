//! Postgres binary COPY encoding (`COPY … FROM STDIN WITH (FORMAT binary)`) of cost lines
//! (`cost_fact` rows) and the field encoders other bulk loads share (`gpu_sample` rows):
//! the server stores values without parsing text (no CSV splitting, no timestamp or numeric
//! parsing), which is most of what a text COPY costs it.
//!
//! Format (PostgreSQL docs, "COPY — Binary Format"): an 11-byte signature, a 32-bit flags
//! field and a 32-bit header-extension length; per row a 16-bit field count, then per field
//! a 32-bit length (-1 for NULL) and the value in the type's binary ("send") form; a 16-bit
//! -1 trailer. Integers are big-endian.
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::billing::LineIds;
use super::daily::{DailyRow, DayKind, day_key, day_start};
use crate::billing::CostLine;

/// Header of a binary COPY stream.
pub fn header(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
}

/// Trailer of a binary COPY stream.
pub fn trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

pub(crate) fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_be_bytes());
}

pub(crate) fn int8(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&v.to_be_bytes());
}

/// A `float8` (DOUBLE PRECISION): its IEEE 754 bits, big-endian.
pub(crate) fn float8(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

pub(crate) fn opt_float8(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(v) => float8(out, v),
        None => null(out),
    }
}

/// A `text` value: its UTF-8 bytes.
pub(crate) fn text(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Microseconds since 2000-01-01T00:00:00Z, Postgres's timestamp epoch.
const PG_EPOCH_UNIX_SECONDS: i64 = 946_684_800;

/// Days from 1970-01-01 to 2000-01-01, Postgres's date epoch.
const PG_EPOCH_UNIX_DAYS: i32 = 10_957;

/// A `date`: days since 2000-01-01.
fn date(out: &mut Vec<u8>, d: NaiveDate) {
    let days = (d - NaiveDate::default()).num_days() as i32 - PG_EPOCH_UNIX_DAYS;
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&days.to_be_bytes());
}

fn opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => text(out, s),
        None => null(out),
    }
}

/// A `jsonb` value: format version 1, then the JSON text.
fn jsonb(out: &mut Vec<u8>, json: &str) {
    out.extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
    out.push(1);
    out.extend_from_slice(json.as_bytes());
}

fn timestamptz(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let micros = (t.timestamp() - PG_EPOCH_UNIX_SECONDS) * 1_000_000
        + i64::from(t.timestamp_subsec_micros());
    int8(out, micros);
}

/// NUMERIC send form: ndigits, weight, sign, dscale (each i16/u16), then base-10000 digits,
/// most significant first; the value is Σ digit[i] × 10000^(weight − i).
pub fn numeric(out: &mut Vec<u8>, d: Decimal) {
    let d = d.normalize();
    let scale = d.scale() as usize;
    let negative = d.is_sign_negative() && !d.is_zero();
    let mut m = d.mantissa().unsigned_abs();
    // Pad the fraction to whole base-10000 groups: m × 10^pad has (scale + pad) % 4 == 0.
    let pad = (4 - scale % 4) % 4;
    for _ in 0..pad {
        m *= 10; // |mantissa| < 2^96, so three more digits fit in u128.
    }
    let frac_groups = (scale + pad) / 4;
    let mut groups: Vec<i16> = Vec::with_capacity(12);
    while m > 0 {
        groups.push((m % 10_000) as i16);
        m /= 10_000;
    }
    // groups is least significant first; weight of the most significant group:
    let weight = groups.len() as i32 - 1 - frac_groups as i32;
    // Trailing zero groups carry no information (dscale keeps the display scale).
    let skip = groups.iter().take_while(|g| **g == 0).count();
    let digits = &groups[skip..];
    let len = 8 + 2 * digits.len();
    out.extend_from_slice(&(len as i32).to_be_bytes());
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&(if digits.is_empty() { 0 } else { weight as i16 }).to_be_bytes());
    out.extend_from_slice(&(if negative { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(scale as i16).to_be_bytes());
    for g in digits.iter().rev() {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

fn opt_numeric(out: &mut Vec<u8>, d: Option<Decimal>) {
    match d {
        Some(d) => numeric(out, d),
        None => null(out),
    }
}

/// One cost line as a binary COPY tuple of `cost_fact`, in the column order of
/// `store::billing::COLS`.
pub(crate) fn cost_fact(out: &mut Vec<u8>, ids: LineIds, l: &CostLine) {
    out.extend_from_slice(&11i16.to_be_bytes());
    int8(out, ids.fact);
    int8(out, ids.range);
    int8(out, ids.dims);
    int8(out, l.line as i64);
    numeric(out, l.billed_cost);
    numeric(out, l.effective_cost);
    opt_numeric(out, l.list_cost);
    opt_numeric(out, l.consumed_quantity);
    opt_numeric(out, l.contracted_cost);
    timestamptz(out, l.charge_period_start);
    timestamptz(out, l.charge_period_end);
}

/// One daily summary row as a binary COPY tuple of `cost_daily`, in the column order of
/// `store::daily::DAILY_COLS`.
pub(crate) fn cost_daily(out: &mut Vec<u8>, kind: &DayKind, r: &DailyRow) {
    out.extend_from_slice(&24i16.to_be_bytes());
    int8(out, r.range_id);
    date(out, r.day);
    timestamptz(out, day_start(r.day));
    for f in day_key(&kind.dims).0 {
        opt_text(out, f);
    }
    jsonb(out, &kind.tags_json);
    let s = &r.sums;
    numeric(out, s.billed);
    numeric(out, s.effective);
    opt_numeric(out, s.list);
    opt_numeric(out, s.contracted);
    opt_numeric(out, s.quantity);
    numeric(out, s.egress_gb);
    numeric(out, s.egress_cost);
    int8(out, s.lines);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> Vec<i16> {
        let mut out = Vec::new();
        numeric(&mut out, s.parse().unwrap());
        out[4..]
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numeric_send_form_matches_postgres() {
        // [ndigits, weight, sign, dscale, digits...]
        assert_eq!(enc("0"), vec![0, 0, 0, 0]);
        assert_eq!(enc("1"), vec![1, 0, 0, 0, 1]);
        assert_eq!(enc("10000"), vec![1, 1, 0, 0, 1]);
        assert_eq!(enc("12345.678"), vec![3, 1, 0, 3, 1, 2345, 6780]);
        assert_eq!(enc("-0.0001"), vec![1, -1, 0x4000, 4, 1]);
        assert_eq!(enc("0.00001"), vec![1, -2, 0, 5, 1000]);
        assert_eq!(enc("1.50"), vec![2, 0, 0, 1, 1, 5000]);
        assert_eq!(enc("0.0000000000000000000000000001"), vec![1, -7, 0, 28, 1]);
    }

    #[test]
    fn dates_count_days_from_the_postgres_epoch() {
        let mut out = Vec::new();
        date(&mut out, "2000-01-02".parse().unwrap());
        date(&mut out, "1999-12-31".parse().unwrap());
        assert_eq!(&out[..4], &4i32.to_be_bytes());
        assert_eq!(&out[4..8], &1i32.to_be_bytes());
        assert_eq!(&out[12..16], &(-1i32).to_be_bytes());
    }

    #[test]
    fn timestamps_count_from_the_postgres_epoch() {
        let mut out = Vec::new();
        timestamptz(&mut out, "2000-01-01T00:00:01.5Z".parse().unwrap());
        assert_eq!(&out[4..], &1_500_000i64.to_be_bytes());
    }
}
