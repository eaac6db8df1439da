//! Money for people: what the CLI's tables print. Amounts travel as exact decimal text
//! (the API and `--json` keep every digit); a table rounds totals to cents and shows a unit
//! price at its own precision. Text that is not a decimal is shown as given.
use rust_decimal::{Decimal, RoundingStrategy};

/// A total rounded half away from zero to cents: `132.58144321841428571428571429` →
/// `132.58`, `3` → `3.00`.
pub fn cents(amount: &str) -> String {
    match amount.trim().parse::<Decimal>() {
        Ok(d) => {
            let mut r = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
            r.rescale(2);
            r.to_string()
        }
        Err(_) => amount.to_string(),
    }
}

/// A unit price at its own precision (every digit it has, trailing zeros dropped), with at
/// least cents: `0.00040` → `0.0004`, `3` → `3.00`, `32.7726` → `32.7726`.
pub fn price(amount: &str) -> String {
    match amount.trim().parse::<Decimal>() {
        Ok(d) => {
            let mut n = d.normalize();
            if n.scale() < 2 {
                n.rescale(2);
            }
            n.to_string()
        }
        Err(_) => amount.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_round_to_cents_half_away_from_zero() {
        assert_eq!(cents("132.58144321841428571428571429"), "132.58");
        assert_eq!(cents("0.005"), "0.01");
        assert_eq!(cents("-0.005"), "-0.01");
        assert_eq!(cents("0.004999999999"), "0.00");
        assert_eq!(cents("3"), "3.00");
        assert_eq!(cents("65.5452"), "65.55");
        assert_eq!(cents(""), "");
        assert_eq!(cents("n/a"), "n/a");
    }

    #[test]
    fn prices_keep_their_own_precision() {
        assert_eq!(price("32.7726"), "32.7726");
        assert_eq!(price("0.000400000000"), "0.0004");
        assert_eq!(price("3"), "3.00");
        assert_eq!(price("0.5"), "0.50");
        assert_eq!(price(""), "");
    }
}
