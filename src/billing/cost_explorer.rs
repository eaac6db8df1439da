//! Daily cost per (service, linked account) from Cost Explorer GetCostAndUsage, through
//! `aws-sdk-costexplorer` (the API lives in us-east-1), as FOCUS-shaped `CostLine`s.
//!
//! One walk asks for DAILY granularity, the metrics UnblendedCost, AmortizedCost and
//! UsageQuantity, grouped by DIMENSION SERVICE and DIMENSION LINKED_ACCOUNT, and follows
//! `NextPageToken` under a `TokenGuard` (a repeated token is an error). Every group of
//! every `ResultsByTime` entry becomes one line:
//!
//! - BilledCost = UnblendedCost, EffectiveCost = AmortizedCost (UnblendedCost if absent),
//!   both exact decimals from the API's strings; BillingCurrency = the metric's Unit;
//! - ChargePeriodStart/End = TimePeriod Start/End (dates → 00:00 UTC; End is exclusive),
//!   BillingPeriod = the calendar month of the start;
//! - ChargeCategory "Usage", ProviderName "AWS";
//! - ServiceName / SubAccountId from the group keys, positioned by the response's
//!   GroupDefinitions (or, when the response has none, as requested: SERVICE, LINKED_ACCOUNT);
//!   TAG and COST_CATEGORY keys (`Name$value`) become tags, other dimensions
//!   `aws:ce:<DIMENSION>` tags;
//! - ConsumedQuantity / ConsumedUnit from UsageQuantity when present (unit "N/A" → none);
//! - `line` = running 1-based index over the whole walk.
//!
//! Results marked `Estimated` (the current, unclosed month) are still turned into lines;
//! `CostExplorerResult::estimated_lines` counts them so callers can re-fetch later. An entry
//! with no groups but a Total carrying UnblendedCost yields one line without service or
//! account, so no money is dropped; an entry with neither yields nothing. A group without
//! UnblendedCost, an unreadable amount or date, or mixed currencies is a malformed response:
//! the whole walk fails.
//!
//! The pure part is `lines_from_results`, over mirror types (`CeResponse` and friends) that
//! deserialise from the API's JSON and convert from the SDK's output.
use std::collections::BTreeMap;

use aws_sdk_costexplorer::operation::get_cost_and_usage::GetCostAndUsageOutput;
use aws_sdk_costexplorer::types::{
    DateInterval, Granularity, GroupDefinition, GroupDefinitionType,
};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::{CostLine, LineDims};
use crate::domain::money::parse_amount;
use crate::remote::aws::{AttemptCounter, endpoint_label, map_sdk_error, sdk_config};
use crate::remote::http::TokenGuard;
use crate::remote::{HttpSettings, SourceError};

/// Cost Explorer's one region.
pub const REGION: &str = "us-east-1";
/// Metrics asked for.
pub const METRICS: &[&str] = &["UnblendedCost", "AmortizedCost", "UsageQuantity"];
/// Group-by dimensions asked for, in key order.
pub const GROUP_BY: &[&str] = &["SERVICE", "LINKED_ACCOUNT"];

/// What one complete walk produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CostExplorerResult {
    pub lines: Vec<CostLine>,
    pub pages: u32,
    /// How many of `lines` come from entries AWS marked `Estimated` (not final yet).
    pub estimated_lines: u64,
}

// ---------------------------------------------------------------------------------------
// Mirror types: the GetCostAndUsage response as JSON (PascalCase), or converted from the SDK.

