//! The table model: each format's `Table` of target `Field`s, the source `Column` names to
//! try for each, and the `Kind` of value they hold.

use crate::billing::BillingFormat;

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
    ContractedCost,
    ChargeClass,
    CommitmentDiscountCategory,
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
