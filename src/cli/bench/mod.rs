//! `bursar bench …`: reproducible measurements recorded in BENCHMARKS.md. `BenchCommand`
//! and its dispatch live here; one file per benchmark (`catalog`, `select`, `ingest`,
//! `gpu_samples`) and what they share (`load`).
pub mod catalog;
pub mod gpu_samples;
pub mod ingest;
pub mod load;
pub mod select;

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
