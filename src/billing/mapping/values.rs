//! Typed values (`Val`, `Values`) and `convert`, which reads one cell as its column's
//! `Kind` (nulls, enums, year-months, credits), counting every tolerated deviation.
use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::billing::DimsRef;

use super::*;

/// A converted value.
#[derive(Clone, Debug, Default)]
pub enum Val<'a> {
    #[default]
    Null,
    Dec(Decimal),
    Time(DateTime<Utc>),
    Str(Cow<'a, str>),
    Tags(BTreeMap<String, String>),
    Credits {
        sum: Decimal,
        count: u32,
        committed: bool,
    },
    Month {
        year: i32,
        month: u32,
    },
}

/// One row's converted values, indexed by [`Field`].
pub struct Values<'a> {
    pub(super) vals: [Val<'a>; Field::COUNT],
    pub(super) present: [bool; Field::COUNT],
}

impl<'a> Values<'a> {
    pub(super) fn new(present: [bool; Field::COUNT]) -> Self {
        Values {
            vals: std::array::from_fn(|_| Val::Null),
            present,
        }
    }
    /// Whether the file has a column for `f` (the value may still be null).
    pub fn has(&self, f: Field) -> bool {
        self.present[f as usize]
    }
    pub fn get(&self, f: Field) -> &Val<'a> {
        &self.vals[f as usize]
    }
    pub fn dec(&self, f: Field) -> Option<Decimal> {
        match &self.vals[f as usize] {
            Val::Dec(d) => Some(*d),
            _ => None,
        }
    }
    pub fn time(&self, f: Field) -> Option<DateTime<Utc>> {
        match &self.vals[f as usize] {
            Val::Time(t) => Some(*t),
            _ => None,
        }
    }
    pub fn text(&self, f: Field) -> Option<&str> {
        match &self.vals[f as usize] {
            Val::Str(s) => Some(s.as_ref()),
            _ => None,
        }
    }
    /// A line's descriptive fields as their columns give them; the format passes what it
    /// derives (currency, category, provider, tags) and overrides any field it derives
    /// otherwise (`DimsRef { pricing_category, ..v.dims(…) }`).
    pub fn dims<'s>(
        &'s self,
        billing_currency: &'s str,
        charge_category: &'s str,
        provider_name: &'s str,
        tags: BTreeMap<String, String>,
    ) -> DimsRef<'s> {
        DimsRef {
            billing_currency,
            charge_category,
            provider_name,
            service_name: self.text(Field::ServiceName),
            service_category: self.text(Field::ServiceCategory),
            region_id: self.text(Field::RegionId),
            availability_zone: self.text(Field::AvailabilityZone),
            resource_id: self.text(Field::ResourceId),
            sku_id: self.text(Field::SkuId),
            billing_account_id: self.text(Field::BillingAccountId),
            sub_account_id: self.text(Field::SubAccountId),
            pricing_category: self.text(Field::PricingCategory),
            consumed_unit: self.text(Field::ConsumedUnit),
            charge_class: self.text(Field::ChargeClass),
            commitment_discount_category: self.text(Field::CommitmentDiscountCategory),
            tags,
        }
    }
    pub fn take_tags(&mut self, f: Field) -> BTreeMap<String, String> {
        match std::mem::take(&mut self.vals[f as usize]) {
            Val::Tags(t) => t,
            _ => BTreeMap::new(),
        }
    }
}

/// Converts a cell to the value `kind` asks for. `Err` is the reason (without the column).
pub fn convert<'a>(
    cell: Cell<'a>,
    kind: Kind,
    nulls: NullStyle,
    dev: &mut Deviations,
) -> Result<Val<'a>, String> {
    let text = match cell {
        Cell::Null => return Ok(Val::Null),
        Cell::Text(s) => {
            if is_null_text(s, kind, nulls, dev) {
                return Ok(Val::Null);
            }
            s
        }
        Cell::Bad(reason) => return Err(reason.to_string()),
        Cell::Pairs(p) => {
            return match kind {
                Kind::Tags => Ok(Val::Tags(
                    p.into_iter()
                        .map(|(k, v)| (tag_key_from_map(k), v.unwrap_or("").to_string()))
                        .collect(),
                )),
                _ => Err("map value where a scalar was expected".into()),
            };
        }
        Cell::Float(x) => {
            return match kind {
                Kind::Money | Kind::Number => float_to_decimal(x, dev).map(Val::Dec),
                Kind::Time => Err(format!("number {x} where a timestamp was expected")),
                _ => Ok(Val::Str(Cow::Owned(format!("{x}")))),
            };
        }
        Cell::Int(x) => {
            return match kind {
                Kind::Money | Kind::Number => Ok(Val::Dec(Decimal::from(x))),
                Kind::Time => Err(format!("number {x} where a timestamp was expected")),
                Kind::YearMonth => year_month(&x.to_string()),
                _ => Ok(Val::Str(Cow::Owned(x.to_string()))),
            };
        }
        Cell::Dec(d) => {
            return match kind {
                Kind::Money | Kind::Number => Ok(Val::Dec(d)),
                Kind::Time => Err(format!("number {d} where a timestamp was expected")),
                _ => Ok(Val::Str(Cow::Owned(d.to_string()))),
            };
        }
        Cell::Owned(text) => {
            return match kind {
                Kind::Money | Kind::Number => match parse_decimal(&text, dev) {
                    Some(d) => Ok(Val::Dec(d)),
                    None => Err(format!("not a number: {:?}", clip(&text))),
                },
                _ => Ok(Val::Str(Cow::Owned(text))),
            };
        }
        Cell::Bool(b) => {
            return match kind {
                Kind::Text | Kind::Enum(_) => {
                    Ok(Val::Str(Cow::Borrowed(if b { "true" } else { "false" })))
                }
                _ => Err(format!("boolean {b} where a {kind:?} value was expected")),
            };
        }
        Cell::Time(t) => {
            return match kind {
                Kind::Time => Ok(Val::Time(t)),
                Kind::Text => Ok(Val::Str(Cow::Owned(
                    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                ))),
                _ => Err(format!("timestamp {t} where a {kind:?} value was expected")),
            };
        }
    };
    match kind {
        Kind::Money | Kind::Number => match parse_decimal(text, dev) {
            Some(d) => Ok(Val::Dec(d)),
            None => Err(format!("not a number: {:?}", clip(text))),
        },
        Kind::Time => match parse_time(text) {
            Some((t, shape)) => {
                shape.count(dev);
                Ok(Val::Time(t))
            }
            None => Err(format!("not a timestamp: {:?}", clip(text))),
        },
        Kind::Text => Ok(Val::Str(Cow::Borrowed(text))),
        Kind::Currency => {
            let t = text.trim();
            if t.len() != text.len() {
                dev.add(Dev::WhitespaceTrimmed);
            }
            if t.bytes().all(|b| !b.is_ascii_lowercase()) {
                Ok(Val::Str(Cow::Borrowed(t)))
            } else {
                dev.add(Dev::WrongCaseValue);
                Ok(Val::Str(Cow::Owned(t.to_ascii_uppercase())))
            }
        }
        Kind::Enum(values) => Ok(Val::Str(canonical_enum(text, values, dev))),
        Kind::Tags => parse_tags(text, dev).map(Val::Tags),
        Kind::Credits => parse_credits(text, dev),
        Kind::YearMonth => year_month(text),
    }
}

