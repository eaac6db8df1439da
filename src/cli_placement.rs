//! `bursar select` and `bursar unavailable …`: clients of PlacementService.
use std::collections::HashMap;

use serde_json::json;

use crate::cli::{
    CliError, ClientArgs, SelectArgs, UnavailableCommand, channel, market_name, provider_name,
    status_error, table,
};
use crate::domain::Provider;
use crate::domain::quote::quote;
use crate::proto;
use crate::proto::placement_service_client::PlacementServiceClient;

fn provider_enum(s: &str, flag: &str) -> Result<i32, CliError> {
    let p: Provider = s
        .parse()
        .map_err(|e| CliError::Usage(format!("{flag}: {e}")))?;
    Ok(match p {
        Provider::Aws => proto::Provider::Aws,
        Provider::Gcp => proto::Provider::Gcp,
        Provider::Azure => proto::Provider::Azure,
    } as i32)
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

pub async fn select(a: SelectArgs) -> Result<(), CliError> {
    let (accelerators, count) = match a.gpu.as_deref() {
        None => (vec![], 0),
        Some(g) => {
            let (models, count) = match g.rsplit_once(':') {
                Some((m, c)) => (
                    m,
                    c.trim().parse::<u32>().map_err(|_| {
                        CliError::Usage(format!("--gpu {}: count must be a whole number", quote(g)))
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
                .map(|p| provider_enum(p, "--provider"))
                .collect::<Result<_, _>>()?,
            denied_providers: a
                .deny_providers
                .iter()
                .map(|p| provider_enum(p, "--deny-provider"))
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
    };
    let mut client = PlacementServiceClient::new(channel(&a.client.server).await?);
    let resp = client
        .select_provider(req)
        .await
        .map_err(|s| match s.code() {
            tonic::Code::FailedPrecondition => CliError::Failed(s.message().to_string()),
            _ => status_error(s),
        })?;
    let resp = resp.into_inner();
    let amount =
        |m: &Option<proto::Money>| m.as_ref().map(|m| m.amount.clone()).unwrap_or_default();
    if a.client.json {
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
                    "source": p.source,
                    "price_age_seconds": p.price_age_seconds,
                    "stale": p.stale,
                    "seed": p.seed,
                    "suspect": p.suspect,
                    "reason": p.reason,
                })
            })
            .collect();
        let excluded: serde_json::Map<String, serde_json::Value> = resp
            .excluded
            .iter()
            .map(|e| (e.constraint.clone(), json!(e.offers)))
            .collect();
        let out = json!({
            "decision_id": resp.decision_id,
            "placements": rows,
            "excluded": excluded,
            "offers_considered": resp.offers_considered,
            "feasible": resp.feasible,
            "seed_prices": resp.seed_prices,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    let rows: Vec<Vec<String>> = resp
        .placements
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut flags = Vec::new();
            if p.seed {
                flags.push("seed");
            }
            if p.stale {
                flags.push("stale");
            }
            if p.suspect {
                flags.push("suspect");
            }
            vec![
                (i + 1).to_string(),
                provider_name(p.provider).to_string(),
                p.region.clone(),
                p.zone.clone(),
                p.instance_type.clone(),
                market_name(p.market).to_string(),
                amount(&p.price_per_hour),
                amount(&p.compute_cost),
                amount(&p.egress_cost),
                amount(&p.spot_overhead),
                amount(&p.total_cost),
                p.interruption_band.clone(),
                flags.join(","),
            ]
        })
        .collect();
    crate::out!(
        "{}",
        table(
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
            &rows
        )
    );
    if let Some(p) = resp.placements.first() {
        crate::outln!("why: {}", p.reason);
    }
    let ex: Vec<String> = resp
        .excluded
        .iter()
        .map(|e| format!("{} {}", e.constraint, e.offers))
        .collect();
    crate::outln!(
        "{} feasible of {} offers; excluded: {}; decision {}",
        resp.feasible,
        resp.offers_considered,
        if ex.is_empty() {
            "none".into()
        } else {
            ex.join(", ")
        },
        resp.decision_id
    );
    Ok(())
}

pub async fn unavailable(cmd: UnavailableCommand) -> Result<(), CliError> {
    let print_marks = |marks: &[proto::AvailabilityMark], c: &ClientArgs| {
        let ts = |t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        };
        if c.json {
            let rows: Vec<_> = marks
                .iter()
                .map(|m| {
                    json!({"id": m.id, "provider": provider_name(m.provider), "region": m.region,
                           "zone": m.zone, "reason": m.reason, "created_at": ts(&m.created_at),
                           "expires_at": ts(&m.expires_at)})
                })
                .collect();
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&json!({ "marks": rows })).unwrap_or_default()
            );
        } else {
            let rows: Vec<Vec<String>> = marks
                .iter()
                .map(|m| {
                    vec![
                        m.id.clone(),
                        provider_name(m.provider).to_string(),
                        m.region.clone(),
                        m.zone.clone(),
                        ts(&m.expires_at),
                        m.reason.clone(),
                    ]
                })
                .collect();
            crate::out!(
                "{}",
                crate::display::list(
                    &["ID", "PROVIDER", "REGION", "ZONE", "EXPIRES", "REASON"],
                    &rows,
                    "availability marks"
                )
            );
        }
    };
    match cmd {
        UnavailableCommand::Mark {
            provider,
            region,
            zone,
            reason,
            duration,
            client,
        } => {
            let ttl = humantime::parse_duration(&duration)
                .map_err(|e| CliError::Usage(format!("--for {}: {e}", quote(&duration))))?;
            let mut c = PlacementServiceClient::new(channel(&client.server).await?);
            let m = c
                .mark_unavailable(proto::MarkUnavailableRequest {
                    provider: provider_enum(&provider, "--provider")?,
                    region: region.unwrap_or_default(),
                    zone: zone.unwrap_or_default(),
                    reason,
                    ttl_seconds: ttl.as_secs(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_marks(&[m], &client);
            Ok(())
        }
        UnavailableCommand::List { client } => {
            let mut c = PlacementServiceClient::new(channel(&client.server).await?);
            let r = c
                .list_unavailable(proto::ListUnavailableRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            print_marks(&r.marks, &client);
            Ok(())
        }
        UnavailableCommand::Clear { id, client } => {
            let mut c = PlacementServiceClient::new(channel(&client.server).await?);
            c.clear_unavailable(proto::ClearUnavailableRequest { id: id.clone() })
                .await
                .map_err(|s| match s.code() {
                    tonic::Code::NotFound => CliError::Failed(s.message().to_string()),
                    _ => status_error(s),
                })?;
            crate::outln!("cleared {id}");
            Ok(())
        }
    }
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
}