/// A GetCostAndUsage response (the parts used here).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CeResponse {
    #[serde(default)]
    pub group_definitions: Vec<CeGroupDefinition>,
    #[serde(default)]
    pub results_by_time: Vec<CeResultByTime>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `{"Type": "DIMENSION", "Key": "SERVICE"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CeGroupDefinition {
    #[serde(default)]
    pub r#type: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

impl CeGroupDefinition {
    pub fn dimension(key: &str) -> Self {
        CeGroupDefinition {
            r#type: Some("DIMENSION".into()),
            key: Some(key.into()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CeResultByTime {
    #[serde(default)]
    pub time_period: Option<CePeriod>,
    #[serde(default)]
    pub total: BTreeMap<String, CeMetric>,
    #[serde(default)]
    pub groups: Vec<CeGroup>,
    #[serde(default)]
    pub estimated: bool,
}

/// Dates as sent: `"2024-01-01"` (or a timestamp for HOURLY granularity).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CePeriod {
    pub start: String,
    pub end: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CeGroup {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub metrics: BTreeMap<String, CeMetric>,
}

/// `{"Amount": "40.3543773134", "Unit": "USD"}`; the amount stays text until parsed exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CeMetric {
    #[serde(default)]
    pub amount: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
}

fn metrics_from_sdk(
    m: Option<&std::collections::HashMap<String, aws_sdk_costexplorer::types::MetricValue>>,
) -> BTreeMap<String, CeMetric> {
    m.into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                CeMetric {
                    amount: v.amount().map(str::to_string),
                    unit: v.unit().map(str::to_string),
                },
            )
        })
        .collect()
}

impl From<&GetCostAndUsageOutput> for CeResponse {
    fn from(out: &GetCostAndUsageOutput) -> Self {
        CeResponse {
            group_definitions: out
                .group_definitions()
                .iter()
                .map(|d| CeGroupDefinition {
                    r#type: d.r#type().map(|t| t.as_str().to_string()),
                    key: d.key().map(str::to_string),
                })
                .collect(),
            results_by_time: out
                .results_by_time()
                .iter()
                .map(|r| CeResultByTime {
                    time_period: r.time_period().map(|p| CePeriod {
                        start: p.start().to_string(),
                        end: p.end().to_string(),
                    }),
                    total: metrics_from_sdk(r.total()),
                    groups: r
                        .groups()
                        .iter()
                        .map(|g| CeGroup {
                            keys: g.keys().to_vec(),
                            metrics: metrics_from_sdk(g.metrics()),
                        })
                        .collect(),
                    estimated: r.estimated(),
                })
                .collect(),
            next_page_token: out.next_page_token().map(str::to_string),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The pure part.

/// `"2024-01-01"` or an RFC 3339 timestamp → UTC.
fn parse_period_bound(s: &str) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(midnight(d));
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| format!("unreadable TimePeriod date {s:?}"))
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// First day of the month of `t`, and of the month after.
fn month_of(t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = NaiveDate::from_ymd_opt(t.year(), t.month(), 1).expect("day 1 exists");
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .expect("month after is representable");
    (midnight(first), midnight(next))
}

/// An amount and its unit, or `None` if the metric is absent.
fn metric(
    metrics: &BTreeMap<String, CeMetric>,
    name: &str,
) -> Result<Option<(Decimal, Option<String>)>, String> {
    let Some(m) = metrics.get(name) else {
        return Ok(None);
    };
    let raw = m
        .amount
        .as_deref()
        .ok_or_else(|| format!("{name} has no Amount"))?;
    let amount = parse_amount(raw).map_err(|e| format!("{name}: {e}"))?;
    let unit = m
        .unit
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    Ok(Some((amount, unit)))
}

/// Puts one group key where its definition says.
fn apply_key(dims: &mut LineDims, def: &CeGroupDefinition, value: &str) {
    let kind = def.r#type.as_deref().unwrap_or("DIMENSION");
    let key = def.key.as_deref().unwrap_or("");
    match kind.to_ascii_uppercase().as_str() {
        "TAG" | "COST_CATEGORY" => {
            // Sent as "Name$value"; "Name$" means untagged.
            let (name, v) = value.split_once('$').unwrap_or((key, value));
            let name = if name.is_empty() { key } else { name };
            if !v.is_empty() && !name.is_empty() {
                dims.tags.insert(name.to_string(), v.to_string());
            }
        }
        _ => {
            let v = Some(value.to_string()).filter(|v| !v.is_empty());
            match key.to_ascii_uppercase().as_str() {
                "SERVICE" => dims.service_name = v,
                "LINKED_ACCOUNT" => dims.sub_account_id = v,
                "REGION" => dims.region_id = v,
                "AZ" => dims.availability_zone = v,
                _ => {
                    if let Some(v) = v {
                        dims.tags.insert(format!("aws:ce:{key}"), v);
                    }
                }
            }
        }
    }
}

/// Lines for one `ResultsByTime` entry; `next_line` is advanced per line.
fn lines_from_result(
    defs: &[CeGroupDefinition],
    r: &CeResultByTime,
    next_line: &mut u64,
) -> Result<Vec<CostLine>, String> {
    let period = r
        .time_period
        .as_ref()
        .ok_or("a ResultsByTime entry has no TimePeriod")?;
    let start = parse_period_bound(&period.start)?;
    let end = parse_period_bound(&period.end)?;
    if end < start {
        return Err(format!(
            "TimePeriod {} .. {} ends before it starts",
            period.start, period.end
        ));
    }
    let (billing_start, billing_end) = month_of(start);

    let requested: Vec<CeGroupDefinition>;
    let defs = if defs.is_empty() {
        requested = GROUP_BY
            .iter()
            .map(|k| CeGroupDefinition::dimension(k))
            .collect();
        &requested[..]
    } else {
        defs
    };

    // Groups, or the Total as one ungrouped line when there are no groups.
    let total_only;
    let groups: &[CeGroup] = if r.groups.is_empty() {
        if !r.total.contains_key("UnblendedCost") {
            return Ok(Vec::new());
        }
        total_only = [CeGroup {
            keys: Vec::new(),
            metrics: r.total.clone(),
        }];
        &total_only
    } else {
        &r.groups
    };

    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let whereabouts = || {
            format!(
                "period {} .. {}, group {:?}",
                period.start, period.end, g.keys
            )
        };
        if !g.keys.is_empty() && g.keys.len() != defs.len() {
            return Err(format!(
                "{}: {} keys for {} group definitions",
                whereabouts(),
                g.keys.len(),
                defs.len()
            ));
        }
        let (billed, currency) = metric(&g.metrics, "UnblendedCost")
            .map_err(|e| format!("{}: {e}", whereabouts()))?
            .ok_or_else(|| format!("{}: no UnblendedCost", whereabouts()))?;
        let currency =
            currency.ok_or_else(|| format!("{}: UnblendedCost has no Unit", whereabouts()))?;
        let effective = match metric(&g.metrics, "AmortizedCost")
            .map_err(|e| format!("{}: {e}", whereabouts()))?
        {
            Some((amount, unit)) => {
                if unit.as_deref().is_some_and(|u| u != currency) {
                    return Err(format!(
                        "{}: AmortizedCost in {} but UnblendedCost in {currency}",
                        whereabouts(),
                        unit.unwrap_or_default()
                    ));
                }
                amount
            }
            None => billed,
        };
        let usage =
            metric(&g.metrics, "UsageQuantity").map_err(|e| format!("{}: {e}", whereabouts()))?;
        let mut dims = LineDims {
            billing_currency: currency,
            charge_category: "Usage".into(),
            provider_name: "AWS".into(),
            consumed_unit: usage
                .as_ref()
                .and_then(|(_, u)| u.clone())
                .filter(|u| !u.eq_ignore_ascii_case("N/A")),
            ..LineDims::default()
        };
        for (def, value) in defs.iter().zip(&g.keys) {
            apply_key(&mut dims, def, value);
        }
        let line = CostLine {
            line: *next_line,
            billed_cost: billed,
            effective_cost: effective,
            list_cost: None,
            contracted_cost: None,
            billing_period_start: billing_start,
            billing_period_end: billing_end,
            charge_period_start: start,
            charge_period_end: end,
            consumed_quantity: usage.map(|(q, _)| q),
            dims: std::sync::Arc::new(dims),
        };
        *next_line += 1;
        out.push(line);
    }
    Ok(out)
}

/// Turns `ResultsByTime` entries into cost lines, numbered from `first_line` (1 for a
/// fresh walk). `group_definitions` as the response sent them; empty = the requested
/// SERVICE, LINKED_ACCOUNT. `Err` describes the first malformed entry.
pub fn lines_from_results(
    group_definitions: &[CeGroupDefinition],
    results: &[CeResultByTime],
    first_line: u64,
) -> Result<Vec<CostLine>, String> {
    let mut next = first_line;
    let mut out = Vec::new();
    for r in results {
        out.extend(lines_from_result(group_definitions, r, &mut next)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The walk.

/// Every page of GetCostAndUsage for `[start, end)` (end exclusive, as the API takes it),
/// daily, per service and linked account. `settings.endpoint` overrides the Cost Explorer
/// endpoint. Errors after retries; never a partial result.
pub async fn cost_and_usage(
    settings: &HttpSettings,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<CostExplorerResult, SourceError> {
    if end <= start {
        return Err(SourceError::Config(format!(
            "Cost Explorer period {start} .. {end}: the end (exclusive) must be after the start"
        )));
    }
    let url = format!(
        "{} GetCostAndUsage {start}..{end}",
        endpoint_label(settings, || format!("https://ce.{REGION}.amazonaws.com"))
    );
    let cfg = sdk_config(settings, REGION).await?;
    let client = aws_sdk_costexplorer::Client::new(&cfg);
    let period = DateInterval::builder()
        .start(start.format("%Y-%m-%d").to_string())
        .end(end.format("%Y-%m-%d").to_string())
        .build()
        .map_err(|e| SourceError::Sdk(format!("building the time period: {e}")))?;
    let group_by: Vec<GroupDefinition> = GROUP_BY
        .iter()
        .map(|k| {
            GroupDefinition::builder()
                .r#type(GroupDefinitionType::Dimension)
                .key(*k)
                .build()
        })
        .collect();

    let mut guard = TokenGuard::default();
    let mut token: Option<String> = None;
    let mut result = CostExplorerResult::default();
    let mut next_line = 1u64;
    loop {
        let attempts = AttemptCounter::default();
        let out = client
            .get_cost_and_usage()
            .time_period(period.clone())
            .granularity(Granularity::Daily)
            .set_metrics(Some(METRICS.iter().map(|m| m.to_string()).collect()))
            .set_group_by(Some(group_by.clone()))
            .set_next_page_token(token.take())
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &url, attempts.get()))?;
        result.pages += 1;
        let page = CeResponse::from(&out);
        for r in &page.results_by_time {
            let lines = lines_from_result(&page.group_definitions, r, &mut next_line).map_err(
                |detail| SourceError::Malformed {
                    url: url.clone(),
                    detail: format!("page {}: {detail}", result.pages),
                },
            )?;
            if r.estimated {
                result.estimated_lines += lines.len() as u64;
            }
            result.lines.extend(lines);
        }
        match guard.next(page.next_page_token.as_deref(), &url)? {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    tracing::info!(
        source = "aws-costexplorer",
        pages = result.pages,
        lines = result.lines.len(),
        estimated = result.estimated_lines,
        "walk complete"
    );
    Ok(result)
}

/// A moto_server process for tests (`MOTO_SERVER`, else `.venv/bin/moto_server` under the
/// crate, else `moto_server` on PATH), on a free loopback port, killed on drop.
#[cfg(test)]
pub(crate) mod moto {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub(crate) struct Moto {
        pub url: String,
        child: Child,
    }

    fn binary() -> PathBuf {
        if let Some(p) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
        if venv.exists() {
            venv
        } else {
            PathBuf::from("moto_server")
        }
    }

    impl Moto {
        #[allow(clippy::zombie_processes)] // killed and reaped in Drop
        pub(crate) async fn start() -> Moto {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let bin = binary();
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start moto_server ({}): {e}; set MOTO_SERVER",
                        bin.display()
                    )
                });
            let mut moto = Moto {
                url: format!("http://127.0.0.1:{port}"),
                child,
            };
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = moto.child.try_wait() {
                    panic!("moto_server exited early: {status}");
                }
                let ready = http
                    .post(format!("{}/moto-api/reset", moto.url))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    return moto;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("moto_server did not answer on {} within 60s", moto.url);
        }

        /// POSTs a JSON body to a moto API path and expects success.
        pub(crate) async fn post(&self, path: &str, body: &serde_json::Value) {
            let r = reqwest::Client::new()
                .post(format!("{}{path}", self.url))
                .json(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: HTTP {}", r.status());
        }
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::time::Duration;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const SAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/price-api-samples/aws/cli_example_ce_get_cost_and_usage.json"
    );

    #[test]
    fn recorded_cli_example_parses() {
        let text = std::fs::read_to_string(SAMPLE).expect("recorded sample");
        let resp: CeResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(resp.next_page_token, None);
        let lines = lines_from_results(&resp.group_definitions, &resp.results_by_time, 1).unwrap();
        assert_eq!(lines.len(), 2);
        let (a, b) = (&lines[0], &lines[1]);
        assert_eq!((a.line, b.line), (1, 2));
        assert_eq!(a.billed_cost, dec("40.3543773134"));
        // No AmortizedCost in the sample: effective = unblended.
        assert_eq!(a.effective_cost, dec("40.3543773134"));
        assert_eq!(b.billed_cost, dec("0.2682364644"));
        assert_eq!(a.billed_cost + b.billed_cost, dec("40.6226137778"));
        assert_eq!(a.dims.billing_currency, "USD");
        assert_eq!(
            a.dims.service_name.as_deref(),
            Some("Amazon Simple Storage Service")
        );
        // The second key is a tag here, not an account.
        assert_eq!(a.dims.sub_account_id, None);
        assert!(a.dims.tags.is_empty(), "untagged: {:?}", a.dims.tags);
        assert_eq!(
            b.dims.tags.get("Environment").map(String::as_str),
            Some("Dev")
        );
        assert_eq!(a.charge_period_start, utc("2017-09-01T00:00:00Z"));
        assert_eq!(a.charge_period_end, utc("2017-10-01T00:00:00Z"));
        assert_eq!(a.billing_period_start, utc("2017-09-01T00:00:00Z"));
        assert_eq!(a.billing_period_end, utc("2017-10-01T00:00:00Z"));
        assert_eq!(a.consumed_quantity, Some(dec("9312771.098461578")));
        assert_eq!(a.dims.consumed_unit, None, "N/A is no unit");
        assert_eq!(a.dims.charge_category, "Usage");
        assert_eq!(a.dims.provider_name, "AWS");
    }

    fn group(service: &str, account: &str, unblended: &str, amortized: Option<&str>) -> CeGroup {
        let mut metrics = BTreeMap::new();
        let m = |a: &str| CeMetric {
            amount: Some(a.into()),
            unit: Some("USD".into()),
        };
        metrics.insert("UnblendedCost".to_string(), m(unblended));
        if let Some(a) = amortized {
            metrics.insert("AmortizedCost".to_string(), m(a));
        }
        CeGroup {
            keys: vec![service.into(), account.into()],
            metrics,
        }
    }

    fn day(start: &str, end: &str, groups: Vec<CeGroup>, estimated: bool) -> CeResultByTime {
        CeResultByTime {
            time_period: Some(CePeriod {
                start: start.into(),
                end: end.into(),
            }),
            total: BTreeMap::new(),
            groups,
            estimated,
        }
    }

    #[test]
    fn requested_grouping_maps_service_and_account() {
        let results = vec![
            day(
                "2024-01-31",
                "2024-02-01",
                vec![
                    group("Amazon EC2", "111122223333", "1.5E-3", Some("0.0012")),
                    group("AWS Lambda", "444455556666", "-0.01", None),
                ],
                false,
            ),
            day(
                "2024-02-01",
                "2024-02-02",
                vec![group("Tax", "111122223333", "0.0000000001", None)],
                true,
            ),
            // Nothing that day.
            day("2024-02-02", "2024-02-03", vec![], true),
        ];
        let lines = lines_from_results(&[], &results, 7).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), [7, 8, 9]);
        assert_eq!(lines[0].dims.service_name.as_deref(), Some("Amazon EC2"));
        assert_eq!(
            lines[0].dims.sub_account_id.as_deref(),
            Some("111122223333")
        );
        assert_eq!(lines[0].billed_cost, dec("0.0015"));
        assert_eq!(lines[0].effective_cost, dec("0.0012"));
        assert_eq!(lines[1].billed_cost, dec("-0.01"));
        assert_eq!(lines[1].effective_cost, dec("-0.01"));
        assert_eq!(lines[0].billing_period_start, utc("2024-01-01T00:00:00Z"));
        assert_eq!(lines[0].billing_period_end, utc("2024-02-01T00:00:00Z"));
        assert_eq!(lines[2].billing_period_start, utc("2024-02-01T00:00:00Z"));
        assert_eq!(lines[2].billing_period_end, utc("2024-03-01T00:00:00Z"));
        let total: Decimal = lines.iter().map(|l| l.billed_cost).sum();
        assert_eq!(total, dec("-0.0084999999"));
    }

    #[test]
    fn total_only_entry_keeps_its_money() {
        let mut r = day("2024-03-01", "2024-03-02", vec![], false);
        r.total.insert(
            "UnblendedCost".into(),
            CeMetric {
                amount: Some("2.50".into()),
                unit: Some("EUR".into()),
            },
        );
        let lines = lines_from_results(&[], &[r], 1).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].billed_cost, dec("2.50"));
        assert_eq!(lines[0].dims.billing_currency, "EUR");
        assert_eq!(lines[0].dims.service_name, None);
    }

    #[test]
    fn malformed_entries_are_errors() {
        let bad_amount = day(
            "2024-01-01",
            "2024-01-02",
            vec![group("S3", "1", "12,5", None)],
            false,
        );
        let e = lines_from_results(&[], &[bad_amount], 1).unwrap_err();
        assert!(e.contains("UnblendedCost") && e.contains("12,5"), "{e}");

        let mut no_unblended = group("S3", "1", "1", None);
        no_unblended.metrics.remove("UnblendedCost");
        let e = lines_from_results(
            &[],
            &[day("2024-01-01", "2024-01-02", vec![no_unblended], false)],
            1,
        )
        .unwrap_err();
        assert!(e.contains("no UnblendedCost"), "{e}");

        let mut mixed = group("S3", "1", "1", Some("1"));
        mixed.metrics.get_mut("AmortizedCost").unwrap().unit = Some("EUR".into());
        let e = lines_from_results(
            &[],
            &[day("2024-01-01", "2024-01-02", vec![mixed], false)],
            1,
        )
        .unwrap_err();
        assert!(e.contains("EUR"), "{e}");

        let e = lines_from_results(
            &[],
            &[day(
                "01/01/2024",
                "2024-01-02",
                vec![group("S3", "1", "1", None)],
                false,
            )],
            1,
        )
        .unwrap_err();
        assert!(e.contains("01/01/2024"), "{e}");

        let mut three_keys = group("S3", "1", "1", None);
        three_keys.keys.push("x".into());
        let e = lines_from_results(
            &[],
            &[day("2024-01-01", "2024-01-02", vec![three_keys], false)],
            1,
        )
        .unwrap_err();
        assert!(e.contains("3 keys for 2"), "{e}");
    }

    #[test]
    fn sdk_output_converts_to_mirror() {
        use aws_sdk_costexplorer::types::{Group, MetricValue, ResultByTime};
        let out = GetCostAndUsageOutput::builder()
            .results_by_time(
                ResultByTime::builder()
                    .time_period(
                        DateInterval::builder()
                            .start("2024-05-01")
                            .end("2024-05-02")
                            .build()
                            .unwrap(),
                    )
                    .groups(
                        Group::builder()
                            .keys("Amazon EC2")
                            .keys("123456789012")
                            .metrics(
                                "UnblendedCost",
                                MetricValue::builder().amount("3.14").unit("USD").build(),
                            )
                            .build(),
                    )
                    .estimated(true)
                    .build(),
            )
            .next_page_token("tok")
            .build();
        let mirror = CeResponse::from(&out);
        assert_eq!(mirror.next_page_token.as_deref(), Some("tok"));
        let lines =
            lines_from_results(&mirror.group_definitions, &mirror.results_by_time, 1).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].billed_cost, dec("3.14"));
        assert_eq!(
            lines[0].dims.sub_account_id.as_deref(),
            Some("123456789012")
        );
        assert!(mirror.results_by_time[0].estimated);
    }

    #[tokio::test]
    async fn empty_period_is_a_config_error() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
        assert!(matches!(
            cost_and_usage(&HttpSettings::default(), d, d).await,
            Err(SourceError::Config(_))
        ));
    }

    fn metric_json(amount: &str) -> serde_json::Value {
        serde_json::json!({"Amount": amount, "Unit": "USD"})
    }

    fn group_json(
        service: &str,
        account: &str,
        unblended: &str,
        amortized: &str,
    ) -> serde_json::Value {
        serde_json::json!({
            "Keys": [service, account],
            "Metrics": {
                "UnblendedCost": metric_json(unblended),
                "AmortizedCost": metric_json(amortized),
                "UsageQuantity": {"Amount": "24", "Unit": "N/A"}
            }
        })
    }

    #[tokio::test]
    async fn walks_pages_from_moto() {
        let moto = moto::Moto::start().await;
        let settings = HttpSettings {
            endpoint: Some(moto.url.clone()),
            max_retries: 1,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            timeout: Duration::from_secs(20),
        };
        let page1 = serde_json::json!({
            "GroupDefinitions": [
                {"Type": "DIMENSION", "Key": "SERVICE"},
                {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}
            ],
            "ResultsByTime": [
                {
                    "TimePeriod": {"Start": "2024-01-30", "End": "2024-01-31"},
                    "Total": {},
                    "Groups": [
                        group_json("Amazon Elastic Compute Cloud - Compute", "111122223333", "12.3456789012", "10.0000000001"),
                        group_json("Amazon Simple Storage Service", "111122223333", "0.0000000007", "0.0000000007")
                    ],
                    "Estimated": false
                },
                {
                    "TimePeriod": {"Start": "2024-01-31", "End": "2024-02-01"},
                    "Total": {},
                    "Groups": [
                        group_json("Amazon Elastic Compute Cloud - Compute", "444455556666", "7.25", "7.25")
                    ],
                    "Estimated": false
                }
            ],
            "DimensionValueAttributes": [],
            "NextPageToken": "page-2"
        });
        let page2 = serde_json::json!({
            "ResultsByTime": [
                {
                    "TimePeriod": {"Start": "2024-02-01", "End": "2024-02-02"},
                    "Total": {},
                    "Groups": [
                        group_json("AWS Lambda", "111122223333", "-1.0000000001", "-1.0000000001"),
                        group_json("Tax", "444455556666", "0.33", "0.33")
                    ],
                    "Estimated": true
                }
            ],
            "DimensionValueAttributes": []
        });
        moto.post(
            "/moto-api/static/ce/cost-and-usage-results",
            &serde_json::json!({"results": [page1, page2]}),
        )
        .await;

        let start = NaiveDate::from_ymd_opt(2024, 1, 30).unwrap();
        let end = NaiveDate::from_ymd_opt(2024, 2, 2).unwrap();
        let got = cost_and_usage(&settings, start, end).await.unwrap();
        assert_eq!(got.pages, 2);
        assert_eq!(got.lines.len(), 5);
        assert_eq!(got.estimated_lines, 2);
        assert_eq!(
            got.lines.iter().map(|l| l.line).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let billed: Decimal = got.lines.iter().map(|l| l.billed_cost).sum();
        let effective: Decimal = got.lines.iter().map(|l| l.effective_cost).sum();
        assert_eq!(billed, dec("18.9256789018"));
        assert_eq!(effective, dec("16.5800000007"));
        let l = &got.lines[2];
        assert_eq!(l.dims.sub_account_id.as_deref(), Some("444455556666"));
        assert_eq!(l.charge_period_start, utc("2024-01-31T00:00:00Z"));
        assert_eq!(l.billing_period_start, utc("2024-01-01T00:00:00Z"));
        let l = &got.lines[3];
        assert_eq!(l.dims.service_name.as_deref(), Some("AWS Lambda"));
        assert_eq!(l.billing_period_start, utc("2024-02-01T00:00:00Z"));
        assert_eq!(l.consumed_quantity, Some(dec("24")));

        // A server that keeps sending the same token is stopped, not followed forever.
        let looping = serde_json::json!({"ResultsByTime": [], "NextPageToken": "again"});
        moto.post(
            "/moto-api/static/ce/cost-and-usage-results",
            &serde_json::json!({"results": [looping.clone(), looping]}),
        )
        .await;
        let start = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2023, 1, 2).unwrap();
        let err = cost_and_usage(&settings, start, end).await.unwrap_err();
        assert!(
            matches!(&err, SourceError::PaginationLoop { token, .. } if token == "again"),
            "{err:?}"
        );
    }
}
