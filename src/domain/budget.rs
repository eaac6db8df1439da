//! Budgets (pure): definitions, validation, periods, threshold evaluation and the budget
//! gate that SelectProvider applies to its ranked placements.
//!
//! A [`Budget`] is declared in the TOML config as a `[[budgets]]` table or through the API,
//! and stored as JSON; both use the same serde shape (amounts are decimal strings so they
//! stay exact). [`Budget::validate`] names the offending field. [`period_window`] finds the
//! current period in the budget's timezone, [`evaluate`] compares actual and forecast spend
//! (see [`crate::domain::forecast`]) with the thresholds.
//!
//! # The budget gate ([`apply_gate`])
//! Only cost budgets with `gate` other than `none` take part, and only those that apply to
//! the request (its labels carry the budget's tag, or the budget has no tag filter). A
//! budget *covers* a placement when its provider/region filters match it and the placement
//! is priced in the budget's currency (there is no FX: a EUR budget never gates USD
//! placements). A budget that covers no placement of the request is skipped.
//! `remaining = amount − actual` (zero or negative once the budget is spent).
//! - `warn`: every placement is kept; the decision carries a warning for the budget when
//!   the cheapest placement it covers costs more than `remaining`, or when the forecast is
//!   already at or over the amount.
//! - `deny`: the request is refused when the cheapest placement the budget covers costs
//!   more than `remaining`.
//! - `downgrade`: placements the budget covers that cost more than `remaining` are
//!   removed (a warning says how many); when that leaves nothing, the request is refused
//!   like `deny`.
//!
//! Deny wins over downgrade, and downgrade over warn: `deny` budgets are checked first,
//! then `downgrade` budgets are applied one after another, then `warn` budgets look at the
//! placements that are left. Within each step budgets are taken in name order, so the
//! outcome does not depend on the order the store returns them in; the first refusal is the
//! one reported, and a refused decision carries nothing else.
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::forecast::CostKind;
use super::limits::{self, Limit};
use super::offer::same_provider;
use super::quote::quote;

/// Largest budget or threshold amount accepted (10^15), so limits can never overflow.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);
/// Largest threshold percentage accepted.
pub const MAX_PERCENT: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);

/// Active ISO 4217 currency codes (List One, 2025), without the fund, precious-metal,
/// SDR and testing codes nobody is billed in. Sorted for binary search.
pub const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
    "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP",
    "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY",
    "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD",
    "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK",
    "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG",
    "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS",
    "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// Whether `code` is an active ISO 4217 currency code (upper case).
pub fn is_known_currency(code: &str) -> bool {
    CURRENCIES.binary_search(&code).is_ok()
}

// ---------------------------------------------------------------------------------------
// Definition
// ---------------------------------------------------------------------------------------

fn yes() -> bool {
    true
}
fn utc() -> String {
    "UTC".to_string()
}

/// A spending (or egress) limit per period, with alert thresholds and an optional gate on
/// placements. Defaults: `period = "monthly"`, `metric = "cost"`, `basis = "billed"`,
/// credits, tax and refunds included, `timezone = "UTC"`, `gate = "none"`, no thresholds,
/// no channels, scope = everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub name: String,
    #[serde(with = "decimal_text")]
    pub amount: Decimal,
    /// ISO 4217 code of a cost budget; empty or `"GB"` for an egress budget.
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub period: BudgetPeriod,
    #[serde(default)]
    pub metric: BudgetMetric,
    /// Which cost a cost budget sums (ignored by egress budgets).
    #[serde(default)]
    pub basis: CostBasis,
    #[serde(default = "yes")]
    pub include_credits: bool,
    #[serde(default = "yes")]
    pub include_tax: bool,
    /// Refunds and other adjustments (FOCUS ChargeCategory `Adjustment`).
    #[serde(default = "yes")]
    pub include_refunds: bool,
    /// IANA timezone whose midnights bound the periods.
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub gate: GatePolicy,
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    #[serde(default)]
    pub scope: BudgetScope,
    #[serde(default)]
    pub channels: Channels,
}

/// What a budget counts. All filters `None` = all spend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<TagFilter>,
}

/// A tag (cost lines) or label (placement requests) that must be present with this value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagFilter {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    #[default]
    Monthly,
    Quarterly,
    Annual,
    Daily,
}

/// What the amount limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetMetric {
    /// Money, in the budget's currency, on the budget's cost basis.
    #[default]
    Cost,
    /// Gigabytes of data transfer out per period (`currency` is ignored).
    EgressGb,
}

/// Which FOCUS cost column a cost budget sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostBasis {
    /// BilledCost: what the invoice says, as AWS Budgets' default unblended cost — upfront
    /// fees land on the day they are charged.
    #[default]
    Billed,
    /// EffectiveCost: amortized, after discounts — commitments spread over their term.
    Effective,
}

impl CostBasis {
    /// The cost of a line on this basis.
    pub fn pick(self, billed: Decimal, effective: Decimal) -> Decimal {
        match self {
            CostBasis::Billed => billed,
            CostBasis::Effective => effective,
        }
    }
}

/// An alert level: a percentage of the amount or an absolute amount, compared with the
/// actual or the forecast spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ThresholdRepr", into = "ThresholdRepr")]
pub struct Threshold {
    pub value: ThresholdValue,
    pub on: ThresholdOn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThresholdValue {
    Percent(Decimal),
    Amount(Decimal),
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdOn {
    #[default]
    Actual,
    Forecast,
}

impl ThresholdOn {
    pub fn as_str(self) -> &'static str {
        match self {
            ThresholdOn::Actual => "actual",
            ThresholdOn::Forecast => "forecast",
        }
    }
}

/// `{ percent = "80", on = "actual" }` or `{ amount = "4500", on = "forecast" }`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    percent: Option<decimal_text::Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    amount: Option<decimal_text::Text>,
    #[serde(default)]
    on: ThresholdOn,
}

impl TryFrom<ThresholdRepr> for Threshold {
    type Error = String;
    fn try_from(r: ThresholdRepr) -> Result<Self, String> {
        let value = match (r.percent, r.amount) {
            (Some(p), None) => ThresholdValue::Percent(p.0),
            (None, Some(a)) => ThresholdValue::Amount(a.0),
            _ => return Err("a threshold needs exactly one of `percent` or `amount`".into()),
        };
        Ok(Threshold { value, on: r.on })
    }
}

impl From<Threshold> for ThresholdRepr {
    fn from(t: Threshold) -> Self {
        let (percent, amount) = match t.value {
            ThresholdValue::Percent(p) => (Some(decimal_text::Text(p)), None),
            ThresholdValue::Amount(a) => (None, Some(decimal_text::Text(a))),
        };
        ThresholdRepr {
            percent,
            amount,
            on: t.on,
        }
    }
}

impl Threshold {
    pub fn percent(pct: Decimal, on: ThresholdOn) -> Self {
        Threshold {
            value: ThresholdValue::Percent(pct),
            on,
        }
    }
    pub fn amount(amount: Decimal, on: ThresholdOn) -> Self {
        Threshold {
            value: ThresholdValue::Amount(amount),
            on,
        }
    }

    /// A key stable across restarts and independent of how the number was written
    /// (`"80"` and `"80.0"` give the same key): `"actual:80%"`, `"forecast:4500"`. Used to
    /// fire each alert once per period.
    pub fn key(&self) -> String {
        match self.value {
            ThresholdValue::Percent(p) => format!("{}:{}%", self.on.as_str(), p.normalize()),
            ThresholdValue::Amount(a) => format!("{}:{}", self.on.as_str(), a.normalize()),
        }
    }

