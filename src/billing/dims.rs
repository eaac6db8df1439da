//! A cost line's descriptive fields (`LineDims`), shared between the lines that have the
//! same ones. A billing file of millions of lines has a few thousand distinct combinations
//! of provider, service, region, resource, SKU, accounts and tags; the parser builds each
//! once and hands every later line with the same fields the same `Arc` (`DimsCache`), so a
//! line whose combination is known allocates no strings for them (only a tags column's
//! JSON is still parsed into a map per row), and the store tells combinations apart by
//! address.
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// What `cost_dims` holds of a line: everything but its money, quantity and periods.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LineDims {
    pub billing_currency: String,
    /// Usage, Purchase, Tax, Credit, Adjustment (FOCUS ChargeCategory).
    pub charge_category: String,
    pub provider_name: String,
    pub service_name: Option<String>,
    pub service_category: Option<String>,
    pub region_id: Option<String>,
    pub availability_zone: Option<String>,
    pub resource_id: Option<String>,
    pub sku_id: Option<String>,
    pub billing_account_id: Option<String>,
    pub sub_account_id: Option<String>,
    /// Standard, Dynamic (spot), Committed, Other.
    pub pricing_category: Option<String>,
    pub consumed_unit: Option<String>,
    /// FOCUS ChargeClass: `Correction`, or `None`.
    pub charge_class: Option<String>,
    /// FOCUS CommitmentDiscountCategory: `Spend` (savings plans), `Usage` (reservations),
    /// or `None` when no commitment discount applies.
    pub commitment_discount_category: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// The number of text fields of [`LineDims`] besides the tags.
pub const DIMS_FIELDS: usize = 15;

impl LineDims {
    /// The text fields in `cost_dims` column order (currency, category and provider are
    /// never absent).
    pub fn fields(&self) -> [Option<&str>; DIMS_FIELDS] {
        [
            Some(self.billing_currency.as_str()),
            Some(self.charge_category.as_str()),
            Some(self.provider_name.as_str()),
            self.service_name.as_deref(),
            self.service_category.as_deref(),
            self.region_id.as_deref(),
            self.availability_zone.as_deref(),
            self.resource_id.as_deref(),
            self.sku_id.as_deref(),
            self.billing_account_id.as_deref(),
            self.sub_account_id.as_deref(),
            self.pricing_category.as_deref(),
            self.consumed_unit.as_deref(),
            self.charge_class.as_deref(),
            self.commitment_discount_category.as_deref(),
        ]
    }

    /// What makes two `LineDims` equal, for hashing and comparing without building one.
    pub fn key(&self) -> DimsKey<'_> {
        (self.fields(), &self.tags)
    }
}

/// The text fields (in [`LineDims::fields`] order) and the tags.
pub type DimsKey<'a> = ([Option<&'a str>; DIMS_FIELDS], &'a BTreeMap<String, String>);

/// A line's descriptive fields as a parser has them: borrowed from the row being read.
pub struct DimsRef<'a> {
    pub billing_currency: &'a str,
    pub charge_category: &'a str,
    pub provider_name: &'a str,
    pub service_name: Option<&'a str>,
    pub service_category: Option<&'a str>,
    pub region_id: Option<&'a str>,
    pub availability_zone: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub sku_id: Option<&'a str>,
    pub billing_account_id: Option<&'a str>,
    pub sub_account_id: Option<&'a str>,
    pub pricing_category: Option<&'a str>,
    pub consumed_unit: Option<&'a str>,
    pub charge_class: Option<&'a str>,
    pub commitment_discount_category: Option<&'a str>,
    pub tags: BTreeMap<String, String>,
}

