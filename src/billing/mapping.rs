//! The one table-driven mapping from source columns to FOCUS fields.
//!
//! Each format (`focus.rs`, `cur.rs`, `gcp.rs`, `azure.rs`) declares a [`Table`]: for every
//! target [`Field`] the source column names to try, in order, and the [`Kind`] of value
//! (money, quantity, timestamp, text, enum, tags, ...). [`Plan::new`] resolves a table
//! against a file's header once; [`Plan::extract`] turns one row into typed [`Values`],
//! quarantining the row (with a reason naming the column) when a value cannot be read.
//! The format module then derives the few fields that need provider logic (charge
//! category from a line item type, amortized cost, billing period from an invoice month).
//!
//! Value parsers here are lenient in documented ways; every tolerated deviation is
//! counted in [`Deviations`] by kind.
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::{BillingError, BillingFormat, DimsRef};

// ---------------------------------------------------------------------------------------
// Deviations
// ---------------------------------------------------------------------------------------

macro_rules! deviations {
    ($($name:ident => $text:literal,)*) => {
        /// A tolerated deviation from the format's spec, counted by kind.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Dev { $($name,)* }
        impl Dev {
            pub const ALL: &'static [Dev] = &[$(Dev::$name,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(Dev::$name => $text,)* }
            }
        }
    };
}

deviations! {
    Bom => "bom",
    BlankLine => "blank_line",
    RowFieldCountMismatch => "row_field_count_mismatch",
    EmptyStringNull => "empty_string_null",
    NullTokenUpper => "null_token_NULL",
    WrongCaseColumn => "wrong_case_column",
    WrongCaseValue => "wrong_case_value",
    UnknownEnumValue => "unknown_enum_value",
    ScientificNotation => "scientific_notation",
    MoneyFormattedString => "money_formatted_string",
    WhitespaceTrimmed => "whitespace_trimmed",
    DecimalRounded => "decimal_rounded_to_28_digits",
    FloatRounded => "float_rounded_to_28_decimals",
    TimestampSpaceNoZ => "timestamp_space_no_z",
    TimestampSpaceWithOffset => "timestamp_space_with_offset",
    TimestampNoZone => "timestamp_no_zone",
    TimestampNoSeconds => "timestamp_no_seconds",
    TimestampHourOverflow => "timestamp_hour_overflow",
    TimestampAmPm => "timestamp_am_pm",
    DateOnly => "date_only",
    DateMmDdYyyy => "date_mm_dd_yyyy",
    DateMDYyyy => "date_m_d_yyyy",
    DateMDYy => "date_m_d_yy",
    TagsMissingBraces => "tags_missing_braces",
    TagsPythonRepr => "tags_python_repr",
    TagsUnparseable => "tags_unparseable",
    CurrencyMissingAssumedUsd => "currency_missing_assumed_usd",
    EffectiveCostMissingAssumedBilled => "effective_cost_missing_assumed_billed",
    EffectiveCostNullAssumedBilled => "effective_cost_null_assumed_billed",
    ProviderNameMissing => "provider_name_missing",
    BillingPeriodDerived => "billing_period_derived_from_usage_date",
    ChargeCategoryDefaulted => "charge_category_defaulted",
    JsonUnknownKey => "jsonl_key_not_in_header",
}

/// Deviation counters (a fixed array: counting is on the hot path).
#[derive(Clone, Debug)]
pub struct Deviations {
    counts: [u64; Dev::ALL.len()],
}

impl Default for Deviations {
    fn default() -> Self {
        Deviations {
            counts: [0; Dev::ALL.len()],
        }
    }
}

