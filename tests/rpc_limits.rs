//! `[limits]` on a real server: a message over `max_message_bytes` is refused (OUT_OF_RANGE)
//! and the server keeps serving; a call the database holds up past `default_deadline` is
//! DEADLINE_EXCEEDED unless the client set its own deadline; and with
//! `max_concurrent_rpcs = 1` a call while another is in progress is shed at once with
//! RESOURCE_EXHAUSTED, health still answers, and the held call completes. The slow call is
//! real: CreateBudget waiting on a lock the test holds on the budget table (Postgres
//! `LOCK TABLE`, SQLite `BEGIN IMMEDIATE`), on both backends.
mod common;

use std::time::Duration;

use bursar::proto;
use common::{TestDb, TestServer};
use sqlx::Connection;
use tonic::Code;
use tonic::transport::Channel;

/// A lock on the budget table held by another connection until `release`.
enum Lock {
    Pg(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Lock {
    async fn take(db: &TestDb) -> Lock {
        if db.backend == "postgres" {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("LOCK TABLE budget IN EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .unwrap();
            Lock::Pg(c)
        } else {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            Lock::Sqlite(c)
        }
    }

    async fn release(self) {
        match self {
            Lock::Pg(mut c) => {
                sqlx::query("COMMIT").execute(&mut c).await.unwrap();
            }
            Lock::Sqlite(mut c) => {
                sqlx::query("COMMIT").execute(&mut c).await.unwrap();
            }
        }
    }
}

fn create(name: &str) -> tonic::Request<proto::CreateBudgetRequest> {
    tonic::Request::new(proto::CreateBudgetRequest {
        budget: Some(proto::Budget {
            name: name.into(),
            amount: Some(proto::Money {
                amount: "100".into(),
                currency: "USD".into(),
            }),
            ..Default::default()
        }),
    })
}

fn budgets(ch: &Channel) -> proto::budget_service_client::BudgetServiceClient<Channel> {
    proto::budget_service_client::BudgetServiceClient::new(ch.clone())
}

async fn health_ok(ch: &Channel) {
    let s = tonic_health::pb::health_client::HealthClient::new(ch.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.status, 1);
}

async fn list_prices(ch: &Channel) -> Result<(), tonic::Status> {
    proto::pricing_service_client::PricingServiceClient::new(ch.clone())
        .list_prices(proto::ListPricesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_out_of_range_and_the_server_serves_on() {
    let db = common::fresh_sqlite();
    let mut c = common::test_config(&db);
    c.limits.max_message_bytes = 64 * 1024;
    let server = TestServer::start(c).await;
    let ch = server.channel().await;
    let mut p = proto::pricing_service_client::PricingServiceClient::new(ch.clone());
    let e = p
        .list_prices(proto::ListPricesRequest {
            region: "x".repeat(100 * 1024),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("65536"), "{}", e.message());
    // Under the limit (and then refused by the field's own limit, naming it).
    let e = p
        .list_prices(proto::ListPricesRequest {
            region: "x".repeat(60 * 1024),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    list_prices(&ch).await.unwrap();
    health_ok(&ch).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_deadline_gets_the_default_one_on_both_backends() {
    for db in common::both_backends().await {
        let mut c = common::test_config(&db);
        c.limits.default_deadline = Duration::from_millis(500);
        let server = TestServer::start(c).await;
        let ch = server.channel().await;
        let lock = Lock::take(&db).await;
        let e = budgets(&ch)
            .create_budget(create("held"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{}: {e:?}", db.backend);
        assert!(
            e.message().contains("limits.default_deadline"),
            "{}",
            e.message()
        );
        health_ok(&ch).await;
        // A client's own deadline wins over the default: this call waits for the lock.
        let mut req = create("patient");
        req.set_timeout(Duration::from_secs(60));
        let ch2 = ch.clone();
        let patient = tokio::spawn(async move { budgets(&ch2).create_budget(req).await });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !patient.is_finished(),
            "{}: still waiting on the lock",
            db.backend
        );
        lock.release().await;
        let r = patient.await.unwrap();
        assert!(r.is_ok(), "{}: {r:?}", db.backend);
        let names: Vec<String> = budgets(&ch)
            .list_budgets(proto::ListBudgetsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .budgets
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert!(names.contains(&"patient".to_string()), "{names:?}");
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_limit_calls_are_shed_not_queued_on_both_backends() {
    for db in common::both_backends().await {
        let mut c = common::test_config(&db);
        c.limits.max_concurrent_rpcs = 1;
        let server = TestServer::start(c).await;
        let ch = server.channel().await;
        list_prices(&ch).await.unwrap();
        let lock = Lock::take(&db).await;
        let ch2 = ch.clone();
        let held = tokio::spawn(async move { budgets(&ch2).create_budget(create("slow")).await });
        // Once the held call is in progress, the next one is refused at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let shed = loop {
            match list_prices(&ch).await {
                Err(e) if e.code() == Code::ResourceExhausted => break e,
                Err(e) => panic!("{}: {e:?}", db.backend),
                Ok(()) => {}
            }
            assert!(tokio::time::Instant::now() < deadline, "never shed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            shed.message().contains("max_concurrent_rpcs"),
            "{}",
            shed.message()
        );
        assert!(!held.is_finished());
        // Again, and health (exempt) answers meanwhile.
        assert_eq!(
            list_prices(&ch).await.unwrap_err().code(),
            Code::ResourceExhausted
        );
        health_ok(&ch).await;
        lock.release().await;
        let r = held.await.unwrap();
        assert!(r.is_ok(), "{}: the held call completes: {r:?}", db.backend);
        list_prices(&ch).await.unwrap();
        server.stop().await.unwrap();
    }
}
