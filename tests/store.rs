//! Store story tests: every test runs on SQLite and on Postgres.
mod common;

use chrono::{Duration as ChronoDuration, Utc};
use rust_decimal::Decimal;

use bursar::domain::{Currency, InstanceAttrs, Market, Offer, OfferKey, Provider, SpotBand};
use bursar::store::{Store, StoreError};

fn offer(
    provider: Provider,
    region: &str,
    zone: &str,
    ty: &str,
    market: Market,
    price: &str,
) -> Offer {
    Offer {
        key: OfferKey {
            provider,
            region: region.into(),
            zone: zone.into(),
            instance_type: ty.into(),
            market,
        },
        price_per_hour: price.parse().unwrap(),
        currency: Currency::USD,
        attrs: Some(InstanceAttrs {
            vcpus: 96.0,
            memory_gib: 1152.0,
            gpu_model: Some("A100".into()),
            gpu_count: 8.0,
            gpu_memory_gib: 40.0,
            arch: "x86_64".into(),
        }),
        source: "test".into(),
        observed_at: Utc::now(),
    }
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[tokio::test]
async fn migrations_apply_twice_and_start_empty() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.count_current().await.unwrap(), 0, "{}", db.backend);
        assert_eq!(store.backend(), db.backend);
        store.close().await;
        // Re-opening an already migrated database is fine.
        let again = Store::open(&db.url).await.unwrap();
        again.close().await;
    }
}

#[tokio::test]
async fn repolling_unchanged_prices_adds_no_history_and_changes_add_one_row() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let batch = vec![
            offer(
                Provider::Aws,
                "us-east-1",
                "",
                "p4d.24xlarge",
                Market::OnDemand,
                "32.7726",
            ),
            offer(
                Provider::Aws,
                "us-east-1",
                "us-east-1a",
                "p4d.24xlarge",
                Market::Spot,
                "9.8300",
            ),
            offer(
                Provider::Gcp,
                "europe-west4",
                "europe-west4-a",
                "a2-highgpu-8g",
                Market::OnDemand,
                "29.38",
            ),
        ];
        let mut cur = store.current_prices().await.unwrap();
        let s = store.upsert_offers(&batch, &mut cur).await.unwrap();
        assert_eq!((s.offers, s.observations), (3, 3), "{}", db.backend);

        // Same prices again, written differently ("9.83" vs "9.8300"): no new history.
        let mut again = batch.clone();
        again[1].price_per_hour = dec("9.83");
        for o in &mut again {
            o.observed_at = Utc::now() + ChronoDuration::seconds(60);
        }
        let mut cur = store.current_prices().await.unwrap();
        let s = store.upsert_offers(&again, &mut cur).await.unwrap();
        assert_eq!((s.offers, s.observations), (3, 0), "{}", db.backend);
        assert_eq!(
            store.count_observations().await.unwrap(),
            3,
            "{}",
            db.backend
        );
        assert_eq!(store.count_current().await.unwrap(), 3, "{}", db.backend);

        // One price changes: exactly one new history row, current view updated.
        let mut changed = again.clone();
        changed[1].price_per_hour = dec("10.0125");
        let s = store.upsert_offers(&changed, &mut cur).await.unwrap();
        assert_eq!(s.observations, 1, "{}", db.backend);
        assert_eq!(
            store.count_observations().await.unwrap(),
            4,
            "{}",
            db.backend
        );
        let (offers, _) = store.load_catalog().await.unwrap();
        let spot = offers
            .iter()
            .find(|o| o.key.market == Market::Spot)
            .unwrap();
        assert_eq!(spot.price_per_hour, dec("10.0125"), "{}", db.backend);
        store.close().await;
    }
}

#[tokio::test]
async fn money_round_trips_exactly() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let prices = [
            "0.0960000000",
            "1.234567891234567",
            "0.000001",
            "123456.789012",
        ];
        let batch: Vec<Offer> = prices
            .iter()
            .enumerate()
            .map(|(i, p)| {
                offer(
                    Provider::Azure,
                    "eastus",
                    "",
                    &format!("T{i}"),
                    Market::OnDemand,
                    p,
                )
            })
            .collect();
        let mut cur = store.current_prices().await.unwrap();
        store.upsert_offers(&batch, &mut cur).await.unwrap();
        let (offers, _) = store.load_catalog().await.unwrap();
        for (i, p) in prices.iter().enumerate() {
            let o = offers
                .iter()
                .find(|o| o.key.instance_type == format!("T{i}"))
                .unwrap();
            assert_eq!(o.price_per_hour, dec(p), "{} {}", db.backend, p);
        }
        let total: Decimal = offers.iter().map(|o| o.price_per_hour).sum();
        assert_eq!(total, dec("123458.119580891234567"), "{}", db.backend);
        store.close().await;
    }
}