impl DimsRef<'_> {
    fn fields(&self) -> [Option<&str>; DIMS_FIELDS] {
        [
            Some(self.billing_currency),
            Some(self.charge_category),
            Some(self.provider_name),
            self.service_name,
            self.service_category,
            self.region_id,
            self.availability_zone,
            self.resource_id,
            self.sku_id,
            self.billing_account_id,
            self.sub_account_id,
            self.pricing_category,
            self.consumed_unit,
            self.charge_class,
            self.commitment_discount_category,
        ]
    }

    fn into_owned(self) -> LineDims {
        let s = |v: Option<&str>| v.map(str::to_string);
        LineDims {
            billing_currency: self.billing_currency.to_string(),
            charge_category: self.charge_category.to_string(),
            provider_name: self.provider_name.to_string(),
            service_name: s(self.service_name),
            service_category: s(self.service_category),
            region_id: s(self.region_id),
            availability_zone: s(self.availability_zone),
            resource_id: s(self.resource_id),
            sku_id: s(self.sku_id),
            billing_account_id: s(self.billing_account_id),
            sub_account_id: s(self.sub_account_id),
            pricing_category: s(self.pricing_category),
            consumed_unit: s(self.consumed_unit),
            charge_class: s(self.charge_class),
            commitment_discount_category: s(self.commitment_discount_category),
            tags: self.tags,
        }
    }
}

/// The combinations one parse has built so far. It holds at most `DimsCache::HELD`
/// (~1 KB each) and then starts afresh: a file whose lines are nearly all distinct keeps
/// memory bounded and gets new `Arc`s for combinations it meets again (still equal, so the
/// store stores them once).
#[derive(Default)]
pub struct DimsCache {
    table: hashbrown::HashTable<Arc<LineDims>>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl DimsCache {
    const HELD: usize = 100_000;

    /// The shared `LineDims` equal to `d`, built on first sight.
    pub fn intern(&mut self, d: DimsRef<'_>) -> Arc<LineDims> {
        let fields = d.fields();
        let hash = self.hasher.hash_one((fields, &d.tags));
        if let Some(found) = self
            .table
            .find(hash, |e| e.fields() == fields && e.tags == d.tags)
        {
            return found.clone();
        }
        if self.table.len() >= Self::HELD {
            self.table.clear();
        }
        let dims = Arc::new(d.into_owned());
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, dims.clone(), |e| hasher.hash_one(e.key()));
        dims
    }

    /// How many combinations the cache holds.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe<'a>(service: Option<&'a str>, tags: &[(&str, &str)]) -> DimsRef<'a> {
        DimsRef {
            billing_currency: "USD",
            charge_category: "Usage",
            provider_name: "AWS",
            service_name: service,
            service_category: None,
            region_id: Some("us-east-1"),
            availability_zone: None,
            resource_id: None,
            sku_id: None,
            billing_account_id: Some("1"),
            sub_account_id: None,
            pricing_category: None,
            consumed_unit: None,
            charge_class: None,
            commitment_discount_category: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn equal_fields_share_one_arc_and_any_difference_gets_its_own() {
        let mut c = DimsCache::default();
        let a = c.intern(probe(Some("EC2"), &[("team", "ml")]));
        let b = c.intern(probe(Some("EC2"), &[("team", "ml")]));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.service_name.as_deref(), Some("EC2"));
        assert_eq!(a.tags.get("team").map(String::as_str), Some("ml"));
        // A null and an empty string are different values; so are different tags.
        let none = c.intern(probe(None, &[("team", "ml")]));
        let empty = c.intern(probe(Some(""), &[("team", "ml")]));
        let other_tag = c.intern(probe(Some("EC2"), &[("team", "web")]));
        let no_tag = c.intern(probe(Some("EC2"), &[]));
        for (x, y) in [
            (&a, &none),
            (&a, &empty),
            (&none, &empty),
            (&a, &other_tag),
            (&a, &no_tag),
        ] {
            assert!(!Arc::ptr_eq(x, y));
            assert_ne!(**x, **y);
        }
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn a_full_cache_starts_afresh_and_stays_correct() {
        let mut c = DimsCache::default();
        let first = c.intern(probe(Some("s0"), &[]));
        let names: Vec<String> = (1..=DimsCache::HELD).map(|i| format!("s{i}")).collect();
        for n in &names {
            let d = c.intern(probe(Some(n), &[]));
            assert_eq!(d.service_name.as_deref(), Some(n.as_str()));
        }
        assert!(c.len() <= DimsCache::HELD);
        let again = c.intern(probe(Some("s0"), &[]));
        assert_eq!(*again, *first);
    }
}
