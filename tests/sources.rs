//! Price sources end to end, on loopback only: each source walks a local fixture HTTP server
//! serving the recorded responses in ../shared/data/price-api-samples (or moto_server for
//! EC2), through `poll_once` into a fresh SQLite and a fresh Postgres database.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bursar::clouds::HttpSettings;
use bursar::clouds::aws::{AwsOnDemandSource, AwsSpotAdvisorSource, AwsSpotSource};
use bursar::clouds::azure::AzureRetailSource;
use bursar::clouds::gcp::GcpCatalogSource;
use bursar::domain::{Market, Offer, Provider};
use bursar::store::Store;
use bursar::tasks::poll_once;
use common::{Fixture, FixtureRequest, FixtureResponse, read_shared};
use rust_decimal::Decimal;

fn settings(endpoint: &str) -> HttpSettings {
    HttpSettings {
        endpoint: Some(endpoint.to_string()),
        timeout: Duration::from_secs(5),
        max_retries: 3,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
    }
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

async fn offers(store: &Store) -> Vec<Offer> {
    store.load_catalog().await.unwrap().0
}

fn find<'a>(offers: &'a [Offer], region: &str, ty: &str, market: Market) -> Option<&'a Offer> {
    offers
        .iter()
        .find(|o| o.key.region == region && o.key.instance_type == ty && o.key.market == market)
}

async fn status(store: &Store, name: &str) -> bursar::store::SourceStatusRow {
    store
        .source_statuses()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no status for {name}"))
}

// ---------------------------------------------------------------------------------------
// Azure Retail Prices

/// Three pages: the real reservation page (its absolute NextPageLink rewritten to the
/// fixture), the D2s_v3 consumption page, then B1s with `NextPageLink: null`.
/// `page2` lets a test replace the second page's answer (e.g. 429, 500, malformed).
async fn azure_fixture(
    page2: impl Fn(usize) -> Option<FixtureResponse> + Send + Sync + 'static,
) -> Fixture {
    let calls = Arc::new(AtomicUsize::new(0));
    let base = Arc::new(std::sync::Mutex::new(String::new()));
    let base2 = base.clone();
    let f = Fixture::start(move |r: &FixtureRequest| {
        let base = base2.lock().unwrap().clone();
        let skip = r.param("$skip");
        match skip.as_deref() {
            None => FixtureResponse::json(
                read_shared("price-api-samples/azure/retail_reservation_page1.trimmed.json")
                    .replace("https://prices.azure.com:443", &base),
            ),
            Some("1000") => {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if let Some(resp) = page2(n) {
                    return resp;
                }
                FixtureResponse::json(
                    read_shared("price-api-samples/azure/retail_vm_d2s_v3_eastus_consumption.json")
                        .replace(
                            "\"NextPageLink\":null",
                            &format!("\"NextPageLink\":\"{base}/api/retail/prices?$skip=2000\""),
                        ),
                )
            }
            Some("2000") => FixtureResponse::json(read_shared(
                "price-api-samples/azure/retail_vm_b1s_eastus_consumption.json",
            )),
            Some(other) => FixtureResponse::status(404, format!("no page {other}")),
        }
    })
    .await;
    *base.lock().unwrap() = f.base.clone();
    f
}