#[tokio::test]
async fn offers_without_attributes_keep_known_hardware() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let mut cur = store.current_prices().await.unwrap();
        let with = offer(
            Provider::Aws,
            "us-east-1",
            "",
            "p4d.24xlarge",
            Market::OnDemand,
            "32.7726",
        );
        store.upsert_offers(&[with], &mut cur).await.unwrap();
        let mut without = offer(
            Provider::Aws,
            "us-east-1",
            "us-east-1b",
            "p4d.24xlarge",
            Market::Spot,
            "11.5",
        );
        without.attrs = None;
        store.upsert_offers(&[without], &mut cur).await.unwrap();
        let (offers, _) = store.load_catalog().await.unwrap();
        assert_eq!(offers.len(), 2);
        for o in &offers {
            let a = o
                .attrs
                .as_ref()
                .expect("attributes joined from instance_type");
            assert_eq!(a.gpu_model.as_deref(), Some("A100"), "{}", db.backend);
            assert_eq!(a.gpu_count, 8.0);
        }
        let known = store.known_instances().await.unwrap();
        assert!(known.contains_key(&(Provider::Aws, "p4d.24xlarge".to_string())));
        store.close().await;
    }
}

#[tokio::test]
async fn duplicate_keys_in_one_batch_keep_the_last() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let mut cur = store.current_prices().await.unwrap();
        let a = offer(
            Provider::Azure,
            "eastus",
            "",
            "Standard_D2s_v3",
            Market::OnDemand,
            "0.1",
        );
        let b = offer(
            Provider::Azure,
            "eastus",
            "",
            "Standard_D2s_v3",
            Market::OnDemand,
            "0.096",
        );
        let s = store.upsert_offers(&[a, b], &mut cur).await.unwrap();
        assert_eq!(s.offers, 1, "{}", db.backend);
        let (offers, _) = store.load_catalog().await.unwrap();
        assert_eq!(offers[0].price_per_hour, dec("0.096"));
        store.close().await;
    }
}

#[tokio::test]
async fn source_status_and_spot_bands() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let t0 = Utc::now();
        store.record_source_success("azure", 120, t0).await.unwrap();
        store
            .record_source_failure(
                "azure",
                "HTTP 500 from http://x after 5 attempts",
                t0 + ChronoDuration::seconds(5),
            )
            .await
            .unwrap();
        store.record_source_success("gcp", 7, t0).await.unwrap();
        let rows = store.source_statuses().await.unwrap();
        let az = rows.iter().find(|r| r.name == "azure").unwrap();
        assert_eq!(az.state, "failed", "{}", db.backend);
        assert_eq!(az.rows, 120, "the last good walk's row count stays");
        assert!(az.last_success_at.is_some());
        assert!(az.last_error.as_deref().unwrap().contains("HTTP 500"));
        assert_eq!(rows.iter().find(|r| r.name == "gcp").unwrap().state, "ok");

        let bands = vec![SpotBand {
            provider: Provider::Aws,
            region: "us-east-1".into(),
            instance_type: "g4dn.xlarge".into(),
            band: 3,
            label: "15-20%".into(),
            savings_pct: 64,
        }];
        store.upsert_bands(&bands, t0).await.unwrap();
        store.upsert_bands(&bands, t0).await.unwrap();
        let (_, loaded) = store.load_catalog().await.unwrap();
        assert_eq!(loaded, bands, "{}", db.backend);
        store.close().await;
    }
}

