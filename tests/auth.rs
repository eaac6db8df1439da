//! Bearer tokens end to end: every role against a representative method of every service
//! (allowed → the handler's own answer, another role → PERMISSION_DENIED, no or a wrong
//! token → UNAUTHENTICATED) on both backends; a refused write stores nothing; health and
//! reflection stay open; `/report` needs `finance` and `/metrics` is open unless configured
//! otherwise; the loopback-only quick start runs open while a wider listener without tokens
//! refuses to start; and on a real `bursar serve` process, SIGHUP rotates the tokens with no
//! restart, a bad config keeps the old ones, and no token ever reaches the logs.
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use bursar::config::Config;
use bursar::config::auth::TokenConfig;
use bursar::domain::auth::sha256_hex;
use bursar::proto;
use common::{TestDb, TestServer};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// (name, token, roles).
const TOKENS: &[(&str, &str, &[&str])] = &[
    ("placer", "tok-placement-7f3a", &["placement"]),
    ("finance-bot", "tok-finance-91cc", &["finance"]),
    ("gpu-agent", "tok-fleet-0b2d", &["fleet"]),
    ("ops", "tok-admin-5e11", &["admin"]),
    (
        "ops-reader",
        "tok-admin-finance-aa01",
        &["admin", "finance"],
    ),
];

fn tokens(list: &[(&str, &str, &[&str])]) -> Vec<TokenConfig> {
    list.iter()
        .map(|(n, t, r)| TokenConfig {
            name: n.to_string(),
            sha256: sha256_hex(t),
            roles: r.iter().map(|s| s.to_string()).collect(),
        })
        .collect()
}

fn auth_config(db: &TestDb) -> Config {
    let mut c = common::test_config(db);
    c.auth.tokens = tokens(TOKENS);
    c
}

