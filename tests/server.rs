//! gRPC server tests over a real listener: seed prices, ListPrices filters and pages,
//! INVALID_ARGUMENT naming fields, health and reflection, source status. Both backends.
mod common;

use bursar::proto;
use bursar::proto::ListPricesRequest;
use tonic::Code;

async fn list_all(
    client: &mut proto::pricing_service_client::PricingServiceClient<tonic::transport::Channel>,
    mut req: ListPricesRequest,
) -> Vec<proto::Price> {
    let mut out = Vec::new();
    loop {
        let resp = client.list_prices(req.clone()).await.unwrap().into_inner();
        out.extend(resp.prices);
        if resp.next_page_token.is_empty() {
            return out;
        }
        req.page_token = resp.next_page_token;
    }
}

#[tokio::test]
async fn empty_database_serves_seed_prices_flagged_as_seed() {
    for db in common::both_backends().await {
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut client = server.pricing().await;
        let resp = client
            .list_prices(ListPricesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(resp.total_matching >= 50, "{}: seed has offers", db.backend);
        assert!(resp.prices.iter().all(|p| p.seed && p.source == "seed"));
        // Cheapest first, exact decimal strings.
        let prices: Vec<rust_decimal::Decimal> = resp
            .prices
            .iter()
            .map(|p| p.price_per_hour.as_ref().unwrap().amount.parse().unwrap())
            .collect();
        assert!(
            prices.windows(2).all(|w| w[0] <= w[1]),
            "{}: sorted by price",
            db.backend
        );
        assert!(
            resp.prices
                .iter()
                .all(|p| p.price_per_hour.as_ref().unwrap().currency == "USD")
        );

        // All three providers and both markets are in the seed.
        let all = list_all(
            &mut client,
            ListPricesRequest {
                page_size: 1000,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(all.len() as u64, resp.total_matching);
        for p in [
            proto::Provider::Aws,
            proto::Provider::Gcp,
            proto::Provider::Azure,
        ] {
            assert!(
                all.iter().any(|x| x.provider == p as i32),
                "{}: seed has {p:?}",
                db.backend
            );
        }
        assert!(all.iter().any(|x| x.market == proto::Market::Spot as i32));

        let status = client
            .get_source_status(proto::GetSourceStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        let seed = status
            .sources
            .iter()
            .find(|s| s.name == "seed")
            .expect("seed status");
        assert_eq!(seed.state, "ok");
        assert_eq!(seed.rows, all.len() as u64);
        let azure = status.sources.iter().find(|s| s.name == "azure").unwrap();
        assert_eq!(azure.state, "disabled");
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn filters_and_pagination_walk_every_match_once() {
    for db in common::both_backends().await {
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut client = server.pricing().await;
        let a100 = list_all(
            &mut client,
            ListPricesRequest {
                gpu_model: "a100".into(),
                min_gpu_count: 8,
                page_size: 3,
                ..Default::default()
            },
        )
        .await;
        assert!(!a100.is_empty(), "{}: seed has A100:8 offers", db.backend);
        assert!(
            a100.iter()
                .all(|p| p.gpu_model.eq_ignore_ascii_case("A100") && p.gpu_count >= 8.0)
        );
        let mut keys: Vec<_> = a100
            .iter()
            .map(|p| {
                (
                    p.provider,
                    p.region.clone(),
                    p.zone.clone(),
                    p.instance_type.clone(),
                    p.market,
                )
            })
            .collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n, "no offer twice across pages");

        let cheap = list_all(
            &mut client,
            ListPricesRequest {
                provider: proto::Provider::Aws as i32,
                market: proto::Market::OnDemand as i32,
                max_price_per_hour: "1.00".into(),
                page_size: 1000,
                ..Default::default()
            },
        )
        .await;
        for p in &cheap {
            let amount: rust_decimal::Decimal =
                p.price_per_hour.as_ref().unwrap().amount.parse().unwrap();
            assert!(amount <= rust_decimal::Decimal::ONE);
            assert_eq!(p.provider, proto::Provider::Aws as i32);
            assert_eq!(p.market, proto::Market::OnDemand as i32);
        }
        let one = client
            .list_prices(ListPricesRequest {
                region: "no-such-region".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(one.total_matching, 0);
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn bad_arguments_are_invalid_argument_naming_the_field() {
    for db in common::both_backends().await {
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut client = server.pricing().await;
        let cases = [
            (
                ListPricesRequest {
                    max_price_per_hour: "two dollars".into(),
                    ..Default::default()
                },
                "max_price_per_hour",
            ),
            (
                ListPricesRequest {
                    max_price_per_hour: "-1".into(),
                    ..Default::default()
                },
                "max_price_per_hour",
            ),
            (
                ListPricesRequest {
                    page_size: -1,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                ListPricesRequest {
                    page_size: 100_000,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                ListPricesRequest {
                    page_token: "not-a-token".into(),
                    ..Default::default()
                },
                "page_token",
            ),
            (
                ListPricesRequest {
                    provider: 17,
                    ..Default::default()
                },
                "provider",
            ),
            (
                ListPricesRequest {
                    market: 5,
                    ..Default::default()
                },
                "market",
            ),
        ];
        for (req, field) in cases {
            let err = client.list_prices(req).await.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{}", db.backend);
            assert!(
                err.message().starts_with(field),
                "{}: {} should name {field}",
                db.backend,
                err.message()
            );
        }
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn health_and_reflection_work_and_health_goes_not_serving_on_stop() {
    use tonic_health::pb::health_check_response::ServingStatus;
    for db in common::both_backends().await {
        let b = db.backend;
        let server = common::TestServer::start(common::test_config(&db)).await;
        let ch = server.channel().await;
        let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "bursar.v1.PricingService".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{b}");

        // Reflection v1 and v1alpha (older grpcurl, grpcui, Evans) list the same services.
        // Each lists itself; apart from that, the same services.
        let (v1, v1alpha) = (
            reflection_v1(ch.clone()).await,
            reflection_v1alpha(ch.clone()).await,
        );
        assert!(v1.contains(&"grpc.reflection.v1.ServerReflection".to_string()));
        assert!(v1alpha.contains(&"grpc.reflection.v1alpha.ServerReflection".to_string()));
        let others = |v: &[String]| -> Vec<String> {
            v.iter()
                .filter(|n| !n.starts_with("grpc.reflection."))
                .cloned()
                .collect()
        };
        assert_eq!(others(&v1), others(&v1alpha), "{b}");
        let names = v1;
        assert!(
            names.contains(&"bursar.v1.PricingService".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"bursar.v1.PlacementService".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"grpc.health.v1.Health".to_string()),
            "{names:?}"
        );

        // Watch health, stop the server: the watcher is told NOT_SERVING before it goes.
        let mut watch = health
            .watch(tonic_health::pb::HealthCheckRequest {
                service: "bursar.v1.PricingService".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(first.status, ServingStatus::Serving as i32, "{b}");
        let stopping = tokio::spawn(server.stop());
        // A generous deadline, not a measurement: without the change this waits forever.
        let next = tokio::time::timeout(std::time::Duration::from_secs(60), watch.message())
            .await
            .expect("a health update after stop")
            .expect("the watch stream")
            .expect("an update, not the end of the stream");
        assert_eq!(next.status, ServingStatus::NotServing as i32, "{b}");
        drop(watch);
        drop(health);
        drop(ch);
        stopping.await.unwrap().unwrap();
    }
}

/// Service names listed by reflection v1.
async fn reflection_v1(ch: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch)
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .expect("reflection v1 served")
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// Service names listed by reflection v1alpha.
async fn reflection_v1alpha(ch: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch)
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .expect("reflection v1alpha served")
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

#[tokio::test]
async fn run_fails_with_a_configuration_error_for_a_bad_database_url() {
    let cfg = bursar::config::Config {
        database_url: "mysql://nope".into(),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = bursar::server::run(cfg, listener, async {})
        .await
        .unwrap_err();
    assert!(err.is_configuration(), "{err}");
}