impl Deviations {
    #[inline]
    pub fn add(&mut self, d: Dev) {
        self.counts[d as usize] += 1;
    }
    pub fn add_n(&mut self, d: Dev, n: u64) {
        self.counts[d as usize] += n;
    }
    pub fn get(&self, d: Dev) -> u64 {
        self.counts[d as usize]
    }
    pub fn into_map(self, into: &mut BTreeMap<String, u64>) {
        for d in Dev::ALL {
            let n = self.counts[*d as usize];
            if n > 0 {
                *into.entry(d.as_str().to_string()).or_default() += n;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rows and cells
// ---------------------------------------------------------------------------------------

/// One cell as a reader yields it: text for CSV/JSON, typed values for Parquet.
#[derive(Clone, Debug)]
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    Float(f64),
    Int(i64),
    Dec(Decimal),
    Bool(bool),
    Time(DateTime<Utc>),
    /// Text the reader had to build (a Parquet decimal beyond 28 digits).
    Owned(String),
    /// A Parquet map column (CUR 2.0 `resource_tags`).
    Pairs(Vec<(&'a str, Option<&'a str>)>),
    /// A value the reader could not read (invalid UTF-8, unsupported Parquet type): the
    /// row is quarantined with this reason if the column is used.
    Bad(&'static str),
}

/// One source row; `col` indexes the file's header.
pub trait Row {
    /// 1-based line (CSV, JSON lines) or row (Parquet) number.
    fn line(&self) -> u64;
    fn cell(&self, col: usize) -> Cell<'_>;
    /// The row as read, for quarantine records.
    fn raw(&self) -> String;
}

/// Cap on the raw text kept with a quarantined row.
pub const RAW_LIMIT: usize = 4096;

pub fn truncate_raw(mut s: String) -> String {
    if s.len() > RAW_LIMIT {
        let mut cut = RAW_LIMIT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The column a quarantine reason names: reasons start with the column at fault followed
/// by `": "` (`Plan::extract` uses the file's own header name; the format builders use the
/// format's canonical name, matched here case-insensitively). The longest match wins, so
/// `cost` does not take a reason about `cost_at_list`. `None` when no header column leads.
pub fn fault_column(header: &[String], reason: &str) -> Option<String> {
    header
        .iter()
        .filter(|h| {
            !h.is_empty()
                && reason.len() > h.len()
                && reason.is_char_boundary(h.len())
                && reason[..h.len()].eq_ignore_ascii_case(h)
                && reason[h.len()..].starts_with(": ")
        })
        .max_by_key(|h| h.len())
        .cloned()
}

// ---------------------------------------------------------------------------------------
// Fields, kinds, tables
// ---------------------------------------------------------------------------------------

macro_rules! fields {
    ($($name:ident,)*) => {
        /// A target FOCUS field, or a native helper column a format derives fields from.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Field { $($name,)* }
        impl Field {
            pub const COUNT: usize = [$(Field::$name,)*].len();
        }
    };
}

fields! {
    BilledCost,
    EffectiveCost,
    ListCost,
    BillingCurrency,
    BillingPeriodStart,
    BillingPeriodEnd,
    ChargePeriodStart,
    ChargePeriodEnd,
    ChargeCategory,
    ProviderName,
    ServiceName,
    ServiceCategory,
    RegionId,
    AvailabilityZone,
    ResourceId,
    SkuId,
    BillingAccountId,
    SubAccountId,
    PricingCategory,
    ConsumedQuantity,
    ConsumedUnit,
    Tags,
    // AWS CUR helpers
    LineItemType,
    UsageType,
    ProductCode,
    ReservationEffectiveCost,
    SavingsPlanEffectiveCost,
    ReservationUnusedAmortizedFee,
    ReservationUnusedRecurringFee,
    SavingsPlanTotalCommitment,
    SavingsPlanUsedCommitment,
    ReservationArn,
    // GCP helpers
    Credits,
    InvoiceMonth,
    CostType,
    SkuDescription,
    ProjectLabels,
    // Azure helpers
    UsageDate,
    ChargeType,
    PricingModel,
}

/// How a source value is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Exact decimal; tolerates scientific notation and `$1,234.50 ` money strings.
    Money,
    /// Exact decimal quantity (same parser as money).
    Number,
    /// Timestamp or date (many shapes; see [`parse_time`]); always UTC.
    Time,
    Text,
    /// ISO currency code (upper-cased if needed).
    Currency,
    /// One of the given values, case fixed (wrong case counted); unknown values kept.
    Enum(&'static [&'static str]),
    /// Key/value tags: JSON object, fragment without braces, Python repr, key/value
    /// list, or a Parquet map.
    Tags,
    /// GCP credits: a JSON or Python-repr list of dicts with `amount` (and `type`).
    Credits,
    /// `YYYYMM` (GCP invoice month).
    YearMonth,
}

/// One target field and where to find it.
#[derive(Debug)]
pub struct Column {
    pub field: Field,
    /// Source column names, tried in order (exact, then ASCII case-insensitive).
    pub names: &'static [&'static str],
    pub kind: Kind,
    /// The column must exist (else [`BillingError::MissingColumn`]) and the value must not
    /// be null (else the row is quarantined).
    pub required: bool,
}

pub const fn col(field: Field, names: &'static [&'static str], kind: Kind) -> Column {
    Column {
        field,
        names,
        kind,
        required: false,
    }
}

pub const fn req(field: Field, names: &'static [&'static str], kind: Kind) -> Column {
    Column {
        field,
        names,
        kind,
        required: true,
    }
}

/// Flat tag columns (`resourceTags/user:team`, `resource_tags_user_team`).
#[derive(Debug)]
pub struct TagPrefix {
    pub prefix: &'static str,
    /// Tag key from the part after the prefix.
    pub key: fn(&str) -> String,
}

/// Which text tokens are null besides the empty string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NullStyle {
    /// FOCUS: `""`, `NULL`, `null` are null; `""` and `NULL` are counted as deviations.
    Focus,
    /// Native exports: `""` is null (and `NULL`/`null` in numeric and time columns).
    Native,
}