#[tokio::test]
async fn the_periodic_refresh_rebuilds_the_catalog_only_when_another_writer_changed_it() {
    use bursar::domain::catalog::CatalogHandle;
    use bursar::tasks::{refresh_catalog, refresh_if_changed};
    for db in common::both_backends().await {
        // The server's store and, writing beside it, another replica's.
        let store = Store::open(&db.url).await.unwrap();
        let other = Store::open(&db.url).await.unwrap();
        let handle = CatalogHandle::default();
        let a = offer(
            Provider::Aws,
            "us-east-1",
            "",
            "p4d.24xlarge",
            Market::OnDemand,
            "32.77",
        );
        store
            .upsert_offers(std::slice::from_ref(&a), &mut Default::default())
            .await
            .unwrap();
        assert_eq!(refresh_catalog(&store, &handle).await.unwrap(), 1);
        let built = handle.load();
        assert!(
            !refresh_if_changed(&store, &handle).await.unwrap(),
            "{}: nothing changed, nothing rebuilt",
            db.backend
        );
        assert!(
            std::sync::Arc::ptr_eq(&built, &handle.load()),
            "{}",
            db.backend
        );

        // New prices from the other replica: rebuilt once, then quiet again.
        let b = offer(
            Provider::Aws,
            "us-west-2",
            "",
            "p4d.24xlarge",
            Market::OnDemand,
            "32.78",
        );
        other
            .upsert_offers(&[b], &mut Default::default())
            .await
            .unwrap();
        assert!(
            refresh_if_changed(&store, &handle).await.unwrap(),
            "{}",
            db.backend
        );
        assert_eq!(handle.load().offers().len(), 2, "{}", db.backend);
        assert!(
            !refresh_if_changed(&store, &handle).await.unwrap(),
            "{}",
            db.backend
        );

        // Re-confirming an unchanged price moves its observation time (the price's age in
        // every answer), and spot bands feed the catalog too: both count as changes.
        other
            .upsert_offers(&[a], &mut Default::default())
            .await
            .unwrap();
        assert!(
            refresh_if_changed(&store, &handle).await.unwrap(),
            "{}",
            db.backend
        );
        let band = SpotBand {
            provider: Provider::Aws,
            region: "us-east-1".into(),
            instance_type: "p4d.24xlarge".into(),
            band: 2,
            label: "10-15%".into(),
            savings_pct: 60,
        };
        other.upsert_bands(&[band], Utc::now()).await.unwrap();
        assert!(
            refresh_if_changed(&store, &handle).await.unwrap(),
            "{}",
            db.backend
        );
        assert!(
            !refresh_if_changed(&store, &handle).await.unwrap(),
            "{}",
            db.backend
        );
        other.close().await;
        store.close().await;
    }
}

#[tokio::test]
async fn bad_urls_are_configuration_errors() {
    let e = Store::connect("mysql://root@127.0.0.1/test")
        .await
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::UnsupportedScheme(_)));
    assert!(e.is_configuration());
    // Nothing listens on port 1.
    let e = Store::connect("postgres://postgres:secret@127.0.0.1:1/test")
        .await
        .err()
        .unwrap();
    assert!(e.is_configuration(), "{e}");
    assert!(
        !e.to_string().contains("secret"),
        "password must be redacted: {e}"
    );
}

/// A Postgres that refuses connections is reported as refused, not as the pool's
/// "pool timed out" after its acquire timeout.
#[tokio::test]
async fn an_unreachable_postgres_is_reported_as_refused() {
    let port = common::free_port();
    let e = Store::connect(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .await
        .err()
        .unwrap();
    let m = e.to_string();
    assert!(e.is_configuration(), "{m}");
    assert!(m.to_lowercase().contains("connection refused"), "{m}");
    assert!(!m.contains("timed out"), "{m}");
}

/// Everything sqlx logs at WARN or above in this test binary (a global subscriber: SQLite
/// runs statements on a worker thread of its own).
fn sqlx_warnings() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("sqlx=warn"))
            .with_ansi(false)
            .with_writer(move || SharedWriter(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct SharedWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A statement slower than sqlx's one-second threshold (a migration on a busy machine) is
/// not a WARN holding its SQL: the slow-statement log is DEBUG on both backends.
#[tokio::test]
async fn a_slow_statement_is_not_logged_at_warn() {
    let warnings = sqlx_warnings();
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        match &store {
            // pg_sleep makes it slow for certain.
            Store::Postgres(s) => {
                sqlx::query("SELECT pg_sleep(1.2)\n-- a second line")
                    .execute(s.pool())
                    .await
                    .unwrap();
            }
            // SQLite has no sleep: wait for a write lock another connection holds for 1.2 s.
            Store::Sqlite(s) => {
                let mut holder = s.pool().begin().await.unwrap();
                sqlx::query("DELETE FROM price_current")
                    .execute(&mut *holder)
                    .await
                    .unwrap();
                let release = tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
                    holder.rollback().await.unwrap();
                });
                sqlx::query("DELETE FROM price_current\n-- a second line")
                    .execute(s.pool())
                    .await
                    .unwrap();
                release.await.unwrap();
            }
        }
        store.close().await;
        let text = String::from_utf8_lossy(&warnings.lock().unwrap()).to_string();
        assert!(!text.contains("slow statement"), "{}: {text}", db.backend);
        assert!(!text.contains("a second line"), "{}: {text}", db.backend);
    }
}
