//! The command line: one binary, one file per subcommand. This file holds only the
//! top-level parser (`Cli`, `Command`), `dispatch` (configuration and logging, then the
//! subcommand) and `CliError` with its exit code. Commands that open the database
//! themselves take `setup::DbArgs`; client commands talk to a running server through
//! `client` (`--server`, `--json`) and print tables made by `display`, all through `out`'s
//! `outln!`. A subcommand file uses those shared helpers; they never use a subcommand.
pub mod agent;
pub mod bench;
pub mod budgets;
pub mod client;
pub mod display;
pub mod fleet;
pub mod health;
pub mod import_catalog;
pub mod ingest;
pub mod ingest_cost_explorer;
pub mod ingest_runs;
pub mod migrate;
pub mod out;
pub mod poll;
pub mod prices;
pub mod report;
pub mod select;
pub mod serve;
pub mod setup;
pub mod sources;
pub mod spend;
pub mod transport;
pub mod unavailable;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::store::StoreError;
use setup::{DbArgs, init_logging, load_config};

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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gRPC service (PricingService, PlacementService, SpendService, BudgetService,
    /// FleetService, health, reflection) with the price pollers, the Cost Explorer poll, budget evaluation,
    /// alert delivery and the monthly report email.
    Serve(serve::ServeArgs),
    /// Apply database migrations and exit.
    Migrate(migrate::MigrateArgs),
    /// Poll price sources into the database.
    Poll(poll::PollArgs),
    /// Import a SkyPilot v8 catalog directory (aws/, gcp/, azure/ vms.csv).
    ImportCatalog(import_catalog::ImportCatalogArgs),
    /// List current prices from a running server.
    Prices(prices::PricesArgs),
    /// Ingest billing exports (FOCUS, AWS CUR, GCP, Azure) from a file, directory or S3.
    Ingest(ingest::IngestArgs),
    /// Ingest AWS Cost Explorer daily cost by service and linked account (no CUR needed).
    IngestCostExplorer(ingest_cost_explorer::CostExplorerArgs),
    /// Recent ingest runs on a running server, or with --quarantine RUN the rows that run
    /// could not read.
    IngestRuns(ingest_runs::IngestRunsArgs),
    /// Spend from ingested exports, from a running server.
    Spend(spend::SpendArgs),
    /// Write the monthly report page (totals, charts, budgets, savings, idle GPUs, top
    /// movers) for a month as one self-contained HTML file.
    Report(report::ReportArgs),
    /// Ask a running server where to run a job (PlacementService.SelectProvider).
    Select(select::SelectArgs),
    /// Operator marks: take a provider, region or zone out of placement for a while.
    #[command(subcommand)]
    Unavailable(unavailable::UnavailableCommand),
    /// Budgets on a running server: list, status, create, update, delete.
    #[command(subcommand)]
    Budgets(budgets::BudgetsCommand),
    /// The GPU fleet on a running server: instances (idle state and evidence), actions (the
    /// audit log), keep (snooze one machine), savings (the ledger).
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// Measurements for BENCHMARKS.md.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Show the status of each price source on a running server.
    Sources(sources::SourcesArgs),
    /// Ask a running server's gRPC health service (grpc-health-probe style): exit 0 when
    /// SERVING, 1 otherwise. For container health checks and probes.
    Health(health::HealthArgs),
    /// The node agent for GPU machines: reads each GPU's utilisation, memory and power
    /// through NVML and pushes them to FleetService/ReportGpuUtilization every interval.
    Agent(agent::AgentArgs),
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

/// Runs a parsed command line. Commands that open the database load the configuration
/// first and log in its format (`info` by default for the long-running ones, `warn` for
/// the rest); client commands and benchmarks log text at `warn`.
pub async fn dispatch(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(a) => {
            let cfg = configured(&a.db, "info")?;
            serve::run(a, cfg).await
        }
        Command::Migrate(a) => migrate::run(configured(&a.db, "warn")?).await,
        Command::Poll(a) => {
            let cfg = configured(&a.db, "info")?;
            poll::run(a, cfg).await
        }
        Command::ImportCatalog(a) => {
            let cfg = configured(&a.db, "warn")?;
            import_catalog::run(a, &cfg).await
        }
        Command::Ingest(a) => {
            let cfg = configured(&a.db, "warn")?;
            ingest::run(a, &cfg).await
        }
        Command::IngestCostExplorer(a) => {
            let cfg = configured(&a.db, "warn")?;
            ingest_cost_explorer::run(a, &cfg).await
        }
        Command::Report(a) => {
            let cfg = configured(&a.db, "warn")?;
            report::run(a, &cfg).await
        }
        Command::Prices(a) => {
            init_logging("text", "warn");
            prices::run(a).await
        }
        Command::IngestRuns(a) => {
            init_logging("text", "warn");
            ingest_runs::run(a).await
        }
        Command::Spend(a) => {
            init_logging("text", "warn");
            spend::run(a).await
        }
        Command::Select(a) => {
            init_logging("text", "warn");
            select::run(a).await
        }
        Command::Unavailable(cmd) => {
            init_logging("text", "warn");
            unavailable::run(cmd).await
        }
        Command::Budgets(cmd) => {
            init_logging("text", "warn");
            budgets::run(cmd).await
        }
        Command::Fleet(cmd) => {
            init_logging("text", "warn");
            fleet::run(cmd).await
        }
        Command::Bench(cmd) => {
            init_logging("text", "warn");
            bench::run(cmd).await
        }
        Command::Sources(a) => {
            init_logging("text", "warn");
            sources::run(a).await
        }
        Command::Health(a) => {
            init_logging("text", "warn");
            health::run(a).await
        }
        Command::Agent(a) => {
            init_logging("text", "info");
            agent::run(a).await
        }
    }
}

/// A command that opens the database itself: its configuration, then logging in the
/// configured format.
fn configured(db: &DbArgs, default_level: &str) -> Result<Config, CliError> {
    let cfg = load_config(db)?;
    init_logging(&cfg.log_format, default_level);
    Ok(cfg)
}