#[tokio::test]
async fn azure_walks_every_page_and_repolling_adds_no_history() {
    for db in common::both_backends().await {
        let fx = azure_fixture(|_| None).await;
        let store = Store::open(&db.url).await.unwrap();
        let src = AzureRetailSource::new(settings(&fx.base), vec![]);
        let r = poll_once(&store, &src).await.unwrap();
        assert_eq!(r.pages, 3, "{}", db.backend);
        let o = offers(&store).await;
        assert_eq!(o.len(), 3, "{}: {o:?}", db.backend);
        assert_eq!(
            find(&o, "eastus", "Standard_D2s_v3", Market::OnDemand)
                .unwrap()
                .price_per_hour,
            dec("0.096")
        );
        assert_eq!(
            find(&o, "eastus", "Standard_D2s_v3", Market::Spot)
                .unwrap()
                .price_per_hour,
            dec("0.018816")
        );
        assert_eq!(
            find(&o, "eastus", "Standard_B1s", Market::OnDemand)
                .unwrap()
                .price_per_hour,
            dec("0.0104")
        );
        assert!(
            o.iter()
                .all(|x| x.key.provider == Provider::Azure && x.source == "azure")
        );
        // Windows, Low Priority and reservation rows were seen and rejected, not stored.
        assert!(r.rejected >= 5, "{r:?}");
        let before = store.count_observations().await.unwrap();
        poll_once(&store, &src).await.unwrap();
        assert_eq!(
            store.count_observations().await.unwrap(),
            before,
            "{}: unchanged prices",
            db.backend
        );
        let st = status(&store, "azure").await;
        assert_eq!((st.state.as_str(), st.rows), ("ok", 3));
        store.close().await;
    }
}

#[tokio::test]
async fn azure_429_and_500_mid_walk_are_retried_then_succeed() {
    for db in common::both_backends().await {
        let fx = azure_fixture(|n| match n {
            0 => Some(FixtureResponse::status(429, "{\"error\":\"slow down\"}")),
            1 => Some(FixtureResponse::status(500, "{\"error\":\"oops\"}")),
            _ => None,
        })
        .await;
        let store = Store::open(&db.url).await.unwrap();
        let src = AzureRetailSource::new(settings(&fx.base), vec![]);
        let r = poll_once(&store, &src).await.unwrap();
        assert_eq!(r.offers, 3, "{}", db.backend);
        // page 1 + three tries of page 2 + page 3
        assert_eq!(fx.request_count(), 5);
        store.close().await;
    }
}