#[derive(Debug)]
pub struct Table {
    pub format: BillingFormat,
    pub columns: &'static [Column],
    pub tag_prefixes: &'static [TagPrefix],
    pub nulls: NullStyle,
    /// Count case-insensitive column matches as deviations (FOCUS names are exact).
    pub strict_names: bool,
}

// ---------------------------------------------------------------------------------------
// Header normalisation and plan
// ---------------------------------------------------------------------------------------

/// Normalises a header cell: trims, strips a BOM, and takes the English name from a
/// localised Azure header such as `Abonnement-GUID (SubscriptionGuid)`.
pub fn normalize_header(name: &str) -> String {
    let s = name.trim_start_matches('\u{feff}').trim();
    if let Some(open) = s.rfind(" (")
        && s.ends_with(')')
    {
        let inner = &s[open + 2..s.len() - 1];
        if !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return inner.to_string();
        }
    }
    s.to_string()
}

/// A header lookup: exact, then ASCII case-insensitive.
pub struct HeaderIndex {
    exact: HashMap<String, usize>,
    lower: HashMap<String, usize>,
}

impl HeaderIndex {
    pub fn new(header: &[String]) -> Self {
        let mut exact = HashMap::with_capacity(header.len());
        let mut lower = HashMap::with_capacity(header.len());
        for (i, h) in header.iter().enumerate() {
            exact.entry(h.clone()).or_insert(i);
            lower.entry(h.to_ascii_lowercase()).or_insert(i);
        }
        HeaderIndex { exact, lower }
    }
    /// `(index, matched only case-insensitively)`.
    pub fn find(&self, name: &str) -> Option<(usize, bool)> {
        if let Some(&i) = self.exact.get(name) {
            return Some((i, false));
        }
        self.lower
            .get(&name.to_ascii_lowercase())
            .map(|&i| (i, true))
    }
    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
}

