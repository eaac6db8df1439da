//! The command line: one binary, subcommands. Server-side commands open the database
//! (`--database-url`); client commands talk to a running server (`--server`) and print a
//! table, or JSON with `--json`.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::clouds::SOURCE_NAMES;
use crate::config::{Config, ConfigError, DEFAULT_SERVER};
use crate::display;
use crate::domain::quote::quote;
use crate::proto;
use crate::store::{Store, StoreError};

#[derive(Parser, Debug)]
#[command(
    name = "bursar",
    version,
    about = "Cost-aware placement and FinOps for AWS, GCP and Azure"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://FILE or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "BURSAR_DATABASE_URL")]
    pub database_url: Option<String>,
    /// TOML config file (default: ./bursar.toml if present).
    #[arg(long, env = "BURSAR_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Address of a running bursar server.
    #[arg(long, env = "BURSAR_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gRPC service (PricingService, PlacementService, SpendService, BudgetService,
    /// health, reflection) with the price pollers, the Cost Explorer poll, budget evaluation
    /// and alert delivery.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "BURSAR_LISTEN")]
        listen: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Poll price sources into the database.
    Poll {
        /// Poll each selected source once and exit (otherwise poll on each source's interval).
        #[arg(long)]
        once: bool,
        /// Source to poll (repeatable); default: every enabled source. Naming a source polls
        /// it even if the config leaves it disabled.
        #[arg(long = "source", value_parser = clap::builder::PossibleValuesParser::new(SOURCE_NAMES))]
        sources: Vec<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Import a SkyPilot v8 catalog directory (aws/, gcp/, azure/ vms.csv).
    ImportCatalog {
        dir: PathBuf,
        /// When the catalog was priced: DATE (midnight UTC) or RFC 3339. Default: now. A
        /// SkyPilot catalog carries no date of its own; pass this for an old copy so its
        /// offers go stale after placement.max_price_age.
        #[arg(long, value_parser = parse_observed_at)]
        observed_at: Option<chrono::DateTime<chrono::Utc>>,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List current prices from a running server.
    Prices(PricesArgs),
    /// Ingest billing exports (FOCUS, AWS CUR, GCP, Azure) from a file, directory or S3.
    Ingest(crate::cli_billing::IngestArgs),
    /// Ingest AWS Cost Explorer daily cost by service and linked account (no CUR needed).
    IngestCostExplorer(crate::cli_billing::CostExplorerArgs),
    /// Recent ingest runs on a running server, or with --quarantine RUN the rows that run
    /// could not read.
    IngestRuns {
        /// At most this many runs (or quarantined rows).
        #[arg(long, default_value_t = 50)]
        limit: i32,
        /// List this run's quarantined rows: file, line, column, reason.
        #[arg(long, value_name = "RUN")]
        quarantine: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Spend from ingested exports, from a running server.
    Spend(crate::cli_billing::SpendArgs),
    /// Ask a running server where to run a job (PlacementService.SelectProvider).
    Select(SelectArgs),
    /// Operator marks: take a provider, region or zone out of placement for a while.
    #[command(subcommand)]
    Unavailable(UnavailableCommand),
    /// Budgets on a running server: list, status, create, update, delete.
    #[command(subcommand)]
    Budgets(crate::cli_budgets::BudgetsCommand),
    /// Measurements for BENCHMARKS.md.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Show the status of each price source on a running server.
    Sources {
        #[command(flatten)]
        client: ClientArgs,
    },
}

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

#[derive(Subcommand, Debug)]
pub enum UnavailableCommand {
    /// Mark a provider, region or zone unavailable.
    Mark {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        zone: Option<String>,
        #[arg(long)]
        reason: String,
        /// How long, e.g. 30m, 2h, 1d.
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List current marks.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a mark.
    Clear {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Import a SkyPilot catalog into each (empty) database, then serve it and load
    /// ListPrices over loopback gRPC: rows/s, resident memory, req/s, p50, p99.
    Catalog {
        dir: PathBuf,
        /// Empty database to import into (repeat for SQLite and Postgres).
        #[arg(long = "database-url", required = true)]
        database_urls: Vec<String>,
        /// Requests per ListPrices scenario.
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        /// Requests in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Billing ingest rows/s for ~2M-row FOCUS CSV and CUR Parquet inputs, with DuckDB
    /// loading the same files in the same run for the ratio.
    Ingest {
        /// The ../shared/data folder (samples to repeat).
        #[arg(long, default_value = "../shared/data")]
        shared: PathBuf,
        /// Python with duckdb installed (the test venv).
        #[arg(long, default_value = ".venv/bin/python")]
        python: PathBuf,
        /// Where to write the generated inputs.
        #[arg(long, default_value = "/var/tmp/bursar-ingest-bench")]
        work: PathBuf,
        /// Empty database to ingest into (repeat for SQLite and Postgres).
        #[arg(long = "database-url", required = true)]
        database_urls: Vec<String>,
        #[arg(long, default_value_t = 2_000_000)]
        rows: u64,
    },
    /// SelectProvider: in-process decision latency (p50/p99, with a naive baseline) over a
    /// SkyPilot catalog, then a gRPC load run (req/s, p50, p99, errors).
    Select {
        /// SkyPilot v8 catalog folder to decide over.
        catalog: PathBuf,
        /// A running server to load (default: an in-process server on a temporary SQLite
        /// database holding the catalog).
        #[arg(long)]
        server: Option<String>,
        /// Requests per scenario.
        #[arg(long, default_value_t = 50_000)]
        requests: u64,
        /// Requests in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// HTTP/2 connections the requests in flight are spread over.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Skip the in-process part (e.g. to profile the server alone).
        #[arg(long)]
        grpc_only: bool,
    },
}

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

/// A failed command, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage or configuration: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The operation failed: exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Usage(e.to_string())
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        if e.is_configuration() {
            CliError::Usage(e.to_string())
        } else {
            CliError::Failed(e.to_string())
        }
    }
}

fn load_config(db: &DbArgs) -> Result<Config, CliError> {
    let mut cfg = Config::load(db.config.as_deref())?;
    if let Some(url) = &db.database_url {
        cfg.database_url = url.clone();
    }
    Ok(cfg)
}

fn init_logging(format: &str, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour only on a terminal (a log file or a journal gets plain text), and not there
    // either under NO_COLOR, which an explicit with_ansi would otherwise override.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub async fn dispatch(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve { listen, db } => {
            let mut cfg = load_config(&db)?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            init_logging(&cfg.log_format, "info");
            serve(cfg).await
        }
        Command::Migrate { db } => {
            let cfg = load_config(&db)?;
            init_logging(&cfg.log_format, "warn");
            let store = Store::open(&cfg.database_url).await?;
            crate::outln!("migrations applied ({})", store.backend());
            store.close().await;
            Ok(())
        }
        Command::Poll { once, sources, db } => {
            let cfg = load_config(&db)?;
            init_logging(&cfg.log_format, "info");
            poll(cfg, once, sources).await
        }
        Command::ImportCatalog {
            dir,
            observed_at,
            quiet,
            db,
        } => {
            let cfg = load_config(&db)?;
            init_logging(&cfg.log_format, "warn");
            crate::tasks::import::import_command(&cfg.database_url, &dir, observed_at, !quiet)
                .await
                .map_err(|e| match e {
                    crate::tasks::import::ImportError::Store(s) => CliError::from(s),
                    other => CliError::Failed(other.to_string()),
                })
        }
        Command::Prices(args) => {
            init_logging("text", "warn");
            prices(args).await
        }
        Command::Bench(BenchCommand::Catalog {
            dir,
            database_urls,
            requests,
            concurrency,
        }) => {
            init_logging("text", "warn");
            crate::bench::bench_catalog(&dir, &database_urls, requests, concurrency.max(1))
                .await
                .map_err(CliError::Failed)
        }
        Command::Bench(BenchCommand::Ingest {
            shared,
            python,
            work,
            database_urls,
            rows,
        }) => {
            init_logging("text", "warn");
            crate::bench::bench_ingest(&shared, &python, &work, &database_urls, rows)
                .await
                .map_err(CliError::Failed)
        }
        Command::Bench(BenchCommand::Select {
            catalog,
            server,
            requests,
            concurrency,
            connections,
            grpc_only,
        }) => {
            init_logging("text", "warn");
            crate::bench::bench_select(
                &catalog,
                server,
                requests,
                concurrency.max(1),
                connections,
                grpc_only,
            )
            .await
            .map_err(CliError::Failed)
        }
        Command::Ingest(args) => {
            let cfg = load_config(&args.db)?;
            init_logging(&cfg.log_format, "warn");
            crate::cli_billing::ingest(args, &cfg).await
        }
        Command::IngestCostExplorer(args) => {
            let cfg = load_config(&args.db)?;
            init_logging(&cfg.log_format, "warn");
            crate::cli_billing::ingest_cost_explorer(args, &cfg).await
        }
        Command::IngestRuns {
            limit,
            quarantine,
            client,
        } => {
            init_logging("text", "warn");
            match quarantine {
                Some(run) => crate::cli_billing::ingest_quarantine(client, &run, limit).await,
                None => crate::cli_billing::ingest_runs(client, limit).await,
            }
        }
        Command::Spend(args) => {
            init_logging("text", "warn");
            crate::cli_billing::spend(args).await
        }
        Command::Select(args) => {
            init_logging("text", "warn");
            crate::cli_placement::select(args).await
        }
        Command::Unavailable(cmd) => {
            init_logging("text", "warn");
            crate::cli_placement::unavailable(cmd).await
        }
        Command::Budgets(cmd) => {
            init_logging("text", "warn");
            crate::cli_budgets::budgets(cmd).await
        }
        Command::Sources { client } => {
            init_logging("text", "warn");
            sources(client).await
        }
    }
}

/// `--observed-at`: a date (midnight UTC) or an RFC 3339 timestamp, not in the future.
fn parse_observed_at(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let t = s.trim();
    let at = if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        d.and_time(chrono::NaiveTime::MIN).and_utc()
    } else {
        chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| format!("{t:?} is not a date (2026-05-20) or RFC 3339 timestamp"))?
            .with_timezone(&chrono::Utc)
    };
    if at > chrono::Utc::now() {
        return Err(format!("{t:?} is in the future"));
    }
    Ok(at)
}

