//! gRPC glue: `run` wires the store, the in-memory catalog, the polling loops, the tonic
//! server (bursar services + grpc.health.v1 + reflection, measured by `rpc_metrics`) and the
//! HTTP port (`http`: `/metrics`, and `report`'s `/report`) and shuts them down in order.
//! Every call passes `auth` (tokens and roles from `roles`) and `limits`; with `[tls]` both
//! ports speak TLS (`tls`, `http_tls`); SIGHUP reloads the tokens (`reload`).
//! API boundary: handlers only validate (`convert`), call the domain or store, and map
//! errors (`errors`); proto types do not leave this module.
pub mod auth;
pub mod budgets;
pub mod coalesce;
pub mod convert;
pub mod errors;
pub mod fleet;
pub mod http;
pub mod http_auth;
pub mod http_tls;
pub mod limits;
pub mod placement;
pub mod pricing;
pub mod reload;
pub mod report;
pub mod roles;
pub mod rpc_metrics;
pub mod singletons;
pub mod spend;
pub mod tls;
pub mod utilization;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::Config;
use crate::domain::catalog::CatalogHandle;
use crate::metrics;
use crate::proto;
use crate::store::{Store, StoreError};
use crate::tasks::budgets::BudgetEngine;
use crate::tasks::{self, poller};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("seed snapshot: {0}")]
    Seed(String),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error("decision log thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot listen on metrics_listen {addr}: {error}")]
    Bind {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
}

impl RunError {
    pub fn is_configuration(&self) -> bool {
        match self {
            RunError::Store(e) => e.is_configuration(),
            RunError::Config(_) => true,
            _ => false,
        }
    }
}

/// Resolves `timeout` after `draining` turns true; never if it never does.
async fn drain_deadline(mut draining: watch::Receiver<bool>, timeout: std::time::Duration) {
    if draining.wait_for(|d| *d).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(timeout).await;
}

/// Runs the service on `listener` until `shutdown` resolves: opens and migrates the
/// database, seeds it when empty, loads the catalog, stores the config file's budgets,
/// starts one polling loop per enabled source, the budget evaluation loop and the alert
/// outbox, and serves gRPC, and `/metrics` on `metrics_listen` when it is set. On shutdown
/// health turns NOT_SERVING first and the outbox stops taking work (giving back the rows it
/// claimed but did not start); calls in flight drain, for at most `drain_timeout`; then the
/// loops and the HTTP port stop and `run` waits for them. On SQLite it holds the file's
/// single-node lock (`store::node_lock`) until it returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with_http(config, listener, None, shutdown).await
}