#[tokio::test]
async fn azure_retries_exhausted_marks_the_source_failed_and_keeps_earlier_prices() {
    for db in common::both_backends().await {
        let good = azure_fixture(|_| None).await;
        let store = Store::open(&db.url).await.unwrap();
        poll_once(
            &store,
            &AzureRetailSource::new(settings(&good.base), vec![]),
        )
        .await
        .unwrap();
        let before = offers(&store).await;

        let bad =
            azure_fixture(|_| Some(FixtureResponse::status(500, "{\"error\":\"down\"}"))).await;
        let err = poll_once(&store, &AzureRetailSource::new(settings(&bad.base), vec![]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("500"), "{err}");
        let st = status(&store, "azure").await;
        assert_eq!(st.state, "failed", "{}", db.backend);
        assert!(st.last_error.unwrap().contains("500"));
        assert!(st.last_success_at.is_some());
        assert_eq!(
            offers(&store).await.len(),
            before.len(),
            "earlier prices stay"
        );
        assert_eq!(
            find(
                &offers(&store).await,
                "eastus",
                "Standard_D2s_v3",
                Market::OnDemand
            )
            .unwrap()
            .price_per_hour,
            dec("0.096")
        );
        store.close().await;
    }
}

#[tokio::test]
async fn azure_malformed_page_stores_nothing_from_that_walk() {
    for db in common::both_backends().await {
        let fx =
            azure_fixture(|_| Some(FixtureResponse::json("{\"Items\": [ {\"currencyCode\": ")))
                .await;
        let store = Store::open(&db.url).await.unwrap();
        let err = poll_once(&store, &AzureRetailSource::new(settings(&fx.base), vec![]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");
        assert_eq!(
            store.count_current().await.unwrap(),
            0,
            "{}: page 1 not stored either",
            db.backend
        );
        assert_eq!(status(&store, "azure").await.state, "failed");
        store.close().await;
    }
}

#[tokio::test]
async fn azure_repeated_next_page_link_stops_the_walk() {
    for db in common::both_backends().await {
        let base = Arc::new(std::sync::Mutex::new(String::new()));
        let b2 = base.clone();
        let fx = azure_fixture(move |_| {
            let base = b2.lock().unwrap().clone();
            // Page 2 links to itself.
            Some(FixtureResponse::json(
                read_shared("price-api-samples/azure/retail_vm_d2s_v3_eastus_consumption.json")
                    .replace(
                        "\"NextPageLink\":null",
                        &format!("\"NextPageLink\":\"{base}/api/retail/prices?$skip=1000\""),
                    ),
            ))
        })
        .await;
        *base.lock().unwrap() = fx.base.clone();
        let store = Store::open(&db.url).await.unwrap();
        let err = poll_once(&store, &AzureRetailSource::new(settings(&fx.base), vec![]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("pagination loop"), "{err}");
        assert_eq!(store.count_current().await.unwrap(), 0);
        assert!(fx.request_count() < 10, "the guard stopped the walk");
    }
}

// ---------------------------------------------------------------------------------------
// GCP Cloud Billing Catalog

const GCP_KEY: &str = "AIzaTESTKEY-not-real";

#[tokio::test]
async fn gcp_composes_machine_prices_over_two_pages_and_rejects_non_usd() {
    for db in common::both_backends().await {
        let page1 = read_shared("price-api-samples/gcp/compute_skus_a2_gpu_e2_t2d_page.json");
        let token: String =
            serde_json::from_str::<serde_json::Value>(&page1).unwrap()["nextPageToken"]
                .as_str()
                .unwrap()
                .to_string();
        let page2 = read_shared("price-api-samples/gcp/compute_skus_n4a_n4d_us-central1.json");
        let tok = token.clone();
        let fx = Fixture::start(move |r: &FixtureRequest| {
            assert_eq!(r.param("key").as_deref(), Some(GCP_KEY));
            assert_eq!(r.path, "/v1/services/6F81-5844-456A/skus");
            match r.param("pageToken") {
                None => FixtureResponse::json(page1.clone()),
                Some(t) if t == tok => FixtureResponse::json(page2.clone()),
                Some(t) => FixtureResponse::status(400, format!("bad token {t}")),
            }
        })
        .await;
        let store = Store::open(&db.url).await.unwrap();
        let src = GcpCatalogSource::new(settings(&fx.base), GCP_KEY.into(), vec![]);
        let r = poll_once(&store, &src).await.unwrap();
        assert_eq!(r.pages, 2);
        let o = offers(&store).await;
        // 12 vCPU x 0.031611 + 85 GiB x 0.004237 + 1 A100 x 2.933908
        let a2 = find(&o, "us-central1", "a2-highgpu-1g", Market::OnDemand).expect("a2-highgpu-1g");
        assert_eq!(a2.price_per_hour, dec("3.673385"), "{}", db.backend);
        assert_eq!(
            a2.attrs.as_ref().unwrap().gpu_model.as_deref(),
            Some("A100")
        );
        // 8 x 0.02911 + 32 x 0.00331
        let n4d =
            find(&o, "us-central1", "n4d-standard-8", Market::OnDemand).expect("n4d-standard-8");
        assert_eq!(n4d.price_per_hour, dec("0.3388"));
        assert!(find(&o, "us-central1", "n4d-standard-8", Market::Spot).is_some());
        // The IDR-priced E2/T2D SKUs are never stored as USD.
        assert!(
            !o.iter().any(|x| x.key.instance_type.starts_with("e2-")
                || x.key.instance_type.starts_with("t2d-"))
        );
        assert!(o.iter().all(|x| x.currency.as_str() == "USD"));
        store.close().await;
    }
}

#[tokio::test]
async fn gcp_invalid_key_fails_without_leaking_the_key() {
    for db in common::both_backends().await {
        let body = read_shared("price-api-samples/gcp/error_400_api_key_invalid.json");
        let fx = Fixture::start(move |_| FixtureResponse::status(400, body.clone())).await;
        let store = Store::open(&db.url).await.unwrap();
        let err = poll_once(
            &store,
            &GcpCatalogSource::new(settings(&fx.base), GCP_KEY.into(), vec![]),
        )
        .await
        .unwrap_err();
        assert!(!err.to_string().contains(GCP_KEY), "{err}");
        let st = status(&store, "gcp").await;
        assert_eq!(st.state, "failed");
        assert!(!st.last_error.clone().unwrap().contains(GCP_KEY));
        assert_eq!(fx.request_count(), 1, "a rejected key is not retried");
    }
}

#[tokio::test]
async fn gcp_empty_next_token_ends_the_walk_and_a_repeated_one_is_a_loop() {
    for db in common::both_backends().await {
        let page = read_shared("price-api-samples/gcp/compute_skus_n4a_n4d_us-central1.json");
        let with_empty = page.replacen('{', "{\"nextPageToken\": \"\",", 1);
        let fx = Fixture::start(move |_| FixtureResponse::json(with_empty.clone())).await;
        let store = Store::open(&db.url).await.unwrap();
        let r = poll_once(
            &store,
            &GcpCatalogSource::new(settings(&fx.base), GCP_KEY.into(), vec![]),
        )
        .await
        .unwrap();
        assert_eq!(r.pages, 1);
        assert!(r.offers > 0);

        let looping = page.replacen('{', "{\"nextPageToken\": \"same\",", 1);
        let fx = Fixture::start(move |_| FixtureResponse::json(looping.clone())).await;
        let before = store.count_current().await.unwrap();
        let err = poll_once(
            &store,
            &GcpCatalogSource::new(settings(&fx.base), GCP_KEY.into(), vec![]),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("pagination loop"), "{err}");
        assert_eq!(store.count_current().await.unwrap(), before);
    }
}

// ---------------------------------------------------------------------------------------
// AWS Price List GetProducts (aws-sdk-pricing pointed at the fixture)

/// The p4d excerpt of the bulk offer file as GetProducts PriceList elements: the real
/// on-demand product and the $0 Capacity Block product.
fn p4d_price_list() -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&read_shared(
        "price-api-samples/aws/offer_index_AmazonEC2_us-east-1_p4d_excerpt.json",
    ))
    .unwrap();
    let products = v["products"].as_object().unwrap();
    products
        .iter()
        .map(|(sku, product)| {
            serde_json::json!({
                "product": product,
                "serviceCode": "AmazonEC2",
                "terms": {"OnDemand": v["terms"]["OnDemand"][sku]},
                "version": v["version"],
                "publicationDate": v["publicationDate"],
            })
            .to_string()
        })
        .collect()
}

fn get_products_fixture(
    loop_token: bool,
) -> impl Fn(&FixtureRequest) -> FixtureResponse + Send + Sync + 'static {
    let page1: serde_json::Value = serde_json::from_str(&read_shared(
        "price-api-samples/aws/derived_getproducts_response_m5_large.wire.json",
    ))
    .unwrap();
    move |r: &FixtureRequest| {
        let target = r
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(target, "AWSPriceListService.GetProducts");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["ServiceCode"], "AmazonEC2");
        match body.get("NextToken").and_then(|t| t.as_str()) {
            None => {
                let mut p = page1.clone();
                p["NextToken"] = "tok-2".into();
                FixtureResponse::amz_json(p.to_string())
            }
            Some("tok-2") => FixtureResponse::amz_json(
                serde_json::json!({
                    "FormatVersion": "aws_v1",
                    "PriceList": p4d_price_list(),
                    "NextToken": if loop_token { serde_json::Value::from("tok-2") } else { serde_json::Value::Null },
                })
                .to_string(),
            ),
            Some(t) => FixtureResponse::status(400, format!("{{\"message\":\"bad token {t}\"}}")),
        }
    }
}