async fn serve(cfg: Config) -> Result<(), CliError> {
    let addr: std::net::SocketAddr = cfg.listen.parse().map_err(|_| {
        CliError::Usage(format!(
            "--listen {} is not an address like 127.0.0.1:50051",
            quote(&cfg.listen)
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Failed(format!("cannot listen on {addr}: {e}")))?;
    crate::server::run(cfg, listener, shutdown_signal())
        .await
        .map_err(|e| {
            if e.is_configuration() {
                CliError::Usage(e.to_string())
            } else {
                CliError::Failed(e.to_string())
            }
        })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn poll(mut cfg: Config, once: bool, named: Vec<String>) -> Result<(), CliError> {
    for n in &named {
        if let Some(s) = cfg.sources.get_mut(n) {
            s.enabled = true;
        }
    }
    if !named.is_empty() {
        for n in SOURCE_NAMES {
            if !named.iter().any(|x| x == n)
                && let Some(s) = cfg.sources.get_mut(n)
            {
                s.enabled = false;
            }
        }
    }
    cfg.validate()?;
    let sources = crate::wiring::sources_from_config(&cfg.sources)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if sources.is_empty() {
        return Err(CliError::Usage(
            "no price source is enabled: name one with --source or enable it in the config".into(),
        ));
    }
    let store = Store::open(&cfg.database_url).await?;
    if once {
        let mut failed = Vec::new();
        for (s, _) in &sources {
            match crate::tasks::poll_once(&store, s.as_ref()).await {
                Ok(r) => crate::outln!(
                    "{}: {} offers ({} changed), {} spot bands, {} rejected, {} pages",
                    r.source,
                    r.offers,
                    r.observations,
                    r.bands,
                    r.rejected,
                    r.pages
                ),
                Err(e) => {
                    crate::outln!("{}: FAILED: {e}", s.name());
                    failed.push(s.name().to_string());
                }
            }
        }
        store.close().await;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(CliError::Failed(format!(
                "sources failed: {}",
                failed.join(", ")
            )))
        }
    } else {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let catalog = crate::domain::catalog::CatalogHandle::default();
        let mut loops = Vec::new();
        for (s, interval) in sources {
            loops.push(tokio::spawn(crate::tasks::poller::source_loop(
                store.clone(),
                catalog.clone(),
                s,
                interval,
                rx.clone(),
            )));
        }
        shutdown_signal().await;
        let _ = tx.send(true);
        for l in loops {
            let _ = l.await;
        }
        store.close().await;
        Ok(())
    }
}

/// The URI of `--server`: `http://` is assumed when no scheme is given, so
/// `127.0.0.1:50051` means `http://127.0.0.1:50051`.
pub(crate) fn server_uri(server: &str) -> String {
    let s = server.trim();
    if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    }
}

/// The channel every client command talks to the server through.
pub(crate) async fn channel(server: &str) -> Result<tonic::transport::Channel, CliError> {
    let endpoint = tonic::transport::Endpoint::from_shared(server_uri(server))
        .map_err(|e| CliError::Usage(format!("--server {}: {e}", quote(server))))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    endpoint
        .connect()
        .await
        .map_err(|e| CliError::Failed(format!("cannot reach bursar at {server}: {e}")))
}

async fn connect(
    server: &str,
) -> Result<proto::pricing_service_client::PricingServiceClient<tonic::transport::Channel>, CliError>
{
    Ok(proto::pricing_service_client::PricingServiceClient::new(
        channel(server).await?,
    ))
}

pub(crate) fn status_error(s: tonic::Status) -> CliError {
    match s.code() {
        tonic::Code::InvalidArgument => CliError::Usage(s.message().to_string()),
        _ => CliError::Failed(format!("{:?}: {}", s.code(), s.message())),
    }
}

async fn prices(a: PricesArgs) -> Result<(), CliError> {
    let provider = match a.provider.as_deref() {
        None => proto::Provider::Unspecified,
        Some(p) => match p
            .parse::<crate::domain::Provider>()
            .map_err(|e| CliError::Usage(format!("--provider: {e}")))?
        {
            crate::domain::Provider::Aws => proto::Provider::Aws,
            crate::domain::Provider::Gcp => proto::Provider::Gcp,
            crate::domain::Provider::Azure => proto::Provider::Azure,
        },
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
    let mut client = connect(&a.client.server).await?;
    let resp = client
        .list_prices(proto::ListPricesRequest {
            provider: provider as i32,
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
        crate::outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
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

async fn sources(c: ClientArgs) -> Result<(), CliError> {
    let mut client = connect(&c.server).await?;
    let resp = client
        .get_source_status(proto::GetSourceStatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let ts = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
            .map(|t| t.to_rfc3339())
    };
    if c.json {
        let rows: Vec<_> = resp
            .sources
            .iter()
            .map(|s| {
                json!({
                    "name": s.name, "enabled": s.enabled, "state": s.state,
                    "last_attempt_at": ts(&s.last_attempt_at),
                    "last_success_at": ts(&s.last_success_at),
                    "last_error": s.last_error, "last_error_at": ts(&s.last_error_at),
                    "rows": s.rows,
                })
            })
            .collect();
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "sources": rows })).unwrap_or_default()
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = resp
        .sources
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                if s.enabled { "yes" } else { "no" }.to_string(),
                s.state.clone(),
                s.last_success_at
                    .as_ref()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                s.rows.to_string(),
                s.last_error.chars().take(80).collect(),
            ]
        })
        .collect();
    crate::out!(
        "{}",
        display::list(
            &[
                "SOURCE",
                "ENABLED",
                "STATE",
                "LAST SUCCESS",
                "ROWS",
                "LAST ERROR"
            ],
            &rows,
            "price sources"
        )
    );
    Ok(())
}

pub(crate) fn provider_name(v: i32) -> &'static str {
    match proto::Provider::try_from(v) {
        Ok(proto::Provider::Aws) => "aws",
        Ok(proto::Provider::Gcp) => "gcp",
        Ok(proto::Provider::Azure) => "azure",
        _ => "?",
    }
}

pub(crate) fn market_name(v: i32) -> &'static str {
    match proto::Market::try_from(v) {
        Ok(proto::Market::OnDemand) => "on_demand",
        Ok(proto::Market::Spot) => "spot",
        _ => "?",
    }
}

pub(crate) fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// A plain left-aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i].saturating_sub(c.chars().count())));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_a_scheme_is_http() {
        assert_eq!(server_uri("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(server_uri(" localhost:1 "), "http://localhost:1");
        assert_eq!(
            server_uri("http://127.0.0.1:50051"),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            server_uri("https://bursar.example.com"),
            "https://bursar.example.com"
        );
    }
}
