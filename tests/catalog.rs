//! Catalog dates and price sanity, end to end on both backends: an import dated with
//! `--observed-at` goes stale in ListPrices and SelectProvider; the real catalog's
//! $0.0166/h 8-vCPU Azure offer is flagged `suspect`, explained, and skipped on request or
//! by policy; and what `bursar prices` prints of it.
mod common;

use std::path::Path;
use std::process::{Command, Output};

use bursar::proto;
use bursar::proto::placement_service_client::PlacementServiceClient;
use bursar::store::Store;

fn bursar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(args)
        .env_remove("BURSAR_DATABASE_URL")
        .env_remove("BURSAR_CONFIG")
        .env_remove("BURSAR_SERVER")
        .output()
        .expect("run bursar")
}

async fn bursar_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        bursar(&a)
    })
    .await
    .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// The real Azure catalog's rows, unchanged, for every 8-vCPU size and the whole
/// `Standard_F…ams_v6` family (the family of the $0.0166/h offer): a tenth of the file, so
/// the import stays quick in a debug build.
fn azure_subset(dir: &Path) {
    std::fs::create_dir_all(dir.join("azure")).unwrap();
    let mut r = csv::Reader::from_path(common::shared("skypilot-catalog/azure/vms.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    let ty = headers.iter().position(|h| h == "InstanceType").unwrap();
    let cpus = headers.iter().position(|h| h == "vCPUs").unwrap();
    let mut w = csv::Writer::from_path(dir.join("azure/vms.csv")).unwrap();
    w.write_record(&headers).unwrap();
    for rec in r.records() {
        let rec = rec.unwrap();
        let t = &rec[ty];
        let fams_v6 = t.starts_with("Standard_F") && t.ends_with("ams_v6");
        if fams_v6 || rec[cpus].parse::<f64>().ok() == Some(8.0) {
            w.write_record(&rec).unwrap();
        }
    }
    w.flush().unwrap();
    std::fs::create_dir_all(dir.join("common")).unwrap();
    std::fs::copy(
        common::shared("skypilot-catalog/common/metadata.csv"),
        dir.join("common/metadata.csv"),
    )
    .unwrap();
}

fn cpu_request(cpus: u32, skip_suspect: bool) -> proto::SelectProviderRequest {
    proto::SelectProviderRequest {
        resources: Some(proto::Resources {
            min_vcpus: cpus,
            ..Default::default()
        }),
        expected_hours: 1.0,
        market: proto::MarketPolicy::SpotAllowed as i32,
        constraints: Some(proto::Constraints {
            skip_suspect,
            ..Default::default()
        }),
        top_k: 10,
        ..Default::default()
    }
}

/// Every offer ListPrices returns for `req`, over all pages.
async fn list_all(server: &common::TestServer, req: proto::ListPricesRequest) -> Vec<proto::Price> {
    let mut client = server.pricing().await;
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let resp = client
            .list_prices(proto::ListPricesRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..req.clone()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(resp.prices);
        if resp.next_page_token.is_empty() {
            return out;
        }
        token = resp.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_dated_with_observed_at_goes_stale_in_list_prices_and_select_provider() {
    let cat = tempfile::tempdir().unwrap();
    common::small_catalog(cat.path(), 150);
    // A bad date is bad usage, named.
    let o = bursar(&[
        "import-catalog",
        cat.path().to_str().unwrap(),
        "--observed-at",
        "last spring",
        "--database-url",
        "sqlite::memory:",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--observed-at"),
        "{}",
        text(&o.stderr)
    );

    for db in common::both_backends().await {
        let o = bursar(&[
            "import-catalog",
            cat.path().to_str().unwrap(),
            "--observed-at",
            "2026-01-01",
            "--quiet",
            "--database-url",
            &db.url,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let server = common::TestServer::start(common::test_config(&db)).await;

        // ListPrices: every imported offer carries the date given and is past max_price_age
        // (7 days): stale.
        let prices = list_all(&server, proto::ListPricesRequest::default()).await;
        assert!(prices.len() > 300, "{}: {}", db.backend, prices.len());
        let jan1 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .timestamp();
        for p in &prices {
            assert_eq!(p.source, "catalog");
            assert_eq!(p.observed_at.as_ref().unwrap().seconds, jan1, "{p:?}");
            assert!(p.stale, "{}: {p:?}", db.backend);
        }

        // SelectProvider flags its placements stale, and on_stale = "skip" leaves none.
        let mut c = PlacementServiceClient::new(server.channel().await);
        let resp = c
            .select_provider(cpu_request(8, false))
            .await
            .unwrap()
            .into_inner();
        assert!(!resp.placements.is_empty());
        for p in &resp.placements {
            assert!(p.stale, "{}: {p:?}", db.backend);
            assert!(p.price_age_seconds > 7 * 86_400);
            assert!(p.reason.contains("stale price"), "{}", p.reason);
        }

        // `bursar prices` shows the flag in its own column, not "seed (seed)", and says so
        // when nothing matches.
        let o = bursar_async(vec![
            "prices".into(),
            "--server".into(),
            server.url.clone(),
            "--limit".into(),
            "3".into(),
        ])
        .await;
        let out = text(&o.stdout);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(out.lines().next().unwrap().ends_with("FLAGS"), "{out}");
        assert!(out.lines().nth(1).unwrap().ends_with("stale"), "{out}");
        let o = bursar_async(vec![
            "prices".into(),
            "--server".into(),
            server.url.clone(),
            "--region".into(),
            "atlantis-1".into(),
        ])
        .await;
        assert!(o.status.success());
        assert_eq!(text(&o.stdout), "no offers matched\n");
        server.stop().await.unwrap();

        let mut cfg = common::test_config(&db);
        cfg.placement.on_stale = "skip".into();
        let server = common::TestServer::start(cfg).await;
        let mut c = PlacementServiceClient::new(server.channel().await);
        let err = c.select_provider(cpu_request(8, false)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(
            err.message().contains("stale excluded"),
            "{}",
            err.message()
        );
        server.stop().await.unwrap();

        // Imported again without --observed-at: dated now, fresh again.
        let o = bursar(&[
            "import-catalog",
            cat.path().to_str().unwrap(),
            "--quiet",
            "--database-url",
            &db.url,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let server = common::TestServer::start(common::test_config(&db)).await;
        let prices = list_all(&server, proto::ListPricesRequest::default()).await;
        assert!(prices.iter().all(|p| !p.stale), "{}", db.backend);
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_0_0166_azure_offer_is_suspect_explained_and_skippable() {
    let cat = tempfile::tempdir().unwrap();
    azure_subset(cat.path());
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        bursar::tasks::import::import_catalog(&store, cat.path(), None, false)
            .await
            .unwrap();
        store.close().await;
        let server = common::TestServer::start(common::test_config(&db)).await;

        // Before: the cheapest 8-vCPU placement is the $0.016595/h spot offer in
        // newzealandnorth. Now it says what is wrong with it.
        let mut c = PlacementServiceClient::new(server.channel().await);
        let resp = c
            .select_provider(cpu_request(8, false))
            .await
            .unwrap()
            .into_inner();
        let first = &resp.placements[0];
        assert_eq!(
            (
                first.region.as_str(),
                first.instance_type.as_str(),
                first.market
            ),
            (
                "newzealandnorth",
                "Standard_F8ams_v6",
                proto::Market::Spot as i32
            ),
            "{}",
            db.backend
        );
        assert_eq!(first.price_per_hour.as_ref().unwrap().amount, "0.016595");
        assert!(first.suspect, "{}", db.backend);
        assert!(
            first.reason.contains("suspect price: 0.002074/h per vCPU")
                && first.reason.contains("Standard_Fams_v6 spot median"),
            "{}",
            first.reason
        );

        // ListPrices flags the same offers, with the reason.
        let listed = list_all(
            &server,
            proto::ListPricesRequest {
                region: "newzealandnorth".into(),
                instance_type: "Standard_F8ams_v6".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(listed.len(), 2, "on-demand $0.0898 and spot $0.016595");
        for p in &listed {
            assert!(p.suspect, "{p:?}");
            assert!(
                p.suspect_reason.starts_with("suspect price: 0.0112")
                    || p.suspect_reason.starts_with("suspect price: 0.002074"),
                "{}",
                p.suspect_reason
            );
        }
        let all = list_all(&server, proto::ListPricesRequest::default()).await;
        let suspect_8_plus = all.iter().filter(|p| p.suspect && p.vcpus >= 8.0).count() as u64;
        assert!(
            suspect_8_plus >= 10,
            "F8..F64ams_v6 in newzealandnorth, both markets"
        );

        // Skipped on request: counted under "suspect", none in the answer.
        let resp = c
            .select_provider(cpu_request(8, true))
            .await
            .unwrap()
            .into_inner();
        assert!(resp.placements.iter().all(|p| !p.suspect));
        assert!(
            resp.placements
                .iter()
                .all(|p| !(p.region == "newzealandnorth" && p.instance_type.ends_with("ams_v6")))
        );
        let skipped = resp
            .excluded
            .iter()
            .find(|e| e.constraint == "suspect")
            .map(|e| e.offers);
        assert_eq!(skipped, Some(suspect_8_plus), "{}", db.backend);
        server.stop().await.unwrap();

        // Or by the server's policy, for every request.
        let mut cfg = common::test_config(&db);
        cfg.placement.on_suspect = "skip".into();
        let server = common::TestServer::start(cfg).await;
        let mut c = PlacementServiceClient::new(server.channel().await);
        let resp = c
            .select_provider(cpu_request(8, false))
            .await
            .unwrap()
            .into_inner();
        assert!(resp.placements.iter().all(|p| !p.suspect));
        assert!(resp.excluded.iter().any(|e| e.constraint == "suspect"));

        // `bursar prices` marks it and prints the reason under the table.
        let o = bursar_async(vec![
            "prices".into(),
            "--server".into(),
            server.url.clone(),
            "--region".into(),
            "newzealandnorth".into(),
            "--instance-type".into(),
            "Standard_F8ams_v6".into(),
        ])
        .await;
        let out = text(&o.stdout);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let spot_row = out.lines().find(|l| l.contains(" spot ")).unwrap();
        assert!(spot_row.contains("0.016595 USD"), "{out}");
        assert!(spot_row.ends_with("suspect"), "{out}");
        assert!(
            out.contains("note: azure newzealandnorth Standard_F8ams_v6 spot: suspect price"),
            "{out}"
        );
        server.stop().await.unwrap();
    }
}
