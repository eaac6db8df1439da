//! Exact money: a `rust_decimal::Decimal` amount and an ISO 4217 currency code.
//! Invariant: money is never an `f64`; amounts are normalised (no trailing zeros) when stored.
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

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