    /// The spend at which the threshold is crossed: `amount × percent / 100` (exact) or the
    /// absolute amount. Saturates instead of overflowing on unvalidated input.
    pub fn limit(&self, budget_amount: Decimal) -> Decimal {
        match self.value {
            ThresholdValue::Percent(p) => budget_amount
                .checked_mul(p)
                .map(|x| x / Decimal::ONE_HUNDRED)
                .unwrap_or(Decimal::MAX),
            ThresholdValue::Amount(a) => a,
        }
    }
}

/// Where alerts go. Webhook URLs are secrets: see [`Budget::redacted`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channels {
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub slack_webhooks: Vec<String>,
}

/// What SelectProvider does when a placement would exceed the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatePolicy {
    /// The budget does not take part in placement.
    #[default]
    None,
    /// Place anyway, with a warning.
    Warn,
    /// Refuse the request.
    Deny,
    /// Drop the placements the budget cannot afford; refuse if none is left.
    Downgrade,
}

/// A budget definition error, naming the field (`thresholds[1].percent`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BudgetError {
    pub field: String,
    pub message: String,
}

fn err<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, BudgetError> {
    Err(BudgetError {
        field: field.into(),
        message: message.into(),
    })
}

impl Budget {
    /// A monthly cost budget in UTC with every default.
    pub fn new(name: impl Into<String>, amount: Decimal, currency: impl Into<String>) -> Self {
        Budget {
            name: name.into(),
            amount,
            currency: currency.into(),
            period: BudgetPeriod::default(),
            metric: BudgetMetric::default(),
            basis: CostBasis::default(),
            include_credits: true,
            include_tax: true,
            include_refunds: true,
            timezone: utc(),
            gate: GatePolicy::default(),
            thresholds: Vec::new(),
            scope: BudgetScope::default(),
            channels: Channels::default(),
        }
    }

    /// The unit amounts are in: the currency, or `"GB"` for egress budgets.
    pub fn unit(&self) -> &str {
        match self.metric {
            BudgetMetric::Cost => &self.currency,
            BudgetMetric::EgressGb => "GB",
        }
    }

    /// Whether spend of this kind counts towards the budget.
    pub fn includes(&self, kind: CostKind) -> bool {
        match kind {
            CostKind::Usage | CostKind::OneOff => true,
            CostKind::Credit => self.include_credits,
            CostKind::Tax => self.include_tax,
            CostKind::Adjustment => self.include_refunds,
        }
    }

    /// The parsed timezone (validated by [`Budget::validate`]).
    pub fn tz(&self) -> Result<Tz, BudgetError> {
        limits::TIMEZONE
            .check(&self.timezone)
            .or_else(|m| err("timezone", m))?;
        self.timezone.parse::<Tz>().or_else(|_| {
            err(
                "timezone",
                format!(
                    "unknown timezone {}: expected an IANA name such as UTC or Europe/Paris",
                    quote(&self.timezone)
                ),
            )
        })
    }

    /// Checks the definition; the error names the first offending field.
    pub fn validate(&self) -> Result<(), BudgetError> {
        validate_name(&self.name)?;
        if self.amount <= Decimal::ZERO {
            return err("amount", "must be greater than 0");
        }
        if self.amount > MAX_AMOUNT {
            return err("amount", "must be at most 1000000000000000");
        }
        match self.metric {
            BudgetMetric::Cost => {
                if self.currency.is_empty() {
                    return err("currency", "required for a cost budget, e.g. \"USD\"");
                }
                if !is_known_currency(&self.currency) {
                    return err(
                        "currency",
                        format!(
                            "unknown currency {}: expected an upper-case ISO 4217 code such as USD",
                            quote(&self.currency)
                        ),
                    );
                }
            }
            BudgetMetric::EgressGb => {
                if !(self.currency.is_empty() || self.currency == "GB") {
                    return err(
                        "currency",
                        "an egress_gb budget counts gigabytes: leave currency out or set \"GB\"",
                    );
                }
                if self.gate != GatePolicy::None {
                    return err("gate", "only cost budgets can gate placements");
                }
            }
        }
        self.tz()?;
        self.scope.validate()?;
        let mut keys: Vec<String> = Vec::with_capacity(self.thresholds.len());
        for (i, t) in self.thresholds.iter().enumerate() {
            let (field, v, max) = match t.value {
                ThresholdValue::Percent(p) => ("percent", p, MAX_PERCENT),
                ThresholdValue::Amount(a) => ("amount", a, MAX_AMOUNT),
            };
            if v <= Decimal::ZERO {
                return err(format!("thresholds[{i}].{field}"), "must be greater than 0");
            }
            if v > max {
                return err(
                    format!("thresholds[{i}].{field}"),
                    format!("must be at most {max}"),
                );
            }
            let key = t.key();
            if let Some(j) = keys.iter().position(|k| *k == key) {
                return err(
                    format!("thresholds[{i}]"),
                    format!("duplicates thresholds[{j}] ({key})"),
                );
            }
            keys.push(key);
        }
        limits::EMAILS
            .check(self.channels.emails.len())
            .or_else(|m| err("channels.emails", m))?;
        limits::WEBHOOKS
            .check(self.channels.slack_webhooks.len())
            .or_else(|m| err("channels.slack_webhooks", m))?;
        for (i, e) in self.channels.emails.iter().enumerate() {
            if let Err(m) = check_email(e) {
                return err(format!("channels.emails[{i}]"), m);
            }
        }
        for (i, w) in self.channels.slack_webhooks.iter().enumerate() {
            if let Err(m) = check_webhook(w) {
                return err(format!("channels.slack_webhooks[{i}]"), m);
            }
        }
        Ok(())
    }

    /// A copy safe to return from List/GetStatus: each webhook URL becomes its scheme, host
    /// and port followed by `/…` (the path carries the secret). Emails are not secret.
    pub fn redacted(&self) -> Budget {
        let mut b = self.clone();
        for w in &mut b.channels.slack_webhooks {
            *w = redact_url(w);
        }
        b
    }
}

fn validate_name(name: &str) -> Result<(), BudgetError> {
    if name.trim().is_empty() {
        return err("name", "must not be empty");
    }
    limits::BUDGET_NAME
        .check(name)
        .or_else(|m| err("name", m))?;
    if name.starts_with(' ') || name.ends_with(' ') {
        return err("name", "must not start or end with a space");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ' ')))
    {
        return err(
            "name",
            format!("{c:?} not allowed: use letters, digits, spaces, '.', '_' and '-'"),
        );
    }
    Ok(())
}

fn check_email(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("must not be empty".into());
    }
    limits::EMAIL.check(addr)?;
    if let Some(c) = addr.chars().find(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '<' | '>' | ',' | ';' | ':' | '"' | '(' | ')' | '[' | ']' | '\\'
            )
    }) {
        return Err(format!("{c:?} not allowed in an email address"));
    }
    let Some((local, domain)) = addr.split_once('@') else {
        return Err(format!("{} is not an email address (no @)", quote(addr)));
    };
    if domain.contains('@') {
        return Err(format!("{} has more than one @", quote(addr)));
    }
    if local.is_empty() || local.len() > 64 {
        return Err(format!(
            "{}: the part before @ must be 1 to 64 characters",
            quote(addr)
        ));
    }
    if !domain.contains('.') || domain.split('.').any(str::is_empty) {
        return Err(format!(
            "{}: the domain must be a name with a dot, such as example.com",
            quote(addr)
        ));
    }
    Ok(())
}

fn check_webhook(raw: &str) -> Result<(), String> {
    limits::WEBHOOK_URL.check(raw)?;
    let u = url::Url::parse(raw).map_err(|e| format!("not an absolute URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("scheme {}: expected https", quote(u.scheme())));
    }
    match u.host_str() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err("URL has no host".into()),
    }
}

fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}/…", u.scheme()),
            (Some(h), None) => format!("{}://{h}/…", u.scheme()),
            _ => "…".to_string(),
        },
        Err(_) => "…".to_string(),
    }
}

