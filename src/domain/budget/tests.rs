use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::*;

use crate::domain::forecast::CostKind;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

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
    let e =
        parse("amount = \"1\"\nthresholds = [{ percent = \"1\", amount = \"2\" }]").unwrap_err();
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