/// Adds `authorization` (the whole header value) when given.
fn with_auth(
    header: Option<String>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    let v = header.map(|h| MetadataValue::try_from(h).unwrap());
    move |mut r: Request<()>| {
        if let Some(v) = &v {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn budget(name: &str) -> proto::Budget {
    proto::Budget {
        name: name.into(),
        amount: Some(proto::Money {
            amount: "100".into(),
            currency: "USD".into(),
        }),
        ..Default::default()
    }
}

/// (service, method, role, the code the handler answers this request with).
const METHODS: &[(&str, &str, &str, Code)] = &[
    ("PricingService", "ListPrices", "placement", Code::Ok),
    (
        "PlacementService",
        "SelectProvider",
        "placement",
        Code::InvalidArgument,
    ),
    ("PlacementService", "MarkUnavailable", "admin", Code::Ok),
    ("SpendService", "GetSpend", "finance", Code::InvalidArgument),
    ("BudgetService", "ListBudgets", "finance", Code::Ok),
    ("BudgetService", "CreateBudget", "admin", Code::Ok),
    ("FleetService", "ListInstances", "finance", Code::Ok),
    ("FleetService", "GetSavings", "finance", Code::Ok),
    ("FleetService", "Keep", "admin", Code::NotFound),
    ("FleetService", "ReportGpuUtilization", "fleet", Code::Ok),
];

static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Calls `method` with a small request; `Ok` or the status's code.
async fn call(ch: Channel, method: &str, header: Option<String>) -> Result<(), Status> {
    use proto::budget_service_client::BudgetServiceClient as B;
    use proto::fleet_service_client::FleetServiceClient as F;
    use proto::placement_service_client::PlacementServiceClient as P;
    use proto::pricing_service_client::PricingServiceClient as Pr;
    use proto::spend_service_client::SpendServiceClient as S;
    let i = with_auth(header);
    match method {
        "ListPrices" => Pr::with_interceptor(ch, i)
            .list_prices(proto::ListPricesRequest {
                page_size: 1,
                ..Default::default()
            })
            .await
            .map(drop),
        "GetSourceStatus" => Pr::with_interceptor(ch, i)
            .get_source_status(proto::GetSourceStatusRequest {})
            .await
            .map(drop),
        "SelectProvider" => P::with_interceptor(ch, i)
            .select_provider(proto::SelectProviderRequest::default())
            .await
            .map(drop),
        "MarkUnavailable" => P::with_interceptor(ch, i)
            .mark_unavailable(proto::MarkUnavailableRequest {
                provider: proto::Provider::Aws as i32,
                region: "us-east-1".into(),
                reason: "auth test".into(),
                ttl_seconds: 60,
                ..Default::default()
            })
            .await
            .map(drop),
        "GetSpend" => S::with_interceptor(ch, i)
            .get_spend(proto::GetSpendRequest::default())
            .await
            .map(drop),
        "ListBudgets" => B::with_interceptor(ch, i)
            .list_budgets(proto::ListBudgetsRequest::default())
            .await
            .map(drop),
        "CreateBudget" => B::with_interceptor(ch, i)
            .create_budget(proto::CreateBudgetRequest {
                budget: Some(budget(&format!(
                    "auth-test-{}",
                    CREATED.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                ))),
            })
            .await
            .map(drop),
        "ListInstances" => F::with_interceptor(ch, i)
            .list_instances(proto::ListInstancesRequest::default())
            .await
            .map(drop),
        "GetSavings" => F::with_interceptor(ch, i)
            .get_savings(proto::GetSavingsRequest::default())
            .await
            .map(drop),
        "Keep" => F::with_interceptor(ch, i)
            .keep(proto::KeepRequest {
                instance: "i-0000000000nope".into(),
                r#for: "1h".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ReportGpuUtilization" => F::with_interceptor(ch, i)
            .report_gpu_utilization(proto::ReportGpuUtilizationRequest { samples: vec![] })
            .await
            .map(drop),
        other => panic!("no call for {other}"),
    }
}

fn code(r: &Result<(), Status>) -> Code {
    match r {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_service_on_both_backends() {
    for db in common::both_backends().await {
        let server = TestServer::start(auth_config(&db)).await;
        let ch = server.channel().await;
        for (service, method, role, allowed) in METHODS {
            let what = format!("{}: {service}/{method}", db.backend);
            // No token, an unknown token, another scheme, an empty bearer.
            for header in [
                None,
                bearer("tok-not-configured"),
                Some("Basic dG9rLWFkbWluLTVlMTE=".to_string()),
                Some("Bearer ".to_string()),
            ] {
                let r = call(ch.clone(), method, header.clone()).await;
                let s = r.expect_err(&what);
                assert_eq!(
                    s.code(),
                    Code::Unauthenticated,
                    "{what} with {header:?}: {s:?}"
                );
                assert!(!s.message().contains("tok-"), "{what}: {}", s.message());
            }
            for (name, token, roles) in TOKENS {
                let r = call(ch.clone(), method, bearer(token)).await;
                if roles.contains(role) {
                    assert_eq!(code(&r), *allowed, "{what} as {name}: {r:?}");
                } else {
                    let s = r.expect_err(&what);
                    assert_eq!(s.code(), Code::PermissionDenied, "{what} as {name}: {s:?}");
                    assert!(
                        s.message().contains(role) && s.message().contains(name),
                        "{what}: {}",
                        s.message()
                    );
                    assert!(!s.message().contains(token), "{what}: {}", s.message());
                }
            }
        }
        // Only the two admin tokens' CreateBudget calls reached the store; the other roles'
        // (and the unauthenticated ones) stored nothing.
        let listed = proto::budget_service_client::BudgetServiceClient::with_interceptor(
            ch.clone(),
            with_auth(bearer("tok-finance-91cc")),
        )
        .list_budgets(proto::ListBudgetsRequest::default())
        .await
        .unwrap()
        .into_inner();
        let names: Vec<&str> = listed.budgets.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names.len(), 2, "{}: {names:?}", db.backend);
        assert!(
            names.iter().all(|n| n.starts_with("auth-test-")),
            "{names:?}"
        );
        // The untested methods of the table answer their role too.
        assert!(
            call(ch.clone(), "GetSourceStatus", bearer("tok-placement-7f3a"))
                .await
                .is_ok()
        );
        assert_eq!(
            code(&call(ch.clone(), "GetSourceStatus", bearer("tok-fleet-0b2d")).await),
            Code::PermissionDenied
        );
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_stay_open_and_an_unknown_path_tells_nothing() {
    let db = common::fresh_sqlite();
    let server = TestServer::start(auth_config(&db)).await;
    let ch = server.channel().await;
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let s = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: "bursar.v1.PlacementService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.status, 1, "SERVING without a token");
    {
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let req = tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(ch.clone())
            .server_reflection_info(futures::stream::iter(vec![req]))
            .await
            .expect("reflection open")
            .into_inner();
        let msg = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
            panic!("expected a service list");
        };
        assert!(
            list.service
                .iter()
                .any(|s| s.name == "bursar.v1.BudgetService")
        );
    }
    // A path the server does not have: UNAUTHENTICATED without a token, UNIMPLEMENTED with
    // one.
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    for (header, want) in [
        (None, Code::Unauthenticated),
        (bearer("tok-fleet-0b2d"), Code::Unimplemented),
    ] {
        grpc.ready().await.unwrap();
        let mut req = Request::new(proto::ListBudgetsRequest::default());
        if let Some(h) = header {
            req.metadata_mut()
                .insert("authorization", MetadataValue::try_from(h).unwrap());
        }
        let r: Result<tonic::Response<proto::ListBudgetsResponse>, Status> = grpc
            .unary(
                req,
                http::uri::PathAndQuery::from_static("/bursar.v1.Nothing/Here"),
                tonic_prost::ProstCodec::default(),
            )
            .await;
        assert_eq!(r.unwrap_err().code(), want);
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_report_needs_finance_and_metrics_is_open_unless_configured() {
    let db = common::fresh_sqlite();
    let server = TestServer::start_with_http(auth_config(&db)).await;
    let base = server.http_url.clone().unwrap();
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut r = http.get(format!("{base}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = get("/report?month=2026-01", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        get("/report?month=2026-01", Some("tok-nope"))
            .await
            .unwrap()
            .status(),
        401
    );
    let r = get("/report?month=2026-01", Some("tok-placement-7f3a"))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("finance"));
    let r = get("/report?month=2026-01", Some("tok-finance-91cc"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<html"));
    let r = get("/metrics", None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("bursar_rpc_requests_total")
    );
    server.stop().await.unwrap();

    let mut c = auth_config(&db);
    c.auth.metrics_open = false;
    let server = TestServer::start_with_http(c).await;
    let base = server.http_url.clone().unwrap();
    let get = |path: &str, token: Option<&str>| {
        let mut r = http.get(format!("{base}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(get("/metrics", None).await.unwrap().status(), 401);
    assert_eq!(
        get("/metrics", Some("tok-fleet-0b2d"))
            .await
            .unwrap()
            .status(),
        200
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_on_loopback_without_tokens_or_when_not_required_and_never_open_by_accident() {
    let db = common::fresh_sqlite();
    // The quick start: no [auth] at all, loopback.
    let server = TestServer::start(common::test_config(&db)).await;
    assert!(
        call(server.channel().await, "CreateBudget", None)
            .await
            .is_ok()
    );
    server.stop().await.unwrap();
    // required = false with tokens: open (development), any header ignored.
    let mut c = auth_config(&db);
    c.auth.required = false;
    let server = TestServer::start(c).await;
    assert!(
        call(server.channel().await, "ListBudgets", None)
            .await
            .is_ok()
    );
    assert!(
        call(server.channel().await, "ListBudgets", bearer("junk"))
            .await
            .is_ok()
    );
    server.stop().await.unwrap();
    // Beyond loopback without tokens: refused at start, naming the key. (Bound, never
    // served: run returns before it accepts a connection.)
    let wide = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let e = bursar::server::run(common::test_config(&db), wide, std::future::pending())
        .await
        .unwrap_err();
    assert!(e.is_configuration(), "{e}");
    assert!(e.to_string().contains("auth.tokens"), "{e}");
    // The same with tokens serves (and enforces).
    let wide = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = wide.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(bursar::server::run(auth_config(&db), wide, async move {
        let _ = rx.await;
    }));
    let url = format!("http://127.0.0.1:{port}");
    let ch = wait_for(&url).await;
    assert_eq!(
        code(&call(ch.clone(), "ListBudgets", None).await),
        Code::Unauthenticated
    );
    assert!(
        call(ch, "ListBudgets", bearer("tok-finance-91cc"))
            .await
            .is_ok()
    );
    let _ = tx.send(());
    handle.await.unwrap().unwrap();
}

/// A channel once `url` answers health checks (liveness bound: START_DEADLINE).
async fn wait_for(url: &str) -> Channel {
    let deadline = tokio::time::Instant::now() + common::START_DEADLINE;
    loop {
        if let Ok(ch) = tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
        {
            let mut h = tonic_health::pb::health_client::HealthClient::new(ch.clone());
            if h.check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok()
            {
                return ch;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn write_config(path: &std::path::Path, db: &TestDb, listen: &str, toks: &[(&str, &str, &[&str])]) {
    let mut text = format!(
        "database_url = \"{}\"\nlisten = \"{listen}\"\nmetrics_listen = \"\"\n[auth]\nrequired = true\n",
        db.url
    );
    for (n, t, r) in toks {
        let roles: Vec<String> = r.iter().map(|r| format!("\"{r}\"")).collect();
        text.push_str(&format!(
            "[[auth.tokens]]\nname = \"{n}\"\nsha256 = \"{}\"\nroles = [{}]\n",
            sha256_hex(t),
            roles.join(", ")
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Polls until `check` holds (liveness bound: 60 s).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_tokens_in_a_running_serve_and_tokens_never_reach_the_logs() {
    for db in common::both_backends().await {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("bursar.toml");
        let log = dir.path().join("serve.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        const OLD: &str = "tok-old-c0ffee-1234";
        const NEW: &str = "tok-new-beef-5678";
        write_config(&cfg, &db, &listen, &[("airflow", OLD, &["placement"])]);
        #[allow(clippy::zombie_processes)] // waited for below
        let mut child = Command::new(env!("CARGO_BIN_EXE_bursar"))
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .env_remove("BURSAR_AUTH_TOKENS")
            .env_remove("BURSAR_DATABASE_URL")
            // Everything the service and its libraries log, to look for the tokens in it.
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let pid = child.id();
        let url = format!("http://{listen}");
        let ch = wait_for(&url).await;
        let list = |t: &'static str| {
            let ch = ch.clone();
            async move { code(&call(ch, "ListPrices", bearer(t)).await) }
        };
        assert_eq!(list(OLD).await, Code::Ok, "{}", db.backend);
        assert_eq!(list(NEW).await, Code::Unauthenticated);

        // Rotate: the new token in, the old one out; SIGHUP; same process.
        write_config(&cfg, &db, &listen, &[("airflow-2", NEW, &["placement"])]);
        signal(pid, "-HUP");
        eventually("the new token is accepted", || async {
            list(NEW).await == Code::Ok
        })
        .await;
        assert_eq!(list(OLD).await, Code::Unauthenticated, "{}", db.backend);
        assert!(child.try_wait().unwrap().is_none(), "no restart");

        // A bad config: logged naming the field, the tokens in force stay.
        std::fs::write(
            &cfg,
            std::fs::read_to_string(&cfg)
                .unwrap()
                .replace(&sha256_hex(NEW), "not-a-digest"),
        )
        .unwrap();
        signal(pid, "-HUP");
        eventually("the bad reload is logged", || async {
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("auth.tokens[0].sha256")
        })
        .await;
        assert_eq!(list(NEW).await, Code::Ok, "{}", db.backend);
        assert_eq!(list(OLD).await, Code::Unauthenticated);
        assert!(child.try_wait().unwrap().is_none());

        signal(pid, "-TERM");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{}", db.backend);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("config not reloaded"), "{text}");
        assert!(text.contains("SIGHUP: [auth] reloaded"), "{text}");
        assert!(text.len() > 10_000, "trace logs were written");
        for t in [OLD, NEW] {
            assert!(
                !text.contains(t),
                "{}: the token {t} is in the log",
                db.backend
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_made_with_a_token_records_the_token_as_its_requester_on_both_backends() {
    use bursar::domain::Provider;
    use bursar::domain::fleet::{FleetInstance, InstanceState};
    for db in common::both_backends().await {
        let store = bursar::store::Store::open(&db.url).await.unwrap();
        let machine = |id: &str| FleetInstance {
            provider: Provider::Aws,
            id: id.into(),
            name: id.into(),
            scope: "us-east-1".into(),
            resource: id.into(),
            region: "us-east-1".into(),
            zone: "us-east-1a".into(),
            instance_type: "p4d.24xlarge".into(),
            gpu_model: None,
            gpu_count: 8,
            labels: Default::default(),
            launched_at: None,
            state: InstanceState::Running,
            private_hostname: format!("{id}.internal"),
            cloud_protection: None,
            managed_by: None,
        };
        store
            .write_fleet_inventory(
                Provider::Aws,
                &[
                    (machine("i-0aaa"), None, "USD".into()),
                    (machine("i-0bbb"), None, "USD".into()),
                ],
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        let server = TestServer::start(auth_config(&db)).await;
        let ch = server.channel().await;
        for (instance, token, by) in [
            ("i-0aaa", "tok-admin-5e11", ""),
            ("i-0bbb", "tok-admin-finance-aa01", "alice"),
        ] {
            proto::fleet_service_client::FleetServiceClient::with_interceptor(
                ch.clone(),
                with_auth(bearer(token)),
            )
            .keep(proto::KeepRequest {
                instance: instance.into(),
                r#for: "1h".into(),
                reason: "training resumes".into(),
                requested_by: by.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", db.backend));
        }
        let mut keeps: Vec<(String, String)> = store
            .fleet_keeps(chrono::Utc::now())
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.instance_id, k.requested_by))
            .collect();
        keeps.sort();
        assert_eq!(
            keeps,
            [
                ("i-0aaa".to_string(), "ops".to_string()),
                ("i-0bbb".to_string(), "alice (token ops-reader)".to_string()),
            ],
            "{}",
            db.backend
        );
        server.stop().await.unwrap();
        store.close().await;
    }
}