fn check_filter(field: &str, v: &Option<String>, limit: Limit) -> Result<(), BudgetError> {
    if let Some(s) = v {
        if s.trim().is_empty() {
            return err(
                format!("scope.{field}"),
                format!("must not be empty (leave {field} out to match every {field})"),
            );
        }
        limit
            .check(s)
            .or_else(|m| err(format!("scope.{field}"), m))?;
    }
    Ok(())
}

impl BudgetScope {
    fn validate(&self) -> Result<(), BudgetError> {
        check_filter("provider", &self.provider, limits::SCOPE_VALUE)?;
        check_filter("service", &self.service, limits::SCOPE_VALUE)?;
        check_filter("account", &self.account, limits::SCOPE_VALUE)?;
        check_filter("region", &self.region, limits::REGION)?;
        if let Some(t) = &self.tag {
            if t.key.trim().is_empty() {
                return err("scope.tag.key", "must not be empty");
            }
            if t.value.is_empty() {
                return err("scope.tag.value", "must not be empty");
            }
            limits::TAG_KEY
                .check(&t.key)
                .or_else(|m| err("scope.tag.key", m))?;
            limits::TAG_VALUE
                .check(&t.value)
                .or_else(|m| err("scope.tag.value", m))?;
        }
        Ok(())
    }

    /// Whether a placement request with these labels spends from the budget: always for a
    /// budget without a tag filter, else when the labels carry the tag's key with its value.
    pub fn applies_to_request(&self, labels: &BTreeMap<String, String>) -> bool {
        match &self.tag {
            None => true,
            Some(t) => labels.get(&t.key).is_some_and(|v| *v == t.value),
        }
    }

    /// Whether a placement on this provider and region spends from the budget. Provider
    /// (`aws`, `gcp`/`google`, `azure`) and region compare case-insensitively; service and
    /// account filters do not apply to placements.
    pub fn covers_placement(&self, provider: &str, region: &str) -> bool {
        self.provider
            .as_deref()
            .is_none_or(|p| same_provider(p, provider))
            && self
                .region
                .as_deref()
                .is_none_or(|r| r.trim().eq_ignore_ascii_case(region))
    }
}

/// Decimal (de)serialisation as text: amounts are written as strings (`"5000.50"`);
/// integers are accepted too, floats are refused so no amount goes through `f64`.
mod decimal_text {
    use std::fmt;

    use rust_decimal::Decimal;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// A `Decimal` with this module's serde, for use inside `Option`.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Text(pub Decimal);

    impl serde::Serialize for Text {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(&self.0, s)
        }
    }
    impl<'de> serde::Deserialize<'de> for Text {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize(d).map(Text)
        }
    }

    pub fn serialize<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(TextVisitor)
    }

    struct TextVisitor;

    impl Visitor<'_> for TextVisitor {
        type Value = Decimal;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a decimal amount as a string, such as \"5000\" or \"0.80\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            crate::domain::money::parse_amount(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            Err(E::custom(format!(
                "write the amount {v} as a string, e.g. \"{v}\", so it stays exact"
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Periods
// ---------------------------------------------------------------------------------------

impl GatePolicy {
    /// The name used in config files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            GatePolicy::None => "none",
            GatePolicy::Warn => "warn",
            GatePolicy::Deny => "deny",
            GatePolicy::Downgrade => "downgrade",
        }
    }
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Monthly => "monthly",
            BudgetPeriod::Quarterly => "quarterly",
            BudgetPeriod::Annual => "annual",
            BudgetPeriod::Daily => "daily",
        }
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One budget period: local midnight to local midnight in the budget's timezone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodWindow {
    /// `"2026-11"`, `"2026-Q4"`, `"2026"` or `"2026-11-27"`.
    pub key: String,
    pub start: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
    pub first_day: NaiveDate,
    /// Exclusive.
    pub end_day: NaiveDate,
    pub tz: Tz,
}

impl PeriodWindow {
    /// Calendar days in the period.
    pub fn days(&self) -> i64 {
        (self.end_day - self.first_day).num_days()
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }

    /// The calendar day of an instant in the period's timezone (how spend is bucketed).
    pub fn local_day(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }
}

/// The first instant of `day` in `tz`: local midnight, or — when midnight falls in a DST
/// gap — the first valid instant after it; an ambiguous midnight takes the earlier one.
pub fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_time(NaiveTime::MIN);
    // Modern offsets are whole minutes, so a gap ends on a minute boundary.
    for minute in 0..24 * 60 {
        let local = midnight + chrono::Duration::minutes(minute);
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    // No valid minute in a whole day cannot happen with the IANA data; stay total anyway.
    Utc.from_utc_datetime(&midnight)
}

/// The period of `period` containing `now`, with boundaries at local midnight in `tz`.
pub fn period_window(period: BudgetPeriod, tz: Tz, now: DateTime<Utc>) -> PeriodWindow {
    let today = now.with_timezone(&tz).date_naive();
    let (y, m) = (today.year(), today.month());
    let first_of = |month: u32| NaiveDate::from_ymd_opt(y, month, 1).unwrap_or(today);
    let (first_day, end_day, key) = match period {
        BudgetPeriod::Daily => (
            today,
            today + Days::new(1),
            today.format("%Y-%m-%d").to_string(),
        ),
        BudgetPeriod::Monthly => {
            let first = first_of(m);
            (first, first + Months::new(1), format!("{y:04}-{m:02}"))
        }
        BudgetPeriod::Quarterly => {
            let q = (m - 1) / 3;
            let first = first_of(q * 3 + 1);
            (first, first + Months::new(3), format!("{y:04}-Q{}", q + 1))
        }
        BudgetPeriod::Annual => {
            let first = first_of(1);
            (first, first + Months::new(12), format!("{y:04}"))
        }
    };
    PeriodWindow {
        key,
        start: local_midnight(tz, first_day),
        end: local_midnight(tz, end_day),
        first_day,
        end_day,
        tz,
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// A budget's standing in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetStatus {
    pub budget: String,
    pub period: PeriodWindow,
    pub amount: Decimal,
    /// Currency, or `"GB"` for egress budgets.
    pub currency: String,
    pub actual: Decimal,
    pub forecast: Decimal,
    pub thresholds: Vec<ThresholdState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdState {
    /// [`Threshold::key`].
    pub key: String,
    pub on: ThresholdOn,
    pub limit: Decimal,
    pub crossed: bool,
}

impl BudgetStatus {
    /// Thresholds at or over their limit.
    pub fn crossed(&self) -> impl Iterator<Item = &ThresholdState> {
        self.thresholds.iter().filter(|t| t.crossed)
    }
}

/// Compares spend with each threshold: actual thresholds are crossed when
/// `actual ≥ limit`, forecast thresholds when `forecast ≥ limit`.
pub fn evaluate(
    budget: &Budget,
    window: &PeriodWindow,
    actual: Decimal,
    forecast: Decimal,
) -> BudgetStatus {
    let thresholds = budget
        .thresholds
        .iter()
        .map(|t| {
            let limit = t.limit(budget.amount);
            let seen = match t.on {
                ThresholdOn::Actual => actual,
                ThresholdOn::Forecast => forecast,
            };
            ThresholdState {
                key: t.key(),
                on: t.on,
                limit,
                crossed: seen >= limit,
            }
        })
        .collect();
    BudgetStatus {
        budget: budget.name.clone(),
        period: window.clone(),
        amount: budget.amount,
        currency: budget.unit().to_string(),
        actual,
        forecast,
        thresholds,
    }
}

// ---------------------------------------------------------------------------------------
// Gate
// ---------------------------------------------------------------------------------------

/// What the gate needs of a budget: its definition's scope and policy and the current
/// period's spend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSnapshot {
    pub name: String,
    pub scope: BudgetScope,
    pub metric: BudgetMetric,
    pub policy: GatePolicy,
    pub amount: Decimal,
    pub currency: String,
    pub actual: Decimal,
    pub forecast: Decimal,
}

impl BudgetSnapshot {
    pub fn new(budget: &Budget, actual: Decimal, forecast: Decimal) -> Self {
        BudgetSnapshot {
            name: budget.name.clone(),
            scope: budget.scope.clone(),
            metric: budget.metric,
            policy: budget.gate,
            amount: budget.amount,
            currency: budget.currency.clone(),
            actual,
            forecast,
        }
    }

    /// `amount − actual`; may be zero or negative.
    pub fn remaining(&self) -> Decimal {
        self.amount.checked_sub(self.actual).unwrap_or(Decimal::MIN)
    }

    /// Whether a placement spends from this budget: same currency, provider and region in
    /// scope.
    pub fn covers(&self, p: &PlacementCost<'_>) -> bool {
        // No FX: a budget only gates placements priced in its own currency.
        p.currency.eq_ignore_ascii_case(&self.currency)
            && self.scope.covers_placement(p.provider, p.region)
    }
}

/// A candidate placement's expected cost for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementCost<'a> {
    pub provider: &'a str,
    pub region: &'a str,
    pub total: Decimal,
    pub currency: &'a str,
}

