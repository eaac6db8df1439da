//! Exact money: a `rust_decimal::Decimal` amount and an ISO 4217 currency code, and
//! `Units` (integer 1e-12 USD, the placement path's arithmetic) with its conversions.
//! Invariant: money is never an `f64`; amounts are normalised (no trailing zeros) when stored.
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// An ISO 4217 currency code: three ASCII upper-case letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid currency code {0:?}: expected three letters such as USD")]
pub struct InvalidCurrency(pub String);

impl FromStr for Currency {
    type Err = InvalidCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let b = t.as_bytes();
        if b.len() != 3 || !b.iter().all(|c| c.is_ascii_alphabetic()) {
            return Err(InvalidCurrency(s.to_string()));
        }
        Ok(Currency([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exact amount of one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Money { amount, currency }
    }
    pub fn usd(amount: Decimal) -> Self {
        Money::new(amount, Currency::USD)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount.normalize(), self.currency)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid decimal amount {0:?}")]
pub struct InvalidAmount(pub String);

/// Parses an exact decimal amount as it crosses the API or appears in a price feed:
/// plain (`"0.0960000000"`) or scientific (`"1.5E-3"`). Never goes through `f64`.
pub fn parse_amount(s: &str) -> Result<Decimal, InvalidAmount> {
    let t = s.trim();
    if t.is_empty() {
        return Err(InvalidAmount(s.to_string()));
    }
    Decimal::from_str_exact(t)
        .or_else(|_| Decimal::from_scientific(t))
        .map_err(|_| InvalidAmount(s.to_string()))
}

/// Exact integer money on the placement path: one unit is 1e-12 USD, so prices in
/// nano-dollars per hour times hours or GB in thousandths stay exact.
pub type Units = i128;
pub const UNITS_PER_USD: i128 = 1_000_000_000_000;

/// Decimal dollars from integer units (exact).
pub fn units_to_decimal(u: Units) -> Decimal {
    Decimal::from_i128_with_scale(u, 12).normalize()
}

/// The exact decimal text of `u` units, as `units_to_decimal(u).to_string()` writes it
/// (no trailing zeros), without going through `Decimal`: the request path writes several
/// amounts per placement.
pub fn units_to_string(u: Units) -> String {
    let mut s = String::with_capacity(24);
    push_units(&mut s, u);
    s
}

/// Appends `u` as exact decimal text (no trailing zeros), as `units_to_string` writes it.
/// Digits come from `itoa`: `u128`'s `Display` was a visible share of SelectProvider's
/// response building.
pub fn push_units(s: &mut String, u: Units) {
    let a = u.unsigned_abs();
    let per = UNITS_PER_USD as u128;
    let (int, frac) = (a / per, (a % per) as u64);
    if u < 0 {
        s.push('-');
    }
    let mut digits = itoa::Buffer::new();
    s.push_str(digits.format(int));
    if frac != 0 {
        // 12 fractional digits: leading zeros restored, trailing zeros dropped.
        let f = digits.format(frac);
        s.push('.');
        s.extend(std::iter::repeat_n('0', 12 - f.len()));
        s.push_str(f.trim_end_matches('0'));
    }
}

/// Nano-dollars from a decimal amount; `None` if it has more than 9 decimal places or is
/// out of range.
pub fn to_nanos(d: Decimal) -> Option<i64> {
    let scaled = d.checked_mul(Decimal::from(1_000_000_000i64))?;
    if scaled.fract() != Decimal::ZERO {
        return None;
    }
    scaled.to_i64()
}

/// Milli-units (GB, hours) from a decimal, rounded half away from zero to 3 places.
pub fn to_milli(d: Decimal) -> Option<i64> {
    let r = d
        .checked_mul(Decimal::from(1000))?
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    r.to_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_parses_and_uppercases() {
        assert_eq!("usd".parse::<Currency>().unwrap(), Currency::USD);
        assert_eq!("EUR".parse::<Currency>().unwrap().as_str(), "EUR");
        assert!("US".parse::<Currency>().is_err());
        assert!("U$D".parse::<Currency>().is_err());
    }

    #[test]
    fn amounts_are_exact() {
        assert_eq!(
            parse_amount("0.0960000000")
                .unwrap()
                .normalize()
                .to_string(),
            "0.096"
        );
        assert_eq!(parse_amount("1.5E-3").unwrap().to_string(), "0.0015");
        assert!(parse_amount("").is_err());
        assert!(parse_amount("abc").is_err());
        let sum = parse_amount("0.1").unwrap() + parse_amount("0.2").unwrap();
        assert_eq!(sum, parse_amount("0.3").unwrap());
    }

    #[test]
    fn money_displays_normalised() {
        let m = Money::usd(parse_amount("3.0600").unwrap());
        assert_eq!(m.to_string(), "3.06 USD");
    }
}
