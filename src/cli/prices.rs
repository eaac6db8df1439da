//! `bursar prices`: current prices from a running server (PricingService.ListPrices), a
//! page at a time, with notes on seed and suspect prices.
use clap::Args;
use serde_json::json;

use super::CliError;
use super::client::{
    ClientArgs, channel, market_name, print_json, provider_flag, provider_name, status_error,
};
use super::display::{self, trim_float};
use crate::proto;
use crate::proto::pricing_service_client::PricingServiceClient;

#[derive(Args, Debug)]
pub struct PricesArgs {
    /// aws, gcp or azure.
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long)]
    pub instance_type: Option<String>,
    /// Accelerator model, e.g. A100 (case-insensitive).
    #[arg(long)]
    pub gpu: Option<String>,
    /// Minimum accelerator count.
    #[arg(long, default_value_t = 0)]
    pub min_gpus: u32,
    /// on_demand or spot.
    #[arg(long)]
    pub market: Option<String>,
    /// Maximum price per hour, exact decimal (e.g. 2.50).
    #[arg(long)]
    pub max_price: Option<String>,
    /// Offers per page (1..=1000).
    #[arg(long, default_value_t = 50)]
    pub limit: i32,
    /// Continue from a previous page's token.
    #[arg(long)]
    pub page_token: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: PricesArgs) -> Result<(), CliError> {
    let provider = match a.provider.as_deref() {
        None => proto::Provider::Unspecified as i32,
        Some(p) => provider_flag(p, "--provider")?,
    };
    let market = match a.market.as_deref() {
        None => proto::Market::Unspecified,
        Some(m) => match m
            .parse::<crate::domain::Market>()
            .map_err(|e| CliError::Usage(format!("--market: {e}")))?
        {
            crate::domain::Market::OnDemand => proto::Market::OnDemand,
            crate::domain::Market::Spot => proto::Market::Spot,
        },
    };
    let mut client = PricingServiceClient::new(channel(&a.client).await?);
    let resp = client
        .list_prices(proto::ListPricesRequest {
            provider,
            region: a.region.unwrap_or_default(),
            instance_type: a.instance_type.unwrap_or_default(),
            gpu_model: a.gpu.unwrap_or_default(),
            min_gpu_count: a.min_gpus,
            market: market as i32,
            max_price_per_hour: a.max_price.unwrap_or_default(),
            page_size: a.limit,
            page_token: a.page_token.unwrap_or_default(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if a.client.json {
        let rows: Vec<_> = resp.prices.iter().map(price_json).collect();
        let out = json!({
            "prices": rows,
            "next_page_token": resp.next_page_token,
            "total_matching": resp.total_matching,
        });
        print_json(&out);
        return Ok(());
    }
    let header = [
        "PROVIDER",
        "REGION",
        "ZONE",
        "INSTANCE TYPE",
        "MARKET",
        "PRICE/H",
        "VCPUS",
        "MEM GIB",
        "GPU",
        "SOURCE",
        "OBSERVED",
        "FLAGS",
    ];
    let rows: Vec<Vec<String>> = resp
        .prices
        .iter()
        .map(|p| {
            let money = p.price_per_hour.clone().unwrap_or_default();
            vec![
                provider_name(p.provider).to_string(),
                p.region.clone(),
                p.zone.clone(),
                p.instance_type.clone(),
                market_name(p.market).to_string(),
                format!("{} {}", display::price(&money.amount), money.currency),
                trim_float(p.vcpus),
                trim_float(p.memory_gib),
                if p.gpu_model.is_empty() {
                    String::new()
                } else {
                    format!("{}:{}", p.gpu_model, trim_float(p.gpu_count))
                },
                p.source.clone(),
                p.observed_at
                    .as_ref()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                [(p.seed, "seed"), (p.stale, "stale"), (p.suspect, "suspect")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, f)| *f)
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    crate::out!("{}", display::list(&header, &rows, "offers"));
    if rows.is_empty() {
        return Ok(());
    }
    crate::outln!(
        "{} of {} matching offers{}",
        resp.prices.len(),
        resp.total_matching,
        if resp.next_page_token.is_empty() {
            String::new()
        } else {
            format!("; next page: --page-token {}", resp.next_page_token)
        }
    );
    if resp.prices.iter().any(|p| p.seed) {
        crate::outln!(
            "note: prices flagged seed come from the snapshot shipped with bursar, not a live feed"
        );
    }
    for p in resp.prices.iter().filter(|p| p.suspect) {
        crate::outln!(
            "note: {} {} {} {}: {}",
            provider_name(p.provider),
            p.region,
            p.instance_type,
            market_name(p.market),
            p.suspect_reason
        );
    }
    Ok(())
}

fn price_json(p: &proto::Price) -> serde_json::Value {
    let money = p.price_per_hour.clone().unwrap_or_default();
    json!({
        "provider": provider_name(p.provider),
        "region": p.region,
        "zone": p.zone,
        "instance_type": p.instance_type,
        "market": market_name(p.market),
        "price_per_hour": {"amount": money.amount, "currency": money.currency},
        "vcpus": p.vcpus,
        "memory_gib": p.memory_gib,
        "gpu_model": p.gpu_model,
        "gpu_count": p.gpu_count,
        "gpu_memory_gib": p.gpu_memory_gib,
        "architecture": p.architecture,
        "source": p.source,
        "seed": p.seed,
        "stale": p.stale,
        "suspect": p.suspect,
        "suspect_reason": p.suspect_reason,
        "interruption_band": p.interruption_band,
        "observed_at": p.observed_at.as_ref().and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32)).map(|t| t.to_rfc3339()),
    })
}
