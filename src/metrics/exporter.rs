//! `Exporter`: one server's `/metrics` page. Its registry holds the process-wide `Events`,
//! the server's `RpcMetrics`, and a collector for what is read at scrape time: the catalog's
//! offers (from the `CatalogHandle`), each price source's last success and its age, and the
//! process's memory, CPU and file descriptors (`process`). Rendered in the OpenMetrics text
//! format, which Prometheus scrapes natively.
use std::sync::{Arc, Mutex, Weak};

use chrono::Utc;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::events::Events;
use super::process::{self, ProcessStats};
use super::rpc::RpcMetrics;
use crate::domain::catalog::{Catalog, CatalogHandle};
use crate::domain::{Market, Provider};

/// The `Content-Type` of a rendered page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// A page over `events` (normally `metrics::global()`), the server's `rpc` table (none
    /// when RPCs are not measured) and its catalog.
    pub fn new(events: &'static Events, rpc: Option<&RpcMetrics>, catalog: CatalogHandle) -> Self {
        let mut registry = Registry::default();
        events.register(&mut registry);
        if let Some(rpc) = rpc {
            rpc.register(&mut registry);
        }
        registry.register_collector(Box::new(ScrapeTime {
            catalog,
            offers: Mutex::new(None),
            events,
        }));
        Exporter { registry }
    }

    /// The page, now.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail; an encoder error would be a bug in a label set.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut s, &self.registry) {
            tracing::error!(error = %e, "encoding /metrics failed");
        }
        s
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OfferLabels {
    provider: &'static str,
    market: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

/// Offers per (provider, market), in `Provider::ALL × [OnDemand, Spot]` order.
type OfferCounts = [u64; 6];

fn count_offers(c: &Catalog) -> OfferCounts {
    let mut n = [0u64; 6];
    for o in c.offers() {
        let p = Provider::ALL
            .iter()
            .position(|p| *p == o.key.provider)
            .unwrap_or(0);
        let m = usize::from(o.key.market == Market::Spot);
        n[p * 2 + m] += 1;
    }
    n
}

/// What is read when Prometheus scrapes.
struct ScrapeTime {
    catalog: CatalogHandle,
    /// The counts of the catalog they were taken from: counted again only after a swap.
    offers: Mutex<Option<(Weak<Catalog>, OfferCounts)>>,
    events: &'static Events,
}

impl std::fmt::Debug for ScrapeTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeTime")
    }
}

impl ScrapeTime {
    fn offer_counts(&self) -> OfferCounts {
        let catalog = self.catalog.load();
        let mut cache = self.offers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built, counts)) = cache.as_ref()
            && std::ptr::eq(built.as_ptr(), Arc::as_ptr(&catalog))
        {
            return *counts;
        }
        let counts = count_offers(&catalog);
        *cache = Some((Arc::downgrade(&catalog), counts));
        counts
    }
}

fn gauge<T: prometheus_client::encoding::EncodeGaugeValue + Send + Sync + std::fmt::Debug>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: T,
) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for ScrapeTime {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let counts = self.offer_counts();
        {
            let mut family = enc.encode_descriptor(
                "bursar_catalog_offers",
                "Offers in the in-memory price catalog, by provider and market",
                None,
                MetricType::Gauge,
            )?;
            for (i, n) in counts.iter().enumerate() {
                let labels = OfferLabels {
                    provider: Provider::ALL[i / 2].as_str(),
                    market: if i % 2 == 1 {
                        Market::Spot.as_str()
                    } else {
                        Market::OnDemand.as_str()
                    },
                };
                ConstGauge::new(*n as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let now = Utc::now();
        let sources = self.events.price_source_successes();
        if !sources.is_empty() {
            {
                let mut family = enc.encode_descriptor(
                    "bursar_price_source_last_success_timestamp_seconds",
                    "When each price source last stored a complete walk (Unix time)",
                    None,
                    MetricType::Gauge,
                )?;
                for (source, at) in &sources {
                    let v = at.timestamp_millis() as f64 / 1000.0;
                    ConstGauge::new(v).encode(family.encode_family(&SourceLabel {
                        source: source.clone(),
                    })?)?;
                }
            }
            let mut family = enc.encode_descriptor(
                "bursar_price_source_last_success_age_seconds",
                "Seconds since each price source last stored a complete walk",
                None,
                MetricType::Gauge,
            )?;
            for (source, at) in &sources {
                let age = (now - *at).num_milliseconds().max(0) as f64 / 1000.0;
                ConstGauge::new(age).encode(family.encode_family(&SourceLabel {
                    source: source.clone(),
                })?)?;
            }
        }
        encode_process(&mut enc, &process::read())
    }
}

/// The standard `process_*` families (those the reading has).
fn encode_process(enc: &mut DescriptorEncoder, p: &ProcessStats) -> std::fmt::Result {
    if let Some(v) = p.resident_bytes {
        gauge(
            enc,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            v as i64,
        )?;
    }
    if let Some(v) = p.virtual_bytes {
        gauge(
            enc,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            v as i64,
        )?;
    }
    if let Some(v) = p.cpu_seconds {
        let c = ConstCounter::new(v);
        c.encode(enc.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?)?;
    }
    if let Some(v) = p.start_time_seconds {
        gauge(
            enc,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            v,
        )?;
    }
    if let Some(v) = p.threads {
        gauge(
            enc,
            "process_threads",
            "Number of OS threads in the process",
            v as i64,
        )?;
    }
    if let Some(v) = p.open_fds {
        gauge(
            enc,
            "process_open_fds",
            "Number of open file descriptors",
            v as i64,
        )?;
    }
    if let Some(v) = p.max_fds {
        gauge(
            enc,
            "process_max_fds",
            "Maximum number of open file descriptors",
            v as i64,
        )?;
    }
    Ok(())
}
