//! `bursar bench …`: reproducible measurements recorded in BENCHMARKS.md. `BenchCommand`
//! and its dispatch live here; one file per benchmark (`catalog`, `select`, `ingest`,
//! `gpu_samples`, `dashboards`, `soak`) and what they share (`load`).
pub mod catalog;
pub mod dashboards;
pub mod gpu_samples;
pub mod ingest;
pub mod load;
pub mod select;
pub mod soak;

use std::path::PathBuf;

use clap::Subcommand;

use super::CliError;

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
    /// Several `bursar serve` processes on one database loaded with SelectProvider for
    /// minutes while a price poll and billing ingests run: per-minute req/s, p50, p99,
    /// errors and each replica's resident memory.
    Soak {
        /// SkyPilot v8 catalog folder to import and decide over.
        catalog: PathBuf,
        /// The database the replicas share (Postgres; its catalog is replaced).
        #[arg(long = "database-url")]
        database_url: String,
        /// The ../shared/data folder (the recorded Azure page polled, the FOCUS sample
        /// ingested).
        #[arg(long, default_value = "../shared/data")]
        shared: PathBuf,
        /// Where the replicas' config and logs go.
        #[arg(long, default_value = "/var/tmp/bursar-soak")]
        work: PathBuf,
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// How long to load, e.g. `5m`.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Requests in flight (over all replicas).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// HTTP/2 connections per replica.
        #[arg(long, default_value_t = 2)]
        connections: usize,
        /// A config file for the replicas (e.g. with `[auth]`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Bearer token sent on every call.
        #[arg(long, env = "BURSAR_TOKEN")]
        token: Option<String>,
        /// How often a billing ingest runs during the soak.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        ingest_every: std::time::Duration,
        /// The replicas' Azure price poll interval.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        poll_every: std::time::Duration,
    },
    /// GPU utilisation samples into each database: the store's batched insert against a
    /// naive one-row-per-INSERT baseline in the same run, then ReportGpuUtilization over
    /// loopback gRPC (samples/s).
    GpuSamples {
        /// Database to write into (repeat for SQLite and Postgres); its samples are deleted.
        #[arg(long = "database-url", required = true)]
        database_urls: Vec<String>,
        #[arg(long, default_value_t = 1_000_000)]
        samples: usize,
        /// Samples the naive baseline writes.
        #[arg(long, default_value_t = 100_000)]
        naive: usize,
        /// Samples per batch (per ReportGpuUtilization call; at most 10,000).
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Calls in flight over gRPC.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Samples per agent-sized push (one machine's GPUs).
        #[arg(long, default_value_t = 8)]
        push: usize,
        /// Agent pushes in flight over gRPC.
        #[arg(long, default_value_t = 256)]
        push_concurrency: usize,
    },
    /// Every panel query of every dashboard, expanded as Grafana sends it, on Postgres
    /// holding a year of billing (filled by the real ingest of generated monthly FOCUS
    /// files): p50 and max per panel over the last 30 days and 12 months.
    Dashboards {
        /// The Postgres database to fill and query (keep it to iterate: --skip-fill).
        #[arg(long = "database-url")]
        database_url: String,
        /// The ../shared/data folder (the FOCUS sample to repeat).
        #[arg(long, default_value = "../shared/data")]
        shared: PathBuf,
        /// Python with duckdb installed (the test venv).
        #[arg(long, default_value = ".venv/bin/python")]
        python: PathBuf,
        /// Where to write each month's generated input (deleted once ingested).
        #[arg(long, default_value = "/var/tmp/bursar-dashboard-bench")]
        work: PathBuf,
        /// The dashboards to run.
        #[arg(long, default_value = "dashboards")]
        dashboards: PathBuf,
        #[arg(long, default_value_t = 12)]
        months: u32,
        #[arg(long, default_value_t = 2_000_000)]
        lines_per_month: u64,
        /// The last month of billing, YYYY-MM (default: last month); the data ends 28 days
        /// into it, and the ranges end there.
        #[arg(long, value_parser = parse_month)]
        last_month: Option<chrono::NaiveDate>,
        /// Timed runs per query and range.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Query the database as an earlier run left it.
        #[arg(long)]
        skip_fill: bool,
    },
}

/// `YYYY-MM` → its first day (the report's month rule, `domain::report::Month`).
fn parse_month(s: &str) -> Result<chrono::NaiveDate, String> {
    crate::domain::report::Month::parse(s.trim())
        .map(crate::domain::report::Month::first_day)
        .map_err(|e| e.to_string())
}

/// Runs one benchmark; its error is the command's failure (exit 1).
pub async fn run(cmd: BenchCommand) -> Result<(), CliError> {
    match cmd {
        BenchCommand::Catalog {
            dir,
            database_urls,
            requests,
            concurrency,
        } => catalog::bench_catalog(&dir, &database_urls, requests, concurrency.max(1)).await,
        BenchCommand::Ingest {
            shared,
            python,
            work,
            database_urls,
            rows,
        } => ingest::bench_ingest(&shared, &python, &work, &database_urls, rows).await,
        BenchCommand::Select {
            catalog,
            server,
            requests,
            concurrency,
            connections,
            grpc_only,
        } => {
            select::bench_select(
                &catalog,
                server,
                requests,
                concurrency.max(1),
                connections,
                grpc_only,
            )
            .await
        }
        BenchCommand::Dashboards {
            database_url,
            shared,
            python,
            work,
            dashboards: dir,
            months,
            lines_per_month,
            last_month,
            runs,
            skip_fill,
        } => {
            dashboards::bench_dashboards(&dashboards::DashboardBench {
                shared,
                python,
                work,
                dashboards: dir,
                seed: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("benches")
                    .join("dashboard_seed.sql"),
                database_url,
                months: months.max(1),
                lines_per_month,
                last_month: last_month.unwrap_or_else(|| {
                    dashboards::default_last_month(chrono::Utc::now().date_naive())
                }),
                runs,
                skip_fill,
            })
            .await
        }
        BenchCommand::Soak {
            catalog,
            database_url,
            shared,
            work,
            replicas,
            duration,
            concurrency,
            connections,
            config,
            token,
            ingest_every,
            poll_every,
        } => {
            soak::bench_soak(&soak::SoakBench {
                database_url,
                catalog,
                shared,
                work,
                replicas,
                duration,
                concurrency: concurrency.max(1),
                connections,
                config,
                token,
                ingest_every,
                poll_every,
            })
            .await
        }
        BenchCommand::GpuSamples {
            database_urls,
            samples,
            naive,
            batch,
            concurrency,
            push,
            push_concurrency,
        } => {
            gpu_samples::bench_gpu_samples(
                &database_urls,
                samples,
                naive,
                batch,
                concurrency,
                push,
                push_concurrency,
            )
            .await
        }
    }
    .map_err(CliError::Failed)
}