#[tokio::test]
async fn aws_on_demand_walks_get_products_and_skips_capacity_blocks() {
    for db in common::both_backends().await {
        let fx = Fixture::start(get_products_fixture(false)).await;
        let store = Store::open(&db.url).await.unwrap();
        let r = poll_once(&store, &AwsOnDemandSource::new(settings(&fx.base), vec![]))
            .await
            .unwrap();
        assert_eq!(r.pages, 2);
        assert!(r.rejected >= 1, "the Capacity Block row is rejected: {r:?}");
        let o = offers(&store).await;
        assert_eq!(o.len(), 2, "{}: {o:?}", db.backend);
        let m5 = find(&o, "us-east-1", "m5.large", Market::OnDemand).unwrap();
        assert_eq!(m5.price_per_hour, dec("0.096"));
        assert_eq!(m5.attrs.as_ref().unwrap().vcpus, 2.0);
        let p4d = find(&o, "us-east-1", "p4d.24xlarge", Market::OnDemand).unwrap();
        assert_eq!(p4d.price_per_hour, dec("32.7726"), "{}", db.backend);
        assert_eq!(
            p4d.attrs.as_ref().unwrap().gpu_model.as_deref(),
            Some("A100")
        );
        store.close().await;
    }
}

#[tokio::test]
async fn aws_on_demand_repeated_next_token_fails_and_stores_nothing() {
    for db in common::both_backends().await {
        let fx = Fixture::start(get_products_fixture(true)).await;
        let store = Store::open(&db.url).await.unwrap();
        let err = poll_once(&store, &AwsOnDemandSource::new(settings(&fx.base), vec![]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("pagination loop"), "{err}");
        assert_eq!(store.count_current().await.unwrap(), 0);
        assert_eq!(status(&store, "aws-ondemand").await.state, "failed");
    }
}

// ---------------------------------------------------------------------------------------
// AWS spot: recorded EC2 XML pages on the fixture, and moto_server

#[tokio::test]
async fn aws_spot_reads_both_xml_pages_and_keeps_the_newest_price_per_zone() {
    for db in common::both_backends().await {
        let p1 = read_shared(
            "price-api-samples/aws/derived_describe_spot_price_history_m5_large.page1.xml",
        );
        let p2 = read_shared(
            "price-api-samples/aws/derived_describe_spot_price_history_m5_large.page2.xml",
        );
        let fx = Fixture::start(move |r: &FixtureRequest| {
            assert_eq!(
                r.param("Action").as_deref(),
                Some("DescribeSpotPriceHistory")
            );
            match r.param("NextToken").as_deref() {
                None => FixtureResponse::xml(p1.clone()),
                Some("derived-page-2-token") => FixtureResponse::xml(p2.clone()),
                Some(t) => FixtureResponse::status(400, format!("bad token {t}")),
            }
        })
        .await;
        let store = Store::open(&db.url).await.unwrap();
        let src = AwsSpotSource::new(
            settings(&fx.base),
            vec!["us-east-1".into()],
            vec!["m5.large".into()],
        );
        let r = poll_once(&store, &src).await.unwrap();
        assert_eq!(r.pages, 2);
        let o = offers(&store).await;
        assert!(!o.is_empty());
        assert!(
            o.iter()
                .all(|x| x.key.market == Market::Spot && x.key.zone.starts_with("us-east-1"))
        );
        // The newest us-east-1f row of the recording (page 1, 2021-02-09T01:40:10Z).
        let f = o.iter().find(|x| x.key.zone == "us-east-1f").unwrap();
        assert_eq!(f.price_per_hour, dec("0.0437"), "{}", db.backend);
        let mut zones: Vec<_> = o.iter().map(|x| x.key.zone.clone()).collect();
        zones.dedup();
        assert_eq!(zones.len(), o.len(), "one price per zone");
        store.close().await;
    }
}

#[tokio::test]
async fn aws_spot_against_moto_server() {
    let moto = common::Moto::start().await;
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let src = AwsSpotSource::new(settings(&moto.url), vec!["us-east-1".into()], vec![]);
        let r = poll_once(&store, &src).await.unwrap();
        assert!(r.offers > 0, "{}: {r:?}", db.backend);
        let o = offers(&store).await;
        assert!(o.iter().all(|x| x.key.provider == Provider::Aws
            && x.key.market == Market::Spot
            && x.key.region == "us-east-1"
            && x.key.zone.starts_with("us-east-1")
            && x.price_per_hour > Decimal::ZERO));
        store.close().await;
    }
}