pub(super) fn clip(s: &str) -> &str {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[inline]
pub(super) fn is_null_text(s: &str, kind: Kind, nulls: NullStyle, dev: &mut Deviations) -> bool {
    match s.len() {
        0 => {
            if nulls == NullStyle::Focus {
                dev.add(Dev::EmptyStringNull);
            }
            true
        }
        4 if s == "NULL" => {
            let numeric = matches!(kind, Kind::Money | Kind::Number | Kind::Time);
            if nulls == NullStyle::Focus {
                dev.add(Dev::NullTokenUpper);
                true
            } else {
                numeric
            }
        }
        4 if s == "null" => {
            nulls == NullStyle::Focus || matches!(kind, Kind::Money | Kind::Number | Kind::Time)
        }
        _ => false,
    }
}

pub fn canonical_enum<'a>(
    text: &'a str,
    values: &'static [&'static str],
    dev: &mut Deviations,
) -> Cow<'a, str> {
    if values.contains(&text) {
        return Cow::Borrowed(text);
    }
    let t = text.trim();
    if let Some(v) = values.iter().find(|v| v.eq_ignore_ascii_case(t)) {
        dev.add(Dev::WrongCaseValue);
        return Cow::Borrowed(v);
    }
    dev.add(Dev::UnknownEnumValue);
    Cow::Borrowed(text)
}

pub(super) fn year_month(text: &str) -> Result<Val<'static>, String> {
    let t = text.trim();
    let digits: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    let ok_shape = digits.len() == 6 && (t.len() == 6 || (t.len() == 7 && t.as_bytes()[4] == b'-'));
    if ok_shape {
        let year: i32 = digits[..4]
            .parse()
            .map_err(|_| format!("not a YYYYMM month: {t:?}"))?;
        let month: u32 = digits[4..]
            .parse()
            .map_err(|_| format!("not a YYYYMM month: {t:?}"))?;
        if (1..=12).contains(&month) {
            return Ok(Val::Month { year, month });
        }
    }
    Err(format!("not a YYYYMM month: {:?}", clip(t)))
}

/// GCP credits: sum of `amount`, count, and whether any is a committed-use discount.
pub(super) fn parse_credits(text: &str, dev: &mut Deviations) -> Result<Val<'static>, String> {
    let t = text.trim();
    if t.is_empty() || t == "[]" {
        return Ok(Val::Credits {
            sum: Decimal::ZERO,
            count: 0,
            committed: false,
        });
    }
    let Some(lit::Lit::List(items)) = lit::parse(t) else {
        return Err(format!("not a list of credits: {:?}", clip(t)));
    };
    let mut sum = Decimal::ZERO;
    let mut count = 0;
    let mut committed = false;
    for it in &items {
        let Some(amount) = it.get("amount") else {
            return Err("credit without amount".into());
        };
        let a = match amount {
            lit::Lit::Num(n) => parse_decimal(n, dev),
            lit::Lit::Str(s) => parse_decimal(s, dev),
            lit::Lit::Null => Some(Decimal::ZERO),
            _ => None,
        }
        .ok_or_else(|| format!("credit amount is not a number: {amount:?}"))?;
        sum = sum.checked_add(a).ok_or("credit sum overflows")?;
        count += 1;
        if let Some(ty) = it.get("type").and_then(|t| t.as_text())
            && ty.starts_with("COMMITTED_USAGE_DISCOUNT")
        {
            committed = true;
        }
    }
    Ok(Val::Credits {
        sum,
        count,
        committed,
    })
}