/// A table resolved against one file's header.
pub struct Plan {
    pub table: &'static Table,
    pub header: Vec<String>,
    cols: Vec<(usize, &'static Column)>,
    present: [bool; Field::COUNT],
    tag_cols: Vec<(usize, String)>,
}

impl Plan {
    /// `header` must already be normalised ([`normalize_header`]).
    pub fn new(
        table: &'static Table,
        header: Vec<String>,
        file: &str,
        dev: &mut Deviations,
    ) -> Result<Plan, BillingError> {
        let index = HeaderIndex::new(&header);
        let mut cols = Vec::with_capacity(table.columns.len());
        let mut present = [false; Field::COUNT];
        let mut used = vec![false; header.len()];
        for c in table.columns {
            let found = c.names.iter().find_map(|n| index.find(n));
            match found {
                Some((i, folded)) => {
                    if folded && table.strict_names {
                        dev.add(Dev::WrongCaseColumn);
                    }
                    cols.push((i, c));
                    present[c.field as usize] = true;
                    used[i] = true;
                }
                None if c.required => {
                    return Err(BillingError::MissingColumn {
                        file: file.to_string(),
                        column: c.names.join(" or "),
                    });
                }
                None => {}
            }
        }
        let mut tag_cols = Vec::new();
        for (i, h) in header.iter().enumerate() {
            if used[i] {
                continue;
            }
            for p in table.tag_prefixes {
                if let Some(rest) = h.strip_prefix(p.prefix)
                    && !rest.is_empty()
                {
                    tag_cols.push((i, (p.key)(rest)));
                    break;
                }
            }
        }
        Ok(Plan {
            table,
            header,
            cols,
            present,
            tag_cols,
        })
    }

    /// Whether the file has a column for `f`.
    pub fn has(&self, f: Field) -> bool {
        self.present[f as usize]
    }

    /// Header indices this plan reads (for Parquet projection), ascending.
    pub fn needed_columns(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .cols
            .iter()
            .map(|(i, _)| *i)
            .chain(self.tag_cols.iter().map(|(i, _)| *i))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Reads one row. `Err` is the quarantine reason (it names the column).
    pub fn extract<'r>(
        &self,
        row: &'r dyn Row,
        dev: &mut Deviations,
    ) -> Result<Values<'r>, String> {
        let mut v = Values::new(self.present);
        let nulls = self.table.nulls;
        for &(i, c) in &self.cols {
            let cell = row.cell(i);
            let val = convert(cell, c.kind, nulls, dev)
                .map_err(|e| format!("{}: {e}", self.header[i]))?;
            if c.required && matches!(val, Val::Null) {
                return Err(format!("{}: missing required value", self.header[i]));
            }
            v.vals[c.field as usize] = val;
        }
        if !self.tag_cols.is_empty() {
            let mut extra = BTreeMap::new();
            for (i, key) in &self.tag_cols {
                match row.cell(*i) {
                    Cell::Text(s) if !s.is_empty() => {
                        extra.insert(key.clone(), s.to_string());
                    }
                    Cell::Null | Cell::Text(_) | Cell::Bad(_) | Cell::Pairs(_) => {}
                    other => {
                        if let Some(s) = cell_to_string(&other) {
                            extra.insert(key.clone(), s);
                        }
                    }
                }
            }
            if !extra.is_empty() {
                let slot = &mut v.vals[Field::Tags as usize];
                match slot {
                    Val::Tags(t) => {
                        for (k, val) in extra {
                            t.entry(k).or_insert(val);
                        }
                    }
                    _ => *slot = Val::Tags(extra),
                }
            }
        }
        Ok(v)
    }
}

fn cell_to_string(c: &Cell<'_>) -> Option<String> {
    match c {
        Cell::Null | Cell::Bad(_) | Cell::Pairs(_) => None,
        Cell::Text(s) => Some((*s).to_string()),
        Cell::Owned(s) => Some(s.clone()),
        Cell::Float(x) => Some(format!("{x}")),
        Cell::Int(x) => Some(x.to_string()),
        Cell::Dec(d) => Some(d.to_string()),
        Cell::Bool(b) => Some(b.to_string()),
        Cell::Time(t) => Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    }
}

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

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
    vals: [Val<'a>; Field::COUNT],
    present: [bool; Field::COUNT],
}