/// A budget the job may push over (`warn`), or that removed placements (`downgrade`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateWarning {
    pub budget: String,
    pub policy: GatePolicy,
    pub amount: Decimal,
    pub currency: String,
    pub remaining: Decimal,
    pub actual: Decimal,
    pub forecast: Decimal,
    /// `warn`: the cheapest placement the budget covers (among those kept);
    /// `downgrade`: the cheapest placement it removed.
    pub job_cost: Decimal,
    /// Placements removed (`downgrade`); 0 for `warn`.
    pub removed: usize,
}

/// Why the request is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDeny {
    pub budget: String,
    /// `Deny`, or `Downgrade` when no placement was left.
    pub policy: GatePolicy,
    pub amount: Decimal,
    pub currency: String,
    pub remaining: Decimal,
    pub actual: Decimal,
    pub forecast: Decimal,
    /// The cheapest placement the budget covers — more than `remaining`.
    pub job_cost: Decimal,
}

/// The outcome of [`apply_gate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateDecision {
    /// `None` keeps every placement; else `keep[i]` says whether placement `i` stays.
    pub keep: Option<Vec<bool>>,
    pub warnings: Vec<GateWarning>,
    pub deny: Option<GateDeny>,
}

impl GateDecision {
    pub fn is_denied(&self) -> bool {
        self.deny.is_some()
    }
    /// Whether placement `i` stays (false for all when denied).
    pub fn kept(&self, i: usize) -> bool {
        self.deny.is_none()
            && self
                .keep
                .as_ref()
                .is_none_or(|k| k.get(i).copied().unwrap_or(false))
    }
}

