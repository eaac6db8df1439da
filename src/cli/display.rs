//! What the CLI's tables show: `table` (plain, left-aligned), `list` (a table, or a line
//! saying nothing matched), exact amounts made readable — totals rounded to cents
//! (`cents`), prices to their own precision (at most `PRICE_DECIMALS`, `price`) — and
//! `trim_float` for counts sent as floats. `--json` output never goes through here: it
//! stays exact.
use rust_decimal::{Decimal, RoundingStrategy};

/// Most decimals a price shows (a quoted hourly price has at most 6).
pub const PRICE_DECIMALS: u32 = 6;

fn parse(amount: &str) -> Option<Decimal> {
    crate::domain::money::parse_amount(amount.trim()).ok()
}

/// A total for reading: rounded half away from zero to cents, always two decimals
/// ("132.58144321841428571428571429" → "132.58"). Text that is not a number is shown as is.
pub fn cents(amount: &str) -> String {
    match parse(amount) {
        Some(d) => {
            let mut r = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
            r.rescale(2);
            r.to_string()
        }
        None => amount.to_string(),
    }
}

/// A price for reading: its own decimals without trailing zeros, at least two and at most
/// `PRICE_DECIMALS` ("0.016595" stays, "3.0600" → "3.06", "2" → "2.00").
pub fn price(amount: &str) -> String {
    match parse(amount) {
        Some(d) => {
            let mut r = d
                .round_dp_with_strategy(PRICE_DECIMALS, RoundingStrategy::MidpointAwayFromZero)
                .normalize();
            if r.scale() < 2 {
                r.rescale(2);
            }
            r.to_string()
        }
        None => amount.to_string(),
    }
}

/// `table(header, rows)`, or one line saying that no `what` matched when there are no rows.
pub fn list(header: &[&str], rows: &[Vec<String>], what: &str) -> String {
    if rows.is_empty() {
        format!("no {what} matched\n")
    } else {
        table(header, rows)
    }
}

/// A plain left-aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i].saturating_sub(c.chars().count())));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// A count sent as a float (vCPUs, GiB, accelerators): "8" for 8.0, "0.5" for 0.5.
pub(crate) fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_round_to_cents() {
        assert_eq!(cents("132.58144321841428571428571429"), "132.58");
        assert_eq!(cents("0.005"), "0.01");
        assert_eq!(cents("-0.005"), "-0.01");
        assert_eq!(cents("7"), "7.00");
        assert_eq!(cents(""), "");
        assert_eq!(cents("n/a"), "n/a");
    }

    #[test]
    fn prices_keep_their_own_precision() {
        assert_eq!(price("0.016595"), "0.016595");
        assert_eq!(price("3.0600"), "3.06");
        assert_eq!(price("2"), "2.00");
        assert_eq!(price("0.12345678901"), "0.123457");
        assert_eq!(price("32.7726"), "32.7726");
    }

    #[test]
    fn an_empty_list_says_so() {
        assert_eq!(list(&["A", "B"], &[], "offers"), "no offers matched\n");
        let t = list(&["A", "B"], &[vec!["1".into(), "2".into()]], "offers");
        assert_eq!(t, "A  B\n1  2\n");
        assert_eq!(cents("0.004999999999"), "0.00");
        assert_eq!(cents("65.5452"), "65.55");
    }
}
