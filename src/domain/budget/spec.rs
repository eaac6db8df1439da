//! A budget's definition: the serde shape shared by `[[budgets]]` and the stored spec
//! (amounts as decimal text), its scope, thresholds, channels and gate policy, and
//! `Budget::validate`, which names the offending field.
use std::collections::BTreeMap;

use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::forecast::CostKind;
use crate::domain::limits::{self, Limit};
use crate::domain::offer::same_provider;
use crate::domain::quote::quote;
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

/// Whether `addr` is an address bursar sends to (budget channels, `[report] email_to`).
pub fn check_email(addr: &str) -> Result<(), String> {
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
