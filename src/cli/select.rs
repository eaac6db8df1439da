//! `bursar select`: asks a running server where to run a job
//! (PlacementService.SelectProvider) and prints the ranked placements — totals in cents,
//! prices at their own precision, budget notices — or the exact answer with `--json`.
use std::collections::HashMap;

use clap::Args;
use serde_json::json;

use super::CliError;
use super::client::{
    ClientArgs, channel, market_name, print_json, provider_flag, provider_name, status_error,
};
use super::display::{cents, price, table};
use crate::domain::quote::quote;
use crate::proto;
use crate::proto::placement_service_client::PlacementServiceClient;

#[derive(Args, Debug)]
pub struct SelectArgs {
    /// Accelerators as MODEL[:COUNT], e.g. A100:8; several models: A100,A100-80GB:8.
    #[arg(long)]
    pub gpu: Option<String>,
    /// Minimum vCPUs per node.
    #[arg(long, default_value_t = 0)]
    pub cpus: u32,
    /// Minimum memory per node, GiB.
    #[arg(long, default_value_t = 0.0)]
    pub memory: f64,
    /// Minimum memory per accelerator, GiB.
    #[arg(long, default_value_t = 0.0)]
    pub gpu_memory: f64,
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Expected runtime in hours (required, > 0).
    #[arg(long)]
    pub hours: f64,
    /// Allow spot/preemptible offers.
    #[arg(long)]
    pub spot: bool,
    /// Only spot/preemptible offers.
    #[arg(long, conflicts_with = "spot")]
    pub spot_only: bool,
    /// Worst acceptable interruption band: "<5%", "5-10%", "10-15%", "15-20%", ">20%".
    #[arg(long)]
    pub max_band: Option<String>,
    /// Use spot only if at least this many percent cheaper than on-demand.
    #[arg(long, default_value_t = 0.0)]
    pub min_spot_savings: f64,
    /// Input data as URI@REGION:SIZE, e.g. s3://bucket/path@us-east-1:2000GB (repeatable;
    /// sizes in GB or TB = 1000 GB).
    #[arg(long = "data")]
    pub data: Vec<String>,
    /// Output destination as URI@REGION:SIZE.
    #[arg(long)]
    pub output: Option<String>,
    /// Allowed provider (repeatable).
    #[arg(long = "provider")]
    pub providers: Vec<String>,
    #[arg(long = "deny-provider")]
    pub deny_providers: Vec<String>,
    /// Allowed region (repeatable).
    #[arg(long = "region")]
    pub regions: Vec<String>,
    #[arg(long = "deny-region")]
    pub deny_regions: Vec<String>,
    /// EU, EEA or a country code (repeatable).
    #[arg(long = "jurisdiction")]
    pub jurisdictions: Vec<String>,
    #[arg(long)]
    pub max_price: Option<String>,
    #[arg(long)]
    pub max_total: Option<String>,
    /// Leave out offers flagged suspect (priced far below their instance family).
    #[arg(long)]
    pub skip_suspect: bool,
    /// How many placements to return.
    #[arg(long, default_value_t = 5)]
    pub top: u32,
    /// At most one placement per region or per provider (the cheapest of each).
    #[arg(long, value_parser = ["region", "provider"])]
    pub distinct: Option<String>,
    /// Caller label KEY=VALUE (team, project, job_id, …), repeatable.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// "s3://bucket/path@us-east-1:2000GB" → (uri, size in GB).
pub fn parse_data(s: &str, flag: &str) -> Result<(String, f64), CliError> {
    let bad = || {
        CliError::Usage(format!(
            "{flag} {}: expected URI@REGION:SIZE such as s3://bucket/path@us-east-1:2000GB",
            quote(s)
        ))
    };
    let (uri, size) = s.rsplit_once(':').ok_or_else(bad)?;
    if !uri.contains('@') || !uri.contains("://") {
        return Err(bad());
    }
    let size = size.trim().to_ascii_uppercase();
    let (num, mult) = if let Some(n) = size.strip_suffix("TB") {
        (n, 1000.0)
    } else if let Some(n) = size.strip_suffix("GB") {
        (n, 1.0)
    } else {
        (size.as_str(), 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    Ok((uri.to_string(), v * mult))
}

pub async fn run(a: SelectArgs) -> Result<(), CliError> {
    let (accelerators, count) = match a.gpu.as_deref() {
        None => (vec![], 0),
        Some(g) => {
            let (models, count) = match g.rsplit_once(':') {
                Some((m, c)) => (
                    m,
                    c.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| {
                            CliError::Usage(format!(
                                "--gpu {}: the count after ':' must be a whole number of at least 1",
                                quote(g)
                            ))
                        })?,
                ),
                None => (g, 1),
            };
            (
                models
                    .split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect(),
                count,
            )
        }
    };
    let mut inputs = Vec::new();
    for d in &a.data {
        let (uri, gb) = parse_data(d, "--data")?;
        inputs.push(proto::DataInput {
            size_gb: gb,
            location: Some(proto::DataLocation {
                uri,
                ..Default::default()
            }),
        });
    }
    let (output_size_gb, output_location) = match &a.output {
        None => (0.0, None),
        Some(o) => {
            let (uri, gb) = parse_data(o, "--output")?;
            (
                gb,
                Some(proto::DataLocation {
                    uri,
                    ..Default::default()
                }),
            )
        }
    };
    let mut labels = HashMap::new();
    for l in &a.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--label {}: expected KEY=VALUE", quote(l))))?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    let market = if a.spot_only {
        proto::MarketPolicy::SpotOnly
    } else if a.spot {
        proto::MarketPolicy::SpotAllowed
    } else {
        proto::MarketPolicy::OnDemandOnly
    };
    let req = proto::SelectProviderRequest {
        resources: Some(proto::Resources {
            min_vcpus: a.cpus,
            min_memory_gib: a.memory,
            accelerators,
            accelerator_count: count,
            min_gpu_memory_gib: a.gpu_memory,
            nodes: a.nodes,
        }),
        expected_hours: a.hours,
        market: market as i32,
        spot: Some(proto::SpotPolicy {
            max_interruption_band: a.max_band.clone().unwrap_or_default(),
            min_savings_percent: a.min_spot_savings,
        }),
        inputs,
        output_size_gb,
        output_location,
        constraints: Some(proto::Constraints {
            allowed_providers: a
                .providers
                .iter()
                .map(|p| provider_flag(p, "--provider"))
                .collect::<Result<_, _>>()?,
            denied_providers: a
                .deny_providers
                .iter()
                .map(|p| provider_flag(p, "--deny-provider"))
                .collect::<Result<_, _>>()?,
            allowed_regions: a.regions.clone(),
            denied_regions: a.deny_regions.clone(),
            jurisdictions: a.jurisdictions.clone(),
            max_price_per_hour: a.max_price.clone().unwrap_or_default(),
            max_total_cost: a.max_total.clone().unwrap_or_default(),
            skip_suspect: a.skip_suspect,
        }),
        top_k: a.top,
        labels,
        distinct: match a.distinct.as_deref() {
            None => proto::Distinct::Unspecified,
            Some("provider") => proto::Distinct::Provider,
            Some(_) => proto::Distinct::Region,
        } as i32,
    };
    let mut client = PlacementServiceClient::new(channel(&a.client).await?);
    let resp = client
        .select_provider(req)
        .await
        .map_err(|s| match s.code() {
            tonic::Code::FailedPrecondition => CliError::Failed(s.message().to_string()),
            _ => status_error(s),
        })?;
    let resp = resp.into_inner();
    if a.client.json {
        print_json(&select_json(&resp));
    } else {
        crate::out!("{}", select_text(&resp, market));
    }
    Ok(())
}

fn amount(m: &Option<proto::Money>) -> String {
    m.as_ref().map(|m| m.amount.clone()).unwrap_or_default()
}

/// `bursar select --json`: every amount exact, as the server sent it.
fn select_json(resp: &proto::SelectProviderResponse) -> serde_json::Value {
    let rows: Vec<_> = resp
        .placements
        .iter()
        .map(|p| {
            json!({
                "provider": provider_name(p.provider),
                "region": p.region,
                "zone": p.zone,
                "instance_type": p.instance_type,
                "market": market_name(p.market),
                "price_per_hour": amount(&p.price_per_hour),
                "nodes": p.nodes,
                "compute_cost": amount(&p.compute_cost),
                "egress_cost": amount(&p.egress_cost),
                "egress": p.egress.iter().map(|e| json!({
                    "item": e.item, "from": format!("{} {}", e.from_provider, e.from_region),
                    "to": format!("{} {}", e.to_provider, e.to_region), "size_gb": e.size_gb,
                    "cost": amount(&e.cost),
                })).collect::<Vec<_>>(),
                "spot_overhead": amount(&p.spot_overhead),
                "total_cost": amount(&p.total_cost),
                "currency": p.total_cost.as_ref().map(|m| m.currency.clone()).unwrap_or_default(),
                "interruption_band": p.interruption_band,
                "interruption_band_assumed": p.interruption_band_assumed,
                "source": p.source,
                "price_age_seconds": p.price_age_seconds,
                "stale": p.stale,
                "seed": p.seed,
                "suspect": p.suspect,
                "over_budget": p.over_budget,
                "reason": p.reason,
            })
        })
        .collect();
    let excluded: serde_json::Map<String, serde_json::Value> = resp
        .excluded
        .iter()
        .map(|e| (e.constraint.clone(), json!(e.offers)))
        .collect();
    let budgets: Vec<_> = resp
        .budgets
        .iter()
        .map(|b| {
            json!({
                "budget": b.budget,
                "policy": b.policy,
                "amount": amount(&b.amount),
                "actual": amount(&b.actual),
                "forecast": amount(&b.forecast),
                "remaining": amount(&b.remaining),
                "currency": b.amount.as_ref().map(|m| m.currency.clone()).unwrap_or_default(),
                "removed": b.removed,
            })
        })
        .collect();
    json!({
        "decision_id": resp.decision_id,
        "placements": rows,
        "excluded": excluded,
        "offers_considered": resp.offers_considered,
        "feasible": resp.feasible,
        "seed_prices": resp.seed_prices,
        "budgets": budgets,
    })
}

/// `bursar select`'s table: totals in cents, prices at their own precision, an assumed
/// spot band marked as such, the budgets' notices and which placements exceed them.
fn select_text(resp: &proto::SelectProviderResponse, market: proto::MarketPolicy) -> String {
    let rows: Vec<Vec<String>> = resp
        .placements
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut flags = Vec::new();
            if p.seed {
                flags.push("seed".to_string());
            }
            if p.stale {
                flags.push("stale".to_string());
            }
            if p.suspect {
                flags.push("suspect".to_string());
            }
            for b in &p.over_budget {
                flags.push(format!("over budget {b}"));
            }
            let band = if p.interruption_band.is_empty() || !p.interruption_band_assumed {
                p.interruption_band.clone()
            } else {
                format!("~{} (assumed)", p.interruption_band)
            };
            vec![
                (i + 1).to_string(),
                provider_name(p.provider).to_string(),
                p.region.clone(),
                p.zone.clone(),
                p.instance_type.clone(),
                market_name(p.market).to_string(),
                price(&amount(&p.price_per_hour)),
                cents(&amount(&p.compute_cost)),
                cents(&amount(&p.egress_cost)),
                cents(&amount(&p.spot_overhead)),
                cents(&amount(&p.total_cost)),
                band,
                flags.join(","),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "#",
            "PROVIDER",
            "REGION",
            "ZONE",
            "INSTANCE TYPE",
            "MARKET",
            "PRICE/H",
            "COMPUTE",
            "EGRESS",
            "SPOT OVERHEAD",
            "TOTAL USD",
            "BAND",
            "FLAGS",
        ],
        &rows,
    );
    if let Some(p) = resp.placements.first() {
        out.push_str(&format!("why: {}\n", p.reason));
    }
    for b in &resp.budgets {
        let unit = b.amount.as_ref().map(|m| m.currency.as_str()).unwrap_or("");
        out.push_str(&format!(
            "budget {:?} ({}): spent {} of {} {unit}, forecast {}, remaining {}",
            b.budget,
            b.policy,
            cents(&amount(&b.actual)),
            cents(&amount(&b.amount)),
            cents(&amount(&b.forecast)),
            cents(&amount(&b.remaining)),
        ));
        if b.removed > 0 {
            out.push_str(&format!(
                "; removed {} placements it cannot afford",
                b.removed
            ));
        }
        let over = resp
            .placements
            .iter()
            .filter(|p| p.over_budget.contains(&b.budget))
            .count();
        if over > 0 {
            out.push_str(&format!("; {over} of these placements would exceed it"));
        }
        out.push('\n');
    }
    let ex: Vec<String> = resp
        .excluded
        .iter()
        .map(|e| match (e.constraint.as_str(), market) {
            ("market", proto::MarketPolicy::SpotOnly) => {
                format!("market {} (on-demand: --spot-only was given)", e.offers)
            }
            ("market", proto::MarketPolicy::OnDemandOnly) => {
                format!("market {} (spot is off unless --spot is given)", e.offers)
            }
            _ => format!("{} {}", e.constraint, e.offers),
        })
        .collect();
    out.push_str(&format!(
        "{} feasible of {} offers; excluded: {}; decision {}\n",
        resp.feasible,
        resp.offers_considered,
        if ex.is_empty() {
            "none".into()
        } else {
            ex.join(", ")
        },
        resp.decision_id
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_flags_parse() {
        assert_eq!(
            parse_data("s3://bucket/path@us-east-1:2000GB", "--data").unwrap(),
            ("s3://bucket/path@us-east-1".to_string(), 2000.0)
        );
        assert_eq!(
            parse_data("gs://b/p@europe-west4:2TB", "--data").unwrap().1,
            2000.0
        );
        assert!(parse_data("s3://bucket/path:2000GB", "--data").is_err());
        assert!(parse_data("nonsense", "--data").is_err());
    }

    fn money(amount: &str) -> Option<proto::Money> {
        Some(proto::Money {
            amount: amount.into(),
            currency: "USD".into(),
        })
    }

    #[test]
    fn the_table_rounds_marks_assumed_bands_and_shows_budget_warnings() {
        let spot = proto::Placement {
            provider: proto::Provider::Aws as i32,
            region: "us-east-1".into(),
            instance_type: "p4d.24xlarge".into(),
            market: proto::Market::Spot as i32,
            price_per_hour: money("9.8318"),
            compute_cost: money("132.581443218414"),
            egress_cost: money("0"),
            spot_overhead: money("0.004999999999"),
            total_cost: money("132.586443218413"),
            interruption_band: "10-15%".into(),
            interruption_band_assumed: true,
            over_budget: vec!["ml".into()],
            reason: "#1 of 2 feasible".into(),
            ..Default::default()
        };
        let measured = proto::Placement {
            interruption_band: "<5%".into(),
            interruption_band_assumed: false,
            over_budget: vec![],
            price_per_hour: money("3"),
            ..spot.clone()
        };
        let resp = proto::SelectProviderResponse {
            placements: vec![spot, measured],
            excluded: vec![proto::Exclusion {
                constraint: "market".into(),
                offers: 61,
            }],
            budgets: vec![proto::BudgetNotice {
                budget: "ml".into(),
                policy: "warn".into(),
                amount: money("100"),
                actual: money("99.123456789"),
                forecast: money("120.5"),
                remaining: money("0.876543211"),
                removed: 0,
            }],
            ..Default::default()
        };
        let text = select_text(&resp, proto::MarketPolicy::OnDemandOnly);
        assert!(text.contains("132.58 "), "{text}");
        assert!(!text.contains("132.5814"), "{text}");
        assert!(
            text.contains(" 9.8318 ") && text.contains(" 3.00 "),
            "{text}"
        );
        assert!(text.contains("~10-15% (assumed)"), "{text}");
        let measured_row = text.lines().find(|l| l.starts_with("2 ")).unwrap();
        assert!(
            measured_row.contains(" <5%") && !measured_row.contains("assumed"),
            "{text}"
        );
        assert!(text.contains("over budget ml"), "{text}");
        assert!(!measured_row.contains("over budget"), "{text}");
        assert!(
            text.contains(
                "budget \"ml\" (warn): spent 99.12 of 100.00 USD, forecast 120.50, remaining 0.88; \
                 1 of these placements would exceed it"
            ),
            "{text}"
        );
        assert!(
            text.contains("market 61 (spot is off unless --spot is given)"),
            "{text}"
        );
        let spot_allowed = select_text(&resp, proto::MarketPolicy::SpotAllowed);
        assert!(
            spot_allowed.contains("excluded: market 61;"),
            "{spot_allowed}"
        );

        let v = select_json(&resp);
        assert_eq!(v["placements"][0]["total_cost"], "132.586443218413");
        assert_eq!(v["placements"][0]["interruption_band_assumed"], true);
        assert_eq!(v["placements"][0]["over_budget"][0], "ml");
        assert_eq!(v["budgets"][0]["remaining"], "0.876543211");
        assert_eq!(v["budgets"][0]["policy"], "warn");
    }
}