fn cheapest_covered(
    b: &BudgetSnapshot,
    placements: &[PlacementCost<'_>],
    keep: Option<&[bool]>,
) -> Option<Decimal> {
    placements
        .iter()
        .enumerate()
        .filter(|(i, p)| keep.is_none_or(|k| k[*i]) && b.covers(p))
        .map(|(_, p)| p.total)
        .min()
}

fn deny_of(b: &BudgetSnapshot, job_cost: Decimal) -> GateDeny {
    GateDeny {
        budget: b.name.clone(),
        policy: b.policy,
        amount: b.amount,
        currency: b.currency.clone(),
        remaining: b.remaining(),
        actual: b.actual,
        forecast: b.forecast,
        job_cost,
    }
}

fn warning_of(b: &BudgetSnapshot, job_cost: Decimal, removed: usize) -> GateWarning {
    GateWarning {
        budget: b.name.clone(),
        policy: b.policy,
        amount: b.amount,
        currency: b.currency.clone(),
        remaining: b.remaining(),
        actual: b.actual,
        forecast: b.forecast,
        job_cost,
        removed,
    }
}

/// Applies the cost budgets' gate policies to a request's placements (see the module
/// documentation for the rules). Allocates only when a budget takes part.
pub fn apply_gate(
    snapshots: &[BudgetSnapshot],
    labels: &BTreeMap<String, String>,
    placements: &[PlacementCost<'_>],
) -> GateDecision {
    let mut order: Vec<&BudgetSnapshot> = snapshots
        .iter()
        .filter(|b| {
            b.metric == BudgetMetric::Cost
                && b.policy != GatePolicy::None
                && b.scope.applies_to_request(labels)
        })
        .collect();
    let mut decision = GateDecision::default();
    if order.is_empty() {
        return decision;
    }
    order.sort_by(|a, b| a.name.cmp(&b.name));

    for b in order.iter().filter(|b| b.policy == GatePolicy::Deny) {
        if let Some(cost) = cheapest_covered(b, placements, None)
            && cost > b.remaining()
        {
            decision.deny = Some(deny_of(b, cost));
            return decision;
        }
    }

    for b in order.iter().filter(|b| b.policy == GatePolicy::Downgrade) {
        let keep = decision.keep.as_deref();
        let remaining = b.remaining();
        let over = |i: usize, p: &PlacementCost<'_>| {
            keep.is_none_or(|k| k[i]) && b.covers(p) && p.total > remaining
        };
        let (mut removed, mut cheapest_removed) = (0usize, None::<Decimal>);
        for (i, p) in placements.iter().enumerate() {
            if over(i, p) {
                removed += 1;
                cheapest_removed = Some(cheapest_removed.map_or(p.total, |c| c.min(p.total)));
            }
        }
        let Some(job_cost) = cheapest_removed else {
            continue;
        };
        let kept_before = keep.map_or(placements.len(), |k| k.iter().filter(|x| **x).count());
        if removed == kept_before {
            return GateDecision {
                keep: None,
                warnings: Vec::new(),
                deny: Some(deny_of(b, job_cost)),
            };
        }
        let mask: Vec<bool> = placements
            .iter()
            .enumerate()
            .map(|(i, p)| keep.is_none_or(|k| k[i]) && !over(i, p))
            .collect();
        decision.keep = Some(mask);
        decision.warnings.push(warning_of(b, job_cost, removed));
    }

    for b in order.iter().filter(|b| b.policy == GatePolicy::Warn) {
        let Some(cost) = cheapest_covered(b, placements, decision.keep.as_deref()) else {
            continue;
        };
        if cost > b.remaining() || b.forecast >= b.amount {
            decision.warnings.push(warning_of(b, cost, 0));
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    const FULL_TOML: &str = r#"
[[budgets]]
name = "ml-training"
amount = "5000"
currency = "USD"
period = "monthly"
metric = "cost"
basis = "effective"
include_credits = true
include_tax = false
include_refunds = true
timezone = "America/Los_Angeles"
gate = "deny"
thresholds = [
  { percent = "80", on = "actual" },
  { amount = "4500", on = "forecast" },
]

[budgets.scope]
provider = "aws"
region = "us-east-1"
tag = { key = "team", value = "ml" }

[budgets.channels]
emails = ["finops@example.com"]
slack_webhooks = ["https://hooks.slack.com/services/T000/B000/XXXXSECRET"]
"#;

    #[derive(Deserialize, Serialize)]
    struct File {
        budgets: Vec<Budget>,
    }

    fn full() -> Budget {
        toml::from_str::<File>(FULL_TOML).unwrap().budgets.remove(0)
    }

    fn valid() -> Budget {
        let mut b = Budget::new("team a", d("1000"), "USD");
        b.thresholds = vec![
            Threshold::percent(d("80"), ThresholdOn::Actual),
            Threshold::amount(d("900"), ThresholdOn::Forecast),
        ];
        b.channels.emails = vec!["a.b+c@example.co.uk".into()];
        b.channels.slack_webhooks = vec!["https://hooks.slack.com/services/T/B/S".into()];
        b
    }

    fn field_of(b: &Budget) -> String {
        b.validate().unwrap_err().field
    }

    // --- serde -------------------------------------------------------------------------

    #[test]
    fn the_full_toml_example_reads_as_documented() {
        let b = full();
        b.validate().unwrap();
        assert_eq!(b.name, "ml-training");
        assert_eq!(b.amount, d("5000"));
        assert_eq!(b.basis, CostBasis::Effective);
        assert!(!b.include_tax);
        assert_eq!(b.gate, GatePolicy::Deny);
        assert_eq!(
            b.thresholds,
            vec![
                Threshold::percent(d("80"), ThresholdOn::Actual),
                Threshold::amount(d("4500"), ThresholdOn::Forecast),
            ]
        );
        assert_eq!(b.scope.provider.as_deref(), Some("aws"));
        assert_eq!(
            b.scope.tag,
            Some(TagFilter {
                key: "team".into(),
                value: "ml".into()
            })
        );
        assert_eq!(b.channels.emails, vec!["finops@example.com".to_string()]);
    }

    #[test]
    fn a_minimal_budget_takes_the_defaults() {
        let f: File = toml::from_str(
            "[[budgets]]\nname = \"all\"\namount = \"100.50\"\ncurrency = \"EUR\"\nthresholds = [{ percent = \"90\" }]\n",
        )
        .unwrap();
        let b = &f.budgets[0];
        let mut expected = Budget::new("all", d("100.50"), "EUR");
        expected.thresholds = vec![Threshold::percent(d("90"), ThresholdOn::Actual)];
        assert_eq!(*b, expected);
        assert_eq!(b.period, BudgetPeriod::Monthly);
        assert_eq!(b.metric, BudgetMetric::Cost);
        assert_eq!(b.basis, CostBasis::Billed);
        assert!(b.include_credits && b.include_tax && b.include_refunds);
        assert_eq!(b.timezone, "UTC");
        assert_eq!(b.gate, GatePolicy::None);
        assert_eq!(b.scope, BudgetScope::default());
        b.validate().unwrap();
    }

    #[test]
    fn budgets_round_trip_through_json_and_toml_exactly() {
        let b = full();
        let json = serde_json::to_string(&b).unwrap();
        assert!(json.contains(r#""amount":"5000""#), "{json}");
        assert!(json.contains(r#"{"percent":"80","on":"actual"}"#), "{json}");
        assert_eq!(serde_json::from_str::<Budget>(&json).unwrap(), b);
        let text = toml::to_string(&File {
            budgets: vec![b.clone()],
        })
        .unwrap();
        assert_eq!(toml::from_str::<File>(&text).unwrap().budgets[0], b);
        // Decimal text keeps every digit.
        let mut precise = b.clone();
        precise.amount = d("1234.5678901234567890123");
        let back: Budget = serde_json::from_str(&serde_json::to_string(&precise).unwrap()).unwrap();
        assert_eq!(back.amount, precise.amount);
    }

    #[test]
    fn serde_rejects_floats_unknown_fields_and_ambiguous_thresholds() {
        let parse = |extra: &str| {
            toml::from_str::<File>(&format!(
                "[[budgets]]\nname = \"x\"\ncurrency = \"USD\"\n{extra}\n"
            ))
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert!(parse("amount = 100").is_ok(), "integers are exact");
        let e = parse("amount = 100.5").unwrap_err();
        assert!(e.contains("as a string"), "{e}");
        let e = parse("amount = \"1\"\ncolour = \"red\"").unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = parse("amount = \"1\"\nperiod = \"weekly\"").unwrap_err();
        assert!(e.contains("weekly"), "{e}");
        let e = parse("amount = \"1\"\nthresholds = [{ percent = \"1\", amount = \"2\" }]")
            .unwrap_err();
        assert!(e.contains("exactly one of"), "{e}");
        let e = parse("amount = \"1\"\nthresholds = [{ on = \"actual\" }]").unwrap_err();
        assert!(e.contains("exactly one of"), "{e}");
        let e = parse("amount = \"abc\"").unwrap_err();
        assert!(e.contains("abc"), "{e}");
        let e = parse("amount = \"1\"\n[budgets.scope]\nzone = \"a\"").unwrap_err();
        assert!(e.contains("zone"), "{e}");
    }

    // --- validation --------------------------------------------------------------------

    #[test]
    fn a_valid_budget_validates() {
        valid().validate().unwrap();
        let mut egress = Budget::new("egress", d("500"), "");
        egress.metric = BudgetMetric::EgressGb;
        egress.validate().unwrap();
        assert_eq!(egress.unit(), "GB");
        egress.currency = "GB".into();
        egress.validate().unwrap();
    }

    #[test]
    fn names_are_checked() {
        for (name, ok) in [
            ("", false),
            ("   ", false),
            (" lead", false),
            ("ok name_1.2-3", true),
            ("bad/name", false),
            ("émoji", false),
        ] {
            let mut b = valid();
            b.name = name.into();
            assert_eq!(b.validate().is_ok(), ok, "{name:?}");
            if !ok {
                assert_eq!(field_of(&b), "name");
            }
        }
        let mut b = valid();
        b.name = "a".repeat(100);
        b.validate().unwrap();
        b.name = "a".repeat(101);
        assert_eq!(
            b.validate().unwrap_err().to_string(),
            "name: is 101 bytes; the limit for budget name is 100 bytes"
        );
    }

    #[test]
    fn amounts_and_currencies_are_checked() {
        let mut b = valid();
        b.amount = Decimal::ZERO;
        assert_eq!(
            b.validate().unwrap_err().to_string(),
            "amount: must be greater than 0"
        );
        b.amount = d("-5");
        assert_eq!(field_of(&b), "amount");
        b.amount = MAX_AMOUNT;
        b.validate().unwrap();
        b.amount = MAX_AMOUNT + Decimal::ONE;
        assert_eq!(field_of(&b), "amount");

        for (code, ok) in [
            ("USD", true),
            ("EUR", true),
            ("NOK", true),
            ("USX", false),
            ("usd", false),
            ("", false),
            ("XAU", false),
        ] {
            let mut b = valid();
            b.currency = code.into();
            assert_eq!(b.validate().is_ok(), ok, "{code}");
            if !ok {
                assert_eq!(field_of(&b), "currency");
            }
        }
        let mut e = valid();
        e.metric = BudgetMetric::EgressGb;
        assert_eq!(field_of(&e), "currency", "USD on an egress budget");
        e.currency = String::new();
        e.validate().unwrap();
        e.gate = GatePolicy::Deny;
        assert_eq!(field_of(&e), "gate");
    }

    #[test]
    fn the_currency_list_is_sorted_unique_and_upper_case() {
        assert!(CURRENCIES.windows(2).all(|w| w[0] < w[1]));
        assert!(
            CURRENCIES
                .iter()
                .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
        assert!(is_known_currency("JPY") && !is_known_currency("USX"));
        assert_eq!(MAX_AMOUNT, d("1000000000000000"));
        assert_eq!(MAX_PERCENT, d("1000"));
    }

    #[test]
    fn thresholds_are_checked_by_index() {
        let mut b = valid();
        b.thresholds
            .push(Threshold::percent(Decimal::ZERO, ThresholdOn::Actual));
        assert_eq!(
            b.validate().unwrap_err().to_string(),
            "thresholds[2].percent: must be greater than 0"
        );
        let mut b = valid();
        b.thresholds[1] = Threshold::amount(d("-1"), ThresholdOn::Forecast);
        assert_eq!(field_of(&b), "thresholds[1].amount");
        let mut b = valid();
        b.thresholds[0] = Threshold::percent(d("1000.1"), ThresholdOn::Actual);
        assert_eq!(field_of(&b), "thresholds[0].percent");
        // 80 and 80.00 on the same side are the same threshold.
        let mut b = valid();
        b.thresholds
            .push(Threshold::percent(d("80.00"), ThresholdOn::Actual));
        assert_eq!(
            b.validate().unwrap_err().to_string(),
            "thresholds[2]: duplicates thresholds[0] (actual:80%)"
        );
        // ... but not on the other side.
        b.thresholds[2].on = ThresholdOn::Forecast;
        b.validate().unwrap();
        // No thresholds at all is fine.
        b.thresholds.clear();
        b.validate().unwrap();
    }

    #[test]
    fn emails_are_plausible_addr_specs() {
        for (addr, ok) in [
            ("ops@example.com", true),
            ("first.last+tag@sub.example.io", true),
            ("ops@localhost", false),
            ("@example.com", false),
            ("ops@@example.com", false),
            ("ops@ex@ample.com", false),
            ("ops example@example.com", false),
            ("ops@example.com\r\nBcc: x@y.z", false),
            ("ops@example..com", false),
            ("ops@.example.com", false),
            ("ops@example.com.", false),
            ("Ops <ops@example.com>", false),
            ("", false),
            ("opsexample.com", false),
        ] {
            let mut b = valid();
            b.channels.emails = vec!["first@example.com".into(), addr.into()];
            assert_eq!(b.validate().is_ok(), ok, "{addr:?}");
            if !ok {
                assert_eq!(field_of(&b), "channels.emails[1]", "{addr:?}");
            }
        }
    }

    #[test]
    fn webhooks_are_absolute_http_urls_with_a_host() {
        for (url, ok) in [
            ("https://hooks.slack.com/services/T/B/S", true),
            ("http://localhost:8080/hook", true),
            ("hooks.slack.com/services/T/B/S", false),
            ("ftp://hooks.slack.com/x", false),
            ("file:///etc/passwd", false),
            ("https://", false),
            ("", false),
        ] {
            let mut b = valid();
            b.channels.slack_webhooks = vec![url.into()];
            assert_eq!(b.validate().is_ok(), ok, "{url:?}");
            if !ok {
                assert_eq!(field_of(&b), "channels.slack_webhooks[0]", "{url:?}");
            }
        }
    }

    #[test]
    fn timezone_and_scope_are_checked() {
        let mut b = valid();
        b.timezone = "Mars/Olympus".into();
        assert_eq!(field_of(&b), "timezone");
        b.timezone = "Europe/Paris".into();
        b.validate().unwrap();
        assert_eq!(b.tz().unwrap(), chrono_tz::Europe::Paris);

        let mut b = valid();
        b.scope.provider = Some(" ".into());
        assert_eq!(field_of(&b), "scope.provider");
        let mut b = valid();
        b.scope.region = Some(String::new());
        assert_eq!(field_of(&b), "scope.region");
        let mut b = valid();
        b.scope.tag = Some(TagFilter {
            key: String::new(),
            value: "x".into(),
        });
        assert_eq!(field_of(&b), "scope.tag.key");
        b.scope.tag = Some(TagFilter {
            key: "team".into(),
            value: String::new(),
        });
        assert_eq!(field_of(&b), "scope.tag.value");
    }

    #[test]
    fn redacted_hides_webhook_paths_but_keeps_emails() {
        let mut b = valid();
        b.channels.slack_webhooks = vec![
            "https://hooks.slack.com/services/T000/B000/SECRET".into(),
            "http://10.0.0.5:8080/hook/SECRET?token=SECRET".into(),
            "not a url SECRET".into(),
        ];
        let r = b.redacted();
        assert_eq!(
            r.channels.slack_webhooks,
            vec![
                "https://hooks.slack.com/…".to_string(),
                "http://10.0.0.5:8080/…".to_string(),
                "…".to_string(),
            ]
        );
        assert_eq!(r.channels.emails, b.channels.emails);
        assert!(!serde_json::to_string(&r).unwrap().contains("SECRET"));
        // The original is untouched.
        assert!(b.channels.slack_webhooks[0].ends_with("SECRET"));
    }

    #[test]
    fn includes_follows_the_flags() {
        let mut b = valid();
        for k in [
            CostKind::Usage,
            CostKind::OneOff,
            CostKind::Credit,
            CostKind::Tax,
            CostKind::Adjustment,
        ] {
            assert!(b.includes(k));
        }
        b.include_credits = false;
        b.include_tax = false;
        b.include_refunds = false;
        assert!(b.includes(CostKind::Usage) && b.includes(CostKind::OneOff));
        assert!(!b.includes(CostKind::Credit));
        assert!(!b.includes(CostKind::Tax));
        assert!(!b.includes(CostKind::Adjustment));
        assert_eq!(CostBasis::Billed.pick(d("2"), d("1")), d("2"));
        assert_eq!(CostBasis::Effective.pick(d("2"), d("1")), d("1"));
    }

    // --- scope matching ------------------------------------------------------------------

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tag_filters_decide_which_requests_a_budget_applies_to() {
        let everything = BudgetScope::default();
        assert!(everything.applies_to_request(&labels(&[])));
        assert!(everything.applies_to_request(&labels(&[("team", "ml")])));
        let ml = BudgetScope {
            tag: Some(TagFilter {
                key: "team".into(),
                value: "ml".into(),
            }),
            ..BudgetScope::default()
        };
        assert!(ml.applies_to_request(&labels(&[("team", "ml"), ("env", "prod")])));
        assert!(!ml.applies_to_request(&labels(&[("team", "web")])));
        assert!(!ml.applies_to_request(&labels(&[("owner", "ml")])));
        assert!(!ml.applies_to_request(&labels(&[])));
    }

    #[test]
    fn placement_coverage_uses_provider_and_region_only() {
        let s = BudgetScope {
            provider: Some("AWS".into()),
            region: Some("us-east-1".into()),
            service: Some("Amazon Elastic Compute Cloud".into()),
            account: Some("123".into()),
            tag: None,
        };
        assert!(s.covers_placement("aws", "us-east-1"));
        assert!(s.covers_placement("aws", "US-EAST-1"));
        assert!(!s.covers_placement("aws", "us-west-2"));
        assert!(!s.covers_placement("gcp", "us-east-1"));
        let g = BudgetScope {
            provider: Some("google".into()),
            ..BudgetScope::default()
        };
        assert!(g.covers_placement("gcp", "europe-west4"));
        assert!(g.covers_placement("GCP", "us-central1"));
        let oci = BudgetScope {
            provider: Some("OCI".into()),
            ..BudgetScope::default()
        };
        assert!(oci.covers_placement("oci", "x") && !oci.covers_placement("aws", "x"));
        assert!(BudgetScope::default().covers_placement("azure", "westeurope"));
    }

    // --- periods -------------------------------------------------------------------------

    #[test]
    fn monthly_in_los_angeles_spans_the_dst_change() {
        let w = period_window(
            BudgetPeriod::Monthly,
            tz("America/Los_Angeles"),
            at("2026-11-15T12:00:00Z"),
        );
        assert_eq!(w.key, "2026-11");
        assert_eq!(w.start, at("2026-11-01T07:00:00Z"));
        assert_eq!(w.end, at("2026-12-01T08:00:00Z"));
        assert_eq!(
            (w.first_day, w.end_day),
            (day("2026-11-01"), day("2026-12-01"))
        );
        assert_eq!(w.days(), 30);
        assert!(w.contains(at("2026-11-01T07:00:00Z")));
        assert!(!w.contains(at("2026-11-01T06:59:59Z")));
        assert!(!w.contains(at("2026-12-01T08:00:00Z")));
        assert_eq!(w.local_day(at("2026-11-30T23:00:00Z")), day("2026-11-30"));
        // 05:00Z on Dec 1 is still Nov 30 in Los Angeles.
        let w = period_window(
            BudgetPeriod::Monthly,
            tz("America/Los_Angeles"),
            at("2026-12-01T05:00:00Z"),
        );
        assert_eq!(w.key, "2026-11");
    }

    #[test]
    fn period_keys_and_bounds() {
        let now = at("2026-11-27T10:00:00Z");
        let utc = chrono_tz::UTC;
        let q = period_window(BudgetPeriod::Quarterly, utc, now);
        assert_eq!(q.key, "2026-Q4");
        assert_eq!(
            (q.first_day, q.end_day),
            (day("2026-10-01"), day("2027-01-01"))
        );
        assert_eq!(q.days(), 92);
        let a = period_window(BudgetPeriod::Annual, utc, now);
        assert_eq!(a.key, "2026");
        assert_eq!(
            (a.start, a.end),
            (at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))
        );
        let dly = period_window(BudgetPeriod::Daily, utc, now);
        assert_eq!(dly.key, "2026-11-27");
        assert_eq!(dly.days(), 1);
        let q1 = period_window(BudgetPeriod::Quarterly, utc, at("2026-02-28T00:00:00Z"));
        assert_eq!(
            (q1.key.as_str(), q1.end_day),
            ("2026-Q1", day("2026-04-01"))
        );
        // Tokyo is ahead: 20:00Z on Dec 31 is already the next year there.
        let t = period_window(
            BudgetPeriod::Annual,
            tz("Asia/Tokyo"),
            at("2026-12-31T20:00:00Z"),
        );
        assert_eq!(t.key, "2027");
        assert_eq!(t.start, at("2026-12-31T15:00:00Z"));
    }

    #[test]
    fn a_midnight_in_a_dst_gap_starts_at_the_first_valid_instant() {
        // Chile springs forward at 24:00 on the first Saturday of September 2026: Sept 6
        // has no 00:00 and starts at 01:00 -03 = 04:00Z.
        let santiago = tz("America/Santiago");
        let start = local_midnight(santiago, day("2026-09-06"));
        assert_eq!(start, at("2026-09-06T04:00:00Z"));
        assert_eq!(
            start.with_timezone(&santiago).date_naive(),
            day("2026-09-06")
        );
        // The second before is still Sept 5 in Santiago.
        let before = start - chrono::Duration::seconds(1);
        assert_eq!(
            before.with_timezone(&santiago).date_naive(),
            day("2026-09-05")
        );
        let w = period_window(BudgetPeriod::Daily, santiago, at("2026-09-06T12:00:00Z"));
        assert_eq!((w.start, w.end), (start, at("2026-09-07T03:00:00Z")));
    }

    #[test]
    fn an_ambiguous_midnight_takes_the_earlier_instant() {
        // Cuba falls back at 01:00 -> 00:00 on the first Sunday of November: midnight of
        // Nov 1 2026 happens twice, first at -04.
        let havana = tz("America/Havana");
        let start = local_midnight(havana, day("2026-11-01"));
        assert_eq!(start, at("2026-11-01T04:00:00Z"));
        let before = start - chrono::Duration::seconds(1);
        assert_eq!(
            before.with_timezone(&havana).date_naive(),
            day("2026-10-31")
        );
    }

    // --- evaluation ----------------------------------------------------------------------

    #[test]
    fn evaluate_compares_actual_and_forecast_with_exact_limits() {
        let mut b = valid();
        b.amount = d("333.33");
        b.thresholds = vec![
            Threshold::percent(d("50"), ThresholdOn::Actual),
            Threshold::percent(d("100"), ThresholdOn::Forecast),
            Threshold::amount(d("300"), ThresholdOn::Actual),
            Threshold::percent(d("12.5"), ThresholdOn::Forecast),
        ];
        let w = period_window(
            BudgetPeriod::Monthly,
            chrono_tz::UTC,
            at("2026-11-10T00:00:00Z"),
        );
        let s = evaluate(&b, &w, d("166.665"), d("333.32"));
        assert_eq!(s.budget, "team a");
        assert_eq!(s.period.key, "2026-11");
        assert_eq!((s.amount, s.currency.as_str()), (d("333.33"), "USD"));
        let got: Vec<(&str, Decimal, bool)> = s
            .thresholds
            .iter()
            .map(|t| (t.key.as_str(), t.limit, t.crossed))
            .collect();
        assert_eq!(
            got,
            vec![
                ("actual:50%", d("166.665"), true), // equal counts as crossed
                ("forecast:100%", d("333.33"), false),
                ("actual:300", d("300"), false),
                ("forecast:12.5%", d("41.66625"), true),
            ]
        );
        assert_eq!(s.crossed().count(), 2);
        assert_eq!(s.thresholds[1].on, ThresholdOn::Forecast);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<BudgetStatus>(&json).unwrap(), s);
    }

    #[test]
    fn threshold_limits_never_panic() {
        let t = Threshold::percent(Decimal::MAX, ThresholdOn::Actual);
        assert_eq!(t.limit(Decimal::MAX), Decimal::MAX);
        assert_eq!(
            Threshold::percent(d("80"), ThresholdOn::Actual).limit(d("5000")),
            d("4000")
        );
        assert_eq!(
            Threshold::amount(d("4500.0"), ThresholdOn::Forecast).key(),
            "forecast:4500"
        );
    }

    // --- gate ----------------------------------------------------------------------------

    fn snap(name: &str, policy: GatePolicy, amount: &str, actual: &str) -> BudgetSnapshot {
        BudgetSnapshot {
            name: name.into(),
            scope: BudgetScope::default(),
            metric: BudgetMetric::Cost,
            policy,
            amount: d(amount),
            currency: "USD".into(),
            actual: d(actual),
            forecast: d(actual),
        }
    }

    fn pc<'a>(provider: &'a str, region: &'a str, total: &str) -> PlacementCost<'a> {
        PlacementCost {
            provider,
            region,
            total: d(total),
            currency: "USD",
        }
    }

    fn three() -> Vec<PlacementCost<'static>> {
        vec![
            pc("aws", "us-east-1", "30"),
            pc("gcp", "us-central1", "50"),
            pc("azure", "eastus", "80"),
        ]
    }

    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn no_budgets_or_none_policy_keeps_everything() {
        assert_eq!(apply_gate(&[], &none(), &three()), GateDecision::default());
        let s = [snap("b", GatePolicy::None, "10", "10")];
        let dcs = apply_gate(&s, &none(), &three());
        assert_eq!(dcs, GateDecision::default());
        assert!(dcs.kept(0) && dcs.kept(2) && !dcs.is_denied());
    }

    #[test]
    fn deny_refuses_when_the_cheapest_covered_placement_exceeds_remaining() {
        let s = [snap("team", GatePolicy::Deny, "1000", "980")];
        let dcs = apply_gate(&s, &none(), &three());
        assert_eq!(
            dcs.deny,
            Some(GateDeny {
                budget: "team".into(),
                policy: GatePolicy::Deny,
                amount: d("1000"),
                currency: "USD".into(),
                remaining: d("20"),
                actual: d("980"),
                forecast: d("980"),
                job_cost: d("30"),
            })
        );
        assert!(!dcs.kept(0));
        // Exactly the remaining amount is allowed.
        let s = [snap("team", GatePolicy::Deny, "1000", "970")];
        assert_eq!(apply_gate(&s, &none(), &three()), GateDecision::default());
        // Overspent: remaining negative, anything costing more is denied.
        let s = [snap("team", GatePolicy::Deny, "1000", "1200")];
        let dcs = apply_gate(&s, &none(), &three());
        assert_eq!(dcs.deny.unwrap().remaining, d("-200"));
    }

    #[test]
    fn a_provider_scoped_budget_only_looks_at_its_provider() {
        // An AWS budget with 10 left: AWS costs 30 → deny, even though GCP would fit.
        let mut s = snap("aws-only", GatePolicy::Deny, "100", "90");
        s.scope.provider = Some("aws".into());
        let dcs = apply_gate(std::slice::from_ref(&s), &none(), &three());
        assert_eq!(dcs.deny.as_ref().unwrap().job_cost, d("30"));
        // Downgrade instead drops AWS and keeps the rest.
        s.policy = GatePolicy::Downgrade;
        let dcs = apply_gate(std::slice::from_ref(&s), &none(), &three());
        assert_eq!(dcs.keep, Some(vec![false, true, true]));
        assert_eq!(dcs.warnings.len(), 1);
        assert_eq!(dcs.warnings[0].removed, 1);
        // A request with no AWS placement is not gated by it at all.
        s.policy = GatePolicy::Deny;
        let no_aws = [pc("gcp", "us-central1", "50")];
        assert_eq!(apply_gate(&[s], &none(), &no_aws), GateDecision::default());
    }

    #[test]
    fn region_scoped_downgrade_keeps_uncovered_and_affordable_placements() {
        let mut s = snap("east", GatePolicy::Downgrade, "100", "60");
        s.scope.region = Some("us-east-1".into());
        let ps = [
            pc("aws", "us-east-1", "45"),
            pc("aws", "us-east-1", "40"),
            pc("aws", "us-west-2", "500"),
        ];
        let dcs = apply_gate(&[s], &none(), &ps);
        assert_eq!(dcs.keep, Some(vec![false, true, true]));
        let w = &dcs.warnings[0];
        assert_eq!(
            (w.policy, w.removed, w.job_cost, w.remaining),
            (GatePolicy::Downgrade, 1, d("45"), d("40"))
        );
        assert!(dcs.deny.is_none());
    }

    #[test]
    fn downgrade_that_leaves_nothing_denies() {
        let s = [snap("tight", GatePolicy::Downgrade, "100", "90")];
        let dcs = apply_gate(&s, &none(), &three());
        assert!(dcs.keep.is_none() && dcs.warnings.is_empty());
        let deny = dcs.deny.unwrap();
        assert_eq!(
            (deny.policy, deny.job_cost, deny.remaining),
            (GatePolicy::Downgrade, d("30"), d("10"))
        );
    }

    #[test]
    fn two_downgrades_that_together_leave_nothing_deny_on_the_second() {
        let mut a = snap("a-aws", GatePolicy::Downgrade, "100", "90");
        a.scope.provider = Some("aws".into());
        let mut b = snap("b-rest", GatePolicy::Downgrade, "100", "90");
        b.scope.provider = Some("gcp".into());
        let ps = [pc("aws", "us-east-1", "30"), pc("gcp", "us-central1", "50")];
        // Input order does not matter: names decide.
        let dcs = apply_gate(&[b.clone(), a.clone()], &none(), &ps);
        let deny = dcs.deny.unwrap();
        assert_eq!((deny.budget.as_str(), deny.job_cost), ("b-rest", d("50")));
        assert_eq!(
            apply_gate(&[a, b], &none(), &ps).deny.unwrap().budget,
            "b-rest"
        );
    }

    #[test]
    fn warn_keeps_everything_and_explains_why() {
        // Job (cheapest 30) exceeds the remaining 20.
        let s = [snap("w", GatePolicy::Warn, "1000", "980")];
        let dcs = apply_gate(&s, &none(), &three());
        assert!(dcs.keep.is_none() && dcs.deny.is_none());
        assert_eq!(
            dcs.warnings,
            vec![GateWarning {
                budget: "w".into(),
                policy: GatePolicy::Warn,
                amount: d("1000"),
                currency: "USD".into(),
                remaining: d("20"),
                actual: d("980"),
                forecast: d("980"),
                job_cost: d("30"),
                removed: 0,
            }]
        );
        // Fits, but the forecast is already over the amount.
        let mut f = snap("w", GatePolicy::Warn, "1000", "100");
        f.forecast = d("1000");
        assert_eq!(
            apply_gate(std::slice::from_ref(&f), &none(), &three())
                .warnings
                .len(),
            1
        );
        // Fits and the forecast is below: no warning.
        f.forecast = d("999.99");
        assert_eq!(apply_gate(&[f], &none(), &three()), GateDecision::default());
    }

    #[test]
    fn warn_looks_at_what_downgrade_left() {
        let mut down = snap("a-down", GatePolicy::Downgrade, "100", "60");
        down.scope.provider = Some("aws".into());
        let ps = [pc("aws", "us-east-1", "45"), pc("gcp", "us-central1", "70")];
        let warn = snap("b-warn", GatePolicy::Warn, "1000", "940");
        let dcs = apply_gate(&[warn, down], &none(), &ps);
        assert_eq!(dcs.keep, Some(vec![false, true]));
        let names: Vec<(&str, Decimal)> = dcs
            .warnings
            .iter()
            .map(|w| (w.budget.as_str(), w.job_cost))
            .collect();
        // AWS (45) did not fit the 40 left; only GCP (70) is left, over the warn budget's
        // 60 remaining.
        assert_eq!(names, vec![("a-down", d("45")), ("b-warn", d("70"))]);
    }

    #[test]
    fn deny_wins_over_downgrade_and_warn() {
        let s = [
            snap("a-warn", GatePolicy::Warn, "10", "10"),
            snap("b-down", GatePolicy::Downgrade, "100", "60"),
            snap("c-deny", GatePolicy::Deny, "100", "90"),
        ];
        let dcs = apply_gate(&s, &none(), &three());
        assert_eq!(dcs.deny.as_ref().unwrap().budget, "c-deny");
        assert!(dcs.keep.is_none() && dcs.warnings.is_empty());
        // Two denying budgets: the first by name is reported.
        let s = [
            snap("z", GatePolicy::Deny, "10", "10"),
            snap("m", GatePolicy::Deny, "10", "10"),
        ];
        assert_eq!(apply_gate(&s, &none(), &three()).deny.unwrap().budget, "m");
    }

    #[test]
    fn tag_scoped_budgets_only_gate_matching_requests() {
        let mut s = snap("ml", GatePolicy::Deny, "100", "100");
        s.scope.tag = Some(TagFilter {
            key: "team".into(),
            value: "ml".into(),
        });
        let s = [s];
        assert!(apply_gate(&s, &labels(&[("team", "ml")]), &three()).is_denied());
        assert!(!apply_gate(&s, &labels(&[("team", "web")]), &three()).is_denied());
        assert!(!apply_gate(&s, &none(), &three()).is_denied());
    }

    #[test]
    fn other_currencies_and_egress_budgets_do_not_gate() {
        // A EUR budget cannot be compared with USD prices without FX: skipped.
        let mut eur = snap("eur", GatePolicy::Deny, "10", "10");
        eur.currency = "EUR".into();
        assert_eq!(
            apply_gate(std::slice::from_ref(&eur), &none(), &three()),
            GateDecision::default()
        );
        // ... but gates EUR-priced placements.
        let eur_ps = [PlacementCost {
            currency: "EUR",
            ..pc("aws", "eu-west-1", "5")
        }];
        assert!(apply_gate(&[eur], &none(), &eur_ps).is_denied());
        let mut gb = snap("gb", GatePolicy::Deny, "10", "10");
        gb.metric = BudgetMetric::EgressGb;
        assert_eq!(
            apply_gate(&[gb], &none(), &three()),
            GateDecision::default()
        );
    }

    #[test]
    fn snapshots_come_from_budgets() {
        let mut b = full();
        b.gate = GatePolicy::Warn;
        let s = BudgetSnapshot::new(&b, d("4990"), d("5100"));
        assert_eq!(
            (s.policy, s.remaining(), s.currency.as_str()),
            (GatePolicy::Warn, d("10"), "USD")
        );
        assert_eq!(s.scope, b.scope);
        let dcs = apply_gate(
            &[s],
            &labels(&[("team", "ml")]),
            &[pc("aws", "us-east-1", "1")],
        );
        assert_eq!(dcs.warnings.len(), 1, "forecast over the amount");
    }
}