#[tokio::test]
async fn spot_advisor_bands_reach_list_prices() {
    for db in common::both_backends().await {
        let advisor = read_shared("price-api-samples/aws/spot-advisor-data.trimmed.json");
        let fx = Fixture::start(move |_| FixtureResponse::json(advisor.clone())).await;
        let store = Store::open(&db.url).await.unwrap();
        let r = poll_once(
            &store,
            &AwsSpotAdvisorSource::new(
                settings(&format!("{}/spot-advisor-data.json", fx.base)),
                vec![],
            ),
        )
        .await
        .unwrap();
        assert!(r.bands > 0);
        let (_, bands) = store.load_catalog().await.unwrap();
        let g4 = bands
            .iter()
            .find(|b| b.region == "us-east-1" && b.instance_type == "g4dn.xlarge")
            .unwrap();
        assert_eq!(g4.label, "15-20%");
        assert_eq!(g4.savings_pct, 64);
        // A spot offer for that type, as aws-spot would store it.
        let spot = Offer {
            key: bursar::domain::OfferKey {
                provider: Provider::Aws,
                region: "us-east-1".into(),
                zone: "us-east-1a".into(),
                instance_type: "g4dn.xlarge".into(),
                market: Market::Spot,
            },
            price_per_hour: dec("0.1578"),
            currency: bursar::domain::Currency::USD,
            attrs: None,
            source: "aws-spot".into(),
            observed_at: chrono::Utc::now(),
        };
        let mut cur = store.current_prices().await.unwrap();
        store.upsert_offers(&[spot], &mut cur).await.unwrap();
        store.close().await;

        // The server shows the band on matching spot offers.
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut client = server.pricing().await;
        let resp = client
            .list_prices(bursar::proto::ListPricesRequest {
                provider: bursar::proto::Provider::Aws as i32,
                market: bursar::proto::Market::Spot as i32,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let g4 = resp
            .prices
            .iter()
            .find(|p| p.instance_type == "g4dn.xlarge")
            .unwrap();
        assert_eq!(g4.interruption_band, "15-20%");
        for p in &resp.prices {
            let band = bands
                .iter()
                .find(|b| b.region == p.region && b.instance_type == p.instance_type);
            assert_eq!(
                p.interruption_band,
                band.map(|b| b.label.clone()).unwrap_or_default()
            );
        }
        server.stop().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// A failing source never stops the server

#[tokio::test]
async fn a_failing_source_is_reported_and_the_server_keeps_answering() {
    for db in common::both_backends().await {
        let fx = Fixture::start(|_| FixtureResponse::status(503, "unavailable")).await;
        let mut cfg = common::test_config(&db);
        cfg.sources.azure.enabled = true;
        cfg.sources.azure.endpoint = fx.base.clone();
        cfg.sources.azure.max_retries = 1;
        cfg.sources.azure.base_backoff = Duration::from_millis(1);
        let server = common::TestServer::start(cfg).await;
        let mut client = server.pricing().await;
        let mut azure = None;
        for _ in 0..100 {
            let st = client
                .get_source_status(bursar::proto::GetSourceStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            let a = st.sources.into_iter().find(|s| s.name == "azure").unwrap();
            if a.state == "failed" {
                azure = Some(a);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let azure = azure.expect("azure marked failed");
        assert!(azure.enabled);
        assert!(azure.last_error.contains("503"), "{}", azure.last_error);
        let prices = client
            .list_prices(bursar::proto::ListPricesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(
            prices.total_matching > 0,
            "{}: seed prices still served",
            db.backend
        );
        server.stop().await.unwrap();
    }
}