impl<'a> Values<'a> {
    fn new(present: [bool; Field::COUNT]) -> Self {
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
        Kind::Tags => Ok(Val::Tags(parse_tags(text, dev))),
        Kind::Credits => parse_credits(text, dev),
        Kind::YearMonth => year_month(text),
    }
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(80);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[inline]
fn is_null_text(s: &str, kind: Kind, nulls: NullStyle, dev: &mut Deviations) -> bool {
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

fn year_month(text: &str) -> Result<Val<'static>, String> {
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

// ---------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------

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
fn parse_money_string(t: &str) -> Option<Decimal> {
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
fn num(b: &[u8]) -> Option<u32> {
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
struct TagText(String);

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
struct TagMap(BTreeMap<String, String>);

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

fn json_object_tags(t: &str) -> Option<BTreeMap<String, String>> {
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

fn json_value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Parses tags text: a JSON object, an object fragment missing its braces (Azure), a
/// Python-repr dict, or a list of `{key, value}` dicts (GCP labels, JSON or Python repr).
/// Unparseable text yields no tags and counts `tags_unparseable`.
pub fn parse_tags(text: &str, dev: &mut Deviations) -> BTreeMap<String, String> {
    let t = text.trim();
    if t.is_empty() || t == "{}" || t == "[]" {
        return BTreeMap::new();
    }
    match t.as_bytes()[0] {
        b'{' => {
            if let Some(m) = json_object_tags(t) {
                return m;
            }
        }
        b'"' => {
            if let Some(m) = json_object_tags(&format!("{{{t}}}")) {
                dev.add(Dev::TagsMissingBraces);
                return m;
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
            return out;
        }
    }
    dev.add(Dev::TagsUnparseable);
    BTreeMap::new()
}

/// GCP credits: sum of `amount`, count, and whether any is a committed-use discount.
fn parse_credits(text: &str, dev: &mut Deviations) -> Result<Val<'static>, String> {
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

/// A tiny reader for JSON and Python literal syntax (`'single quotes'`, `None`, `True`),
/// keeping numbers as text so they stay exact.
pub mod lit {
    #[derive(Clone, Debug, PartialEq)]
    pub enum Lit {
        Null,
        Bool(bool),
        Num(String),
        Str(String),
        List(Vec<Lit>),
        Dict(Vec<(Lit, Lit)>),
    }

    impl Lit {
        pub fn get(&self, key: &str) -> Option<&Lit> {
            match self {
                Lit::Dict(pairs) => pairs
                    .iter()
                    .find(|(k, _)| matches!(k, Lit::Str(s) if s == key))
                    .map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn as_text(&self) -> Option<String> {
            match self {
                Lit::Null => None,
                Lit::Bool(b) => Some(b.to_string()),
                Lit::Num(n) => Some(n.clone()),
                Lit::Str(s) => Some(s.clone()),
                Lit::List(_) | Lit::Dict(_) => None,
            }
        }
    }

    pub fn parse(s: &str) -> Option<Lit> {
        let mut p = P {
            b: s.as_bytes(),
            s,
            i: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        (p.i == p.b.len()).then_some(v)
    }

    struct P<'a> {
        b: &'a [u8],
        s: &'a str,
        i: usize,
        depth: u32,
    }

    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }
        fn value(&mut self) -> Option<Lit> {
            self.ws();
            self.depth += 1;
            if self.depth > 64 {
                return None;
            }
            let c = *self.b.get(self.i)?;
            let v = match c {
                b'{' => self.seq(b'}', true),
                b'[' => self.seq(b']', false),
                b'(' => self.seq(b')', false),
                b'\'' | b'"' => self.string().map(Lit::Str),
                b'-' | b'+' | b'.' | b'0'..=b'9' => {
                    let start = self.i;
                    while self.i < self.b.len()
                        && matches!(
                            self.b[self.i],
                            b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                        )
                    {
                        self.i += 1;
                    }
                    Some(Lit::Num(self.s[start..self.i].to_string()))
                }
                _ => {
                    let start = self.i;
                    while self.i < self.b.len() && self.b[self.i].is_ascii_alphabetic() {
                        self.i += 1;
                    }
                    match &self.s[start..self.i] {
                        "None" | "null" => Some(Lit::Null),
                        "True" | "true" => Some(Lit::Bool(true)),
                        "False" | "false" => Some(Lit::Bool(false)),
                        _ => None,
                    }
                }
            };
            self.depth -= 1;
            v
        }
        fn seq(&mut self, close: u8, dict: bool) -> Option<Lit> {
            self.i += 1;
            let mut items = Vec::new();
            let mut pairs = Vec::new();
            loop {
                self.ws();
                if *self.b.get(self.i)? == close {
                    self.i += 1;
                    break;
                }
                let v = self.value()?;
                if dict {
                    self.ws();
                    if *self.b.get(self.i)? != b':' {
                        return None;
                    }
                    self.i += 1;
                    let val = self.value()?;
                    pairs.push((v, val));
                } else {
                    items.push(v);
                }
                self.ws();
                match *self.b.get(self.i)? {
                    b',' => self.i += 1,
                    c if c == close => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
            Some(if dict {
                Lit::Dict(pairs)
            } else {
                Lit::List(items)
            })
        }
        fn string(&mut self) -> Option<String> {
            let q = self.b[self.i];
            self.i += 1;
            let mut out = String::new();
            loop {
                let start = self.i;
                while self.i < self.b.len() && self.b[self.i] != q && self.b[self.i] != b'\\' {
                    self.i += 1;
                }
                out.push_str(self.s.get(start..self.i)?);
                let c = *self.b.get(self.i)?;
                self.i += 1;
                if c == q {
                    return Some(out);
                }
                // Backslash escape.
                let e = *self.b.get(self.i)?;
                self.i += 1;
                match e {
                    b'n' => out.push('\n'),
                    b't' => out.push('\t'),
                    b'r' => out.push('\r'),
                    b'0' => out.push('\0'),
                    b'x' => {
                        let h = self.s.get(self.i..self.i + 2)?;
                        out.push(char::from_u32(u32::from_str_radix(h, 16).ok()?)?);
                        self.i += 2;
                    }
                    b'u' => {
                        let h = self.s.get(self.i..self.i + 4)?;
                        let mut cp = u32::from_str_radix(h, 16).ok()?;
                        self.i += 4;
                        if (0xD800..0xDC00).contains(&cp)
                            && self.s.get(self.i..self.i + 2) == Some("\\u")
                        {
                            let lo = u32::from_str_radix(self.s.get(self.i + 2..self.i + 6)?, 16)
                                .ok()?;
                            if (0xDC00..0xE000).contains(&lo) {
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                self.i += 6;
                            }
                        }
                        out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                    }
                    other => {
                        // `\\`, `\'`, `\"`, `\/` and anything else: the character itself.
                        let ch = self.s.get(self.i - 1..)?.chars().next()?;
                        if other.is_ascii() {
                            out.push(other as char);
                        } else {
                            out.push(ch);
                            self.i += ch.len_utf8() - 1;
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared enum values
// ---------------------------------------------------------------------------------------

pub const CHARGE_CATEGORIES: &[&str] = &["Usage", "Purchase", "Tax", "Credit", "Adjustment"];
pub const PRICING_CATEGORIES: &[&str] = &["Standard", "Dynamic", "Committed", "Other"];

/// First day of the month of `t`, and of the next month (UTC).
pub fn calendar_month(t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    use chrono::Datelike;
    let (y, m) = (t.year(), t.month());
    let start = NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    match (start, end) {
        (Some(s), Some(e)) => (s, e),
        _ => (t, t),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fault_column_is_the_longest_header_name_leading_the_reason() {
        let header: Vec<String> = ["cost", "cost_at_list", "BilledCost", "tags"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let col = |r: &str| super::fault_column(&header, r);
        assert_eq!(col("cost: not a number: \"x\""), Some("cost".into()));
        assert_eq!(
            col("cost_at_list: not a number: \"x\""),
            Some("cost_at_list".into())
        );
        // Builders name the canonical column; the file's spelling is reported.
        assert_eq!(
            col("billedcost: missing required value"),
            Some("BilledCost".into())
        );
        assert_eq!(col("invalid JSON: EOF while parsing"), None);
        assert_eq!(col("cost + credits overflows"), None);
        assert_eq!(col("cost"), None);
    }

    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn decimals_exact_and_lenient() {
        let mut dev = Deviations::default();
        assert_eq!(
            parse_decimal("0.0000000191107392311096200000", &mut dev),
            Some(d("0.00000001911073923110962"))
        );
        assert_eq!(
            parse_decimal("5.64902E-05", &mut dev),
            Some(d("0.0000564902"))
        );
        assert_eq!(parse_decimal("5e-06", &mut dev), Some(d("0.000005")));
        assert_eq!(dev.get(Dev::ScientificNotation), 2);
        assert_eq!(
            parse_decimal("\"$10,100.00 \"".trim_matches('"'), &mut dev),
            Some(d("10100.00"))
        );
        assert_eq!(parse_decimal("$20.00 ", &mut dev), Some(d("20")));
        assert_eq!(parse_decimal("-$1,000", &mut dev), Some(d("-1000")));
        assert_eq!(dev.get(Dev::MoneyFormattedString), 3);
        assert_eq!(parse_decimal("1,00", &mut dev), None);
        assert_eq!(parse_decimal("abc", &mut dev), None);
        assert_eq!(parse_decimal("1.2.3", &mut dev), None);
        assert_eq!(parse_decimal("NaN", &mut dev), None);
        assert_eq!(parse_decimal(" 1.5", &mut dev), Some(d("1.5")));
        assert_eq!(parse_decimal("-0E-11", &mut dev), Some(Decimal::ZERO));
    }

    #[test]
    fn floats_go_through_shortest_text() {
        let mut dev = Deviations::default();
        assert_eq!(float_to_decimal(0.1, &mut dev).unwrap(), d("0.1"));
        assert_eq!(
            float_to_decimal(4064.4831315379, &mut dev).unwrap(),
            d("4064.4831315379")
        );
        assert_eq!(float_to_decimal(-5e-06, &mut dev).unwrap(), d("-0.000005"));
        assert_eq!(
            float_to_decimal(1.2e20, &mut dev).unwrap(),
            d("120000000000000000000")
        );
        assert_eq!(
            float_to_decimal(2.3198314011096954e-05, &mut dev).unwrap(),
            d("0.000023198314011096954")
        );
        assert_eq!(dev.get(Dev::FloatRounded), 0);
        assert!(float_to_decimal(f64::NAN, &mut dev).is_err());
    }

    fn ts(s: &str) -> String {
        parse_time(s)
            .map(|(t, _)| t.to_rfc3339())
            .unwrap_or_else(|| "ERR".into())
    }

    #[test]
    fn timestamps_in_many_shapes() {
        assert_eq!(ts("2023-01-01T00:00:00Z"), "2023-01-01T00:00:00+00:00");
        assert_eq!(ts("2024-09-01 00:00:00"), "2024-09-01T00:00:00+00:00");
        assert_eq!(ts("2023-11-01T00:00:00.000Z"), "2023-11-01T00:00:00+00:00");
        assert_eq!(ts("2020-11-09 23:00:00+00:00"), "2020-11-09T23:00:00+00:00");
        assert_eq!(ts("2020-11-09 23:00:00 UTC"), "2020-11-09T23:00:00+00:00");
        assert_eq!(ts("2020-11-09T16:00:00-07:00"), "2020-11-09T23:00:00+00:00");
        assert_eq!(ts("2023-11-13T10:00Z"), "2023-11-13T10:00:00+00:00");
        // The FOCUS 1.2 spec example writes 30 h after midnight as T30.
        assert_eq!(ts("2023-02-01T30:00:00Z"), "2023-02-02T06:00:00+00:00");
        assert_eq!(ts("2021-02-02"), "2021-02-02T00:00:00+00:00");
        assert_eq!(ts("09/21/2023"), "2023-09-21T00:00:00+00:00");
        assert_eq!(ts("9/2/2023"), "2023-09-02T00:00:00+00:00");
        assert_eq!(ts("4/1/25"), "2025-04-01T00:00:00+00:00");
        assert_eq!(ts("9/2/2023 1:30:00 PM"), "2023-09-02T13:30:00+00:00");
        assert_eq!(ts("2023-02-30"), "ERR");
        assert_eq!(ts("13/01/2023"), "ERR");
        assert_eq!(ts("yesterday"), "ERR");
        assert_eq!(ts("2023-01-01X00:00:00"), "ERR");
        assert_eq!(ts("2023-01-01T25:00:00Z"), "2023-01-02T01:00:00+00:00");
        assert_eq!(ts("2023-01-01T48:00:00Z"), "ERR");
        let mut dev = Deviations::default();
        parse_time("2024-09-01 00:00:00").unwrap().1.count(&mut dev);
        parse_time("09/21/2023").unwrap().1.count(&mut dev);
        parse_time("2023-01-01T00:00:00Z")
            .unwrap()
            .1
            .count(&mut dev);
        assert_eq!(dev.get(Dev::TimestampSpaceNoZ), 1);
        assert_eq!(dev.get(Dev::DateMmDdYyyy), 1);
    }

    #[test]
    fn tags_in_every_shape() {
        let mut dev = Deviations::default();
        let t = parse_tags(r#"{"a": "1", " org": "x", "n": 2, "z": null}"#, &mut dev);
        assert_eq!(t.get(" org").map(String::as_str), Some("x"));
        assert_eq!(t.get("n").map(String::as_str), Some("2"));
        assert_eq!(t.get("z").map(String::as_str), Some(""));
        let t = parse_tags(r#""tagA": "valueA","tagB": "valueB""#, &mut dev);
        assert_eq!(t.len(), 2);
        assert_eq!(dev.get(Dev::TagsMissingBraces), 1);
        let t = parse_tags(
            "[{'key': 'goog-resource-type', 'value': 'bigquery_dataset'}]",
            &mut dev,
        );
        assert_eq!(
            t.get("goog-resource-type").map(String::as_str),
            Some("bigquery_dataset")
        );
        let t = parse_tags(r#"[{"key": "env", "value": "prod"}]"#, &mut dev);
        assert_eq!(t.get("env").map(String::as_str), Some("prod"));
        let t = parse_tags("{'team': 'a\\'b'}", &mut dev);
        assert_eq!(t.get("team").map(String::as_str), Some("a'b"));
        assert_eq!(dev.get(Dev::TagsPythonRepr), 1);
        assert!(parse_tags("team=a;env=b", &mut dev).is_empty());
        assert_eq!(dev.get(Dev::TagsUnparseable), 1);
    }

    #[test]
    fn credits_from_python_repr() {
        let mut dev = Deviations::default();
        let v = parse_credits(
            "[{'name': 'FreeTrial:Credit', 'amount': -5e-06, 'full_name': None, 'type': 'PROMOTION'}, {'amount': -1.5, 'type': 'COMMITTED_USAGE_DISCOUNT'}]",
            &mut dev,
        )
        .unwrap();
        match v {
            Val::Credits {
                sum,
                count,
                committed,
            } => {
                assert_eq!(sum, d("-1.500005"));
                assert_eq!(count, 2);
                assert!(committed);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_credits("[{'name': 'x'}]", &mut dev).is_err());
    }

    #[test]
    fn localized_headers() {
        assert_eq!(
            normalize_header("Abonnement-GUID (SubscriptionGuid)"),
            "SubscriptionGuid"
        );
        assert_eq!(
            normalize_header("\u{feff}SubscriptionGuid"),
            "SubscriptionGuid"
        );
        assert_eq!(
            normalize_header("Maßeinheit (UnitOfMeasure)"),
            "UnitOfMeasure"
        );
        assert_eq!(
            normalize_header("costCategory/Charge type"),
            "costCategory/Charge type"
        );
    }
}