/// `run`, with the HTTP port on `http` when given (tests bind port 0); otherwise it binds
/// `metrics_listen`, or has none when that is empty.
pub async fn run_with_http(
    config: Config,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let http_addr = config
        .metrics_addr()
        .map_err(|e| RunError::Config(e.to_string()))?;
    let model = config
        .placement
        .cost_model()
        .map_err(|e| RunError::Config(e.to_string()))?;
    config
        .validate_budgets()
        .map_err(|e| RunError::Config(e.to_string()))?;
    let idle_policy = config
        .idle_gpu
        .policy()
        .map_err(|e| RunError::Config(e.to_string()))?;
    let notifiers = crate::notify::notifiers_from_config(&config.alerts)
        .map_err(|e| RunError::Config(e.to_string()))?;
    // SQLite mode is single-node: held until `run` returns (store::node_lock).
    let _node_lock = crate::store::node_lock::lock_single_node(&config.database_url)?;
    let store = Store::open(&config.database_url)
        .await?
        .with_ingest_heartbeat(config.ingest.heartbeat);
    tracing::info!(backend = store.backend(), "database ready");
    // The Grafana dashboards' read-only role (Postgres): a failure leaves it as it was.
    if let Some(password) = &config.dashboards.reader_password {
        match store.set_reader_password(password).await {
            Ok(true) => tracing::info!("bursar_reader can log in"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not set the password of bursar_reader"),
        }
    }
    // Ingest runs left `running` by a process that is gone end as interrupted.
    if let Err(e) = store.interrupt_expired_runs(chrono::Utc::now()).await {
        tracing::warn!(error = %e, "could not check for interrupted ingest runs");
    }
    // Budgets as code: the file wins for the budgets it names.
    budgets::apply_config_budgets(&store, &config.budgets).await?;
    // Singleton work runs on the leader only, writing through the fenced store.
    let leadership = tasks::leader::Leadership::new(config.leader.holder(), config.leader.lease);
    let fenced = store
        .fenced(
            &config.database_url,
            4,
            leadership.fence(),
            config.leader.lease,
        )
        .await?;
    let engine = Arc::new(
        BudgetEngine::new(
            store.clone(),
            config.alerts.clone(),
            config.budget_evaluation.trailing_days,
        )
        .with_leadership(fenced.clone(), leadership.clone()),
    );
    // The budget gate's snapshot, refreshed by every evaluation.
    let budget_snapshots = engine.snapshots();
    if config.seed_when_empty {
        poller::seed_if_empty(&store)
            .await
            .map_err(|e| RunError::Seed(e.to_string()))?;
    }
    let catalog = CatalogHandle::default();
    let n = poller::refresh_catalog(&store, &catalog).await?;
    tracing::info!(offers = n, "catalog loaded");
    let http = match (http, http_addr) {
        (Some(l), _) => Some(l),
        (None, Some(addr)) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|error| RunError::Bind { addr, error })?,
        ),
        (None, None) => None,
    };
    // Tokens and TLS (`auth`, `tls`): open without tokens only when every port is loopback.
    let loopback_only = listener.local_addr().is_ok_and(|a| a.ip().is_loopback())
        && http
            .as_ref()
            .is_none_or(|l| l.local_addr().is_ok_and(|a| a.ip().is_loopback()));
    let auth = auth::AuthHandle::new(&config.auth, loopback_only)
        .map_err(|e| RunError::Config(e.to_string()))?;
    let tls = tls::load(&config.tls).map_err(RunError::Config)?;
    // Price sources' ages start from what the store knows (earlier runs, other replicas).
    if let Ok(statuses) = store.source_statuses().await {
        for s in statuses {
            if let Some(at) = s.last_success_at {
                metrics::global().price_source_seen(&s.name, at);
            }
        }
    }
    // RPCs are measured only when there is a page to show them.
    let rpc = http
        .is_some()
        .then(|| Arc::new(metrics::RpcMetrics::new(rpc_metrics::served_methods())));

    let sources = crate::wiring::sources_from_config(&config.sources)
        .await
        .map_err(|e| RunError::Config(e.to_string()))?;
    let source_flags = crate::wiring::enabled_sources(&config.sources);

    let (stop_tx, stop_rx) = watch::channel(false);
    // True from the shutdown signal on, while in-flight calls drain (before `stop_rx`).
    let (draining_tx, draining_rx) = watch::channel(false);
    let mut loops = Vec::new();
    // Other processes' writes wake the reload loops at once (Postgres LISTEN/NOTIFY).
    let changes = tasks::changes::Changes::default();
    loops.push(tokio::spawn(tasks::changes::run_listener(
        store.clone(),
        changes.clone(),
        stop_rx.clone(),
    )));
    let log = tasks::decisions::DecisionLog::new(
        config.placement.decision_log_queue,
        config.placement.decision_log_batch,
    );
    let mut state = placement::PlacementState::new(model, log.clone());
    // SelectProvider's budget gate reads the snapshot every evaluation swaps in.
    state.budgets = budget_snapshots;
    let state = Arc::new(state);
    placement::refresh_state(&store, &state, &source_flags).await;
    {
        let finished = log
            .spawn_writer_thread(
                config.database_url.clone(),
                store.clone(),
                config.placement.decision_log_nice,
                config.placement.decision_log_flush,
                stop_rx.clone(),
            )
            .map_err(RunError::Thread)?;
        loops.push(tokio::spawn(async move {
            let _ = finished.await;
        }));
    }
    {
        let (store, state, flags, every, mut stop) = (
            store.clone(),
            state.clone(),
            source_flags.clone(),
            config.catalog_refresh,
            stop_rx.clone(),
        );
        let mut wake = changes.wake(crate::store::changes::ChangeKind::Marks);
        loops.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = wake.changed() => {}
                    _ = stop.changed() => return,
                }
                placement::refresh_state(&store, &state, &flags).await;
            }
        }));
    }
    loops.push(tokio::spawn(tasks::poller::refresh_loop(
        store.clone(),
        catalog.clone(),
        config.catalog_refresh,
        changes.wake(crate::store::changes::ChangeKind::Catalog),
        stop_rx.clone(),
    )));
    loops.push(tokio::spawn(tasks::budgets::run_evaluations(
        engine.clone(),
        config.budget_evaluation.every,
        config.budget_evaluation.poll,
        changes.wake(crate::store::changes::ChangeKind::Spend),
        stop_rx.clone(),
    )));
    // Idle-GPU enforcement: the inventory, utilisation and policy loops.
    let fleet_engine = if config.idle_gpu.enabled {
        let fleets = crate::wiring::fleets_from_config(&config.fleet)
            .await
            .map_err(|e| RunError::Config(e.to_string()))?;
        let e = Arc::new(
            tasks::fleet::FleetEngine::new(
                fenced.clone(),
                fleets,
                idle_policy,
                config.idle_gpu.clone(),
                catalog.clone(),
            )
            .with_leadership(leadership.clone()),
        );
        tracing::info!(
            mode = config.idle_gpu.mode.as_str(),
            clouds = config.fleet.aws.is_some() as u8
                + config.fleet.gcp.is_some() as u8
                + config.fleet.azure.is_some() as u8,
            "idle-GPU enforcement enabled"
        );
        Some(e)
    } else {
        None
    };
    // The leader election, and the singleton work it gates (`singletons`). The outbox also
    // stops at the shutdown signal (`draining`) and gives back what it claimed but did not
    // start, so another replica sends it while this one drains.
    let singleton_work = singletons::Singletons {
        store: fenced.clone(),
        catalog: catalog.clone(),
        sources,
        config: config.clone(),
        budgets: engine.clone(),
        fleet: fleet_engine.clone(),
        notifiers,
        leadership: leadership.clone(),
        draining: draining_rx.clone(),
    };
    loops.push(tokio::spawn(tasks::singleton::run(
        leadership.clone(),
        stop_rx.clone(),
        move |stop| singleton_work.start(stop),
    )));
    loops.push(tokio::spawn(tasks::leader::run_elector(
        store.clone(),
        leadership.clone(),
        stop_rx.clone(),
    )));
    if let Some(l) = http {
        let exporter = Arc::new(metrics::Exporter::new(
            metrics::global(),
            rpc.as_deref(),
            catalog.clone(),
        ));
        // The HTTP port's pages: `/metrics`, `/report`; another page is one more `.merge`.
        let app = http::routes(exporter).merge(report::routes(
            store.clone(),
            tasks::report_page::ReportSettings::from_config(&config),
        ));
        let app = http_auth::guard(app, auth.clone());
        loops.push(match &tls {
            Some(t) => tokio::spawn(http_tls::serve(l, app, t.http.clone(), stop_rx.clone())),
            None => tokio::spawn(http::serve(l, app, stop_rx.clone())),
        });
    }
    if let Some(path) = config.source_file.clone() {
        loops.push(tokio::spawn(reload::on_sighup(
            path,
            auth.clone(),
            stop_rx.clone(),
        )));
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<proto::pricing_service_server::PricingServiceServer<pricing::PricingApi>>()
        .await;
    health_reporter
        .set_serving::<proto::placement_service_server::PlacementServiceServer<placement::PlacementApi>>()
        .await;
    health_reporter
        .set_serving::<proto::spend_service_server::SpendServiceServer<spend::SpendApi>>()
        .await;
    health_reporter
        .set_serving::<proto::budget_service_server::BudgetServiceServer<budgets::BudgetApi>>()
        .await;
    health_reporter
        .set_serving::<proto::fleet_service_server::FleetServiceServer<fleet::FleetApi>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    // Reflection v1, and v1alpha for the clients that only speak it (older grpcurl, grpcui,
    // Evans).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| RunError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| RunError::Reflection(e.to_string()))?;

    let pricing = pricing::PricingApi {
        store: store.clone(),
        catalog: catalog.clone(),
        sources: source_flags,
        state: state.clone(),
    };

    let placement_api = placement::PlacementApi {
        store: store.clone(),
        catalog: catalog.clone(),
        state: state.clone(),
    };

    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "serving gRPC"),
        Err(e) => tracing::info!(error = %e, "serving gRPC (local address unknown)"),
    }
    let reporter = health_reporter.clone();
    let signal = async move {
        shutdown.await;
        let _ = draining_tx.send(true);
        tracing::info!("shutting down: health NOT_SERVING");
        reporter
            .set_not_serving::<proto::pricing_service_server::PricingServiceServer<pricing::PricingApi>>()
            .await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        reporter
            .set_not_serving::<proto::spend_service_server::SpendServiceServer<spend::SpendApi>>()
            .await;
        reporter
            .set_not_serving::<proto::placement_service_server::PlacementServiceServer<placement::PlacementApi>>()
            .await;
        reporter
            .set_not_serving::<proto::budget_service_server::BudgetServiceServer<budgets::BudgetApi>>()
            .await;
        reporter
            .set_not_serving::<proto::fleet_service_server::FleetServiceServer<fleet::FleetApi>>()
            .await;
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &tls {
        builder = builder
            .tls_config(t.grpc.clone())
            .map_err(|e| RunError::Config(format!("tls: {e}")))?;
        tracing::info!(mutual = t.mutual, "gRPC and HTTP over TLS");
    }
    let max = config.limits.max_message_bytes;
    let served = builder
        .layer(rpc_metrics::RpcMetricsLayer::new(rpc))
        .layer(auth::AuthLayer::new(auth.clone()))
        .layer(limits::LimitsLayer::new(&config.limits))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            proto::pricing_service_server::PricingServiceServer::new(pricing)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            proto::placement_service_server::PlacementServiceServer::new(placement_api)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            proto::spend_service_server::SpendServiceServer::new(spend::SpendApi {
                store: store.clone(),
            })
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        )
        .add_service(
            proto::budget_service_server::BudgetServiceServer::new(budgets::BudgetApi {
                store: store.clone(),
                engine: engine.clone(),
            })
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        )
        .add_service(
            proto::fleet_service_server::FleetServiceServer::new(fleet::FleetApi {
                store: store.clone(),
                engine: fleet_engine.clone(),
                samples: utilization::SampleWriter::spawn(store.clone()),
            })
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        )
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listener).map(|s| {
                s.map(|s| {
                    // Without TCP_NODELAY small gRPC responses wait for delayed ACKs (~40 ms).
                    let _ = s.set_nodelay(true);
                    // Answers finished together leave in one write (see `coalesce`).
                    coalesce::CoalescingIo::new(s)
                })
            }),
            signal,
        );
    // In-flight calls drain for at most `drain_timeout` after the signal: an open stream (a
    // client's health Watch) must not hold the process past its grace period.
    let served = tokio::select! {
        r = served => r,
        _ = drain_deadline(draining_rx.clone(), config.drain_timeout) => {
            tracing::warn!(drain_timeout = ?config.drain_timeout, "calls still in flight at the drain timeout were closed");
            Ok(())
        }
    };

    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    // The singleton loops have stopped: a follower may take over at once.
    tasks::leader::release(&store, &leadership).await;
    fenced.close().await;
    if state.log.dropped() > 0 {
        tracing::warn!(
            dropped = state.log.dropped(),
            "decision log rows dropped (queue full or write failed)"
        );
    }
    store.close().await;
    served?;
    Ok(())
}
