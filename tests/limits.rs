//! Hostile input over gRPC, on both backends: every stored string has a limit and a value
//! over it is INVALID_ARGUMENT naming the field and the limit (nothing stored); every error
//! that echoes an input quotes a short prefix and the length, so a 10 KB value gives a short
//! message (gRPC clients refuse status messages over 8 KB and report RESOURCE_EXHAUSTED).
mod common;

use bursar::domain::limits;
use bursar::proto;
use bursar::proto::budget_service_client::BudgetServiceClient;
use bursar::proto::placement_service_client::PlacementServiceClient;
use bursar::proto::spend_service_client::SpendServiceClient;
use tonic::{Code, Status};

/// 10 KB of a value no field accepts, with a terminal escape in the middle.
fn big() -> String {
    format!("{}\u{1b}[31m{}", "q".repeat(5_000), "z".repeat(5_115))
}

/// INVALID_ARGUMENT naming `field`, short, one line, no control characters.
#[track_caller]
fn short_invalid(r: Result<impl std::fmt::Debug, Status>, field: &str, what: &str) -> String {
    let s = r.expect_err(what);
    let m = s.message().to_string();
    assert_eq!(s.code(), Code::InvalidArgument, "{what}: {m:.300}");
    assert!(m.len() < 600, "{what}: {} bytes: {m:.300}", m.len());
    assert!(m.starts_with(field), "{what}: should name {field}: {m}");
    assert!(!m.chars().any(char::is_control), "{what}: {m:?}");
    m
}

fn budget(name: &str) -> proto::Budget {
    proto::Budget {
        name: name.into(),
        amount: Some(proto::Money {
            amount: "1000".into(),
            currency: "USD".into(),
        }),
        thresholds: vec![proto::Threshold {
            percent: "80".into(),
            ..Default::default()
        }],
        emails: vec!["finops@example.com".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn over_long_strings_are_refused_naming_the_limit_and_nothing_is_stored() {
    for db in common::both_backends().await {
        let b = db.backend;
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut placement = PlacementServiceClient::new(server.channel().await);
        let mut budgets = BudgetServiceClient::new(server.channel().await);

        // A 3 MB unavailability reason; the limit itself is accepted.
        let mark = |reason: String| proto::MarkUnavailableRequest {
            provider: proto::Provider::Aws as i32,
            region: "us-east-1".into(),
            reason,
            ttl_seconds: 3600,
            ..Default::default()
        };
        let m = short_invalid(
            placement
                .mark_unavailable(mark("x".repeat(3 * 1024 * 1024)))
                .await,
            "reason",
            b,
        );
        assert!(
            m.contains("3145728 bytes") && m.contains("500 bytes"),
            "{m}"
        );
        short_invalid(
            placement
                .mark_unavailable(mark("zone down\nFAKE LOG LINE".into()))
                .await,
            "reason",
            b,
        );
        for (field, req) in [
            (
                "zone",
                proto::MarkUnavailableRequest {
                    zone: big(),
                    ..mark("maintenance".into())
                },
            ),
            (
                "region",
                proto::MarkUnavailableRequest {
                    region: big(),
                    ..mark("maintenance".into())
                },
            ),
        ] {
            short_invalid(placement.mark_unavailable(req).await, field, b);
        }
        let listed = placement
            .list_unavailable(proto::ListUnavailableRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(listed.marks.is_empty(), "{b}: nothing stored");
        let ok = placement
            .mark_unavailable(mark("r".repeat(limits::MARK_REASON.max_bytes)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ok.reason.len(), 500, "{b}");

        // A 3 MB Slack webhook URL, and every other string of a budget.
        let hook = format!("https://hooks.slack.com/services/{}", "S".repeat(3 << 20));
        let cases: Vec<(&str, proto::Budget)> = vec![
            ("budget.slack_webhooks[0]", {
                let mut p = budget("ml");
                p.slack_webhooks = vec![hook];
                p
            }),
            ("budget.name", budget(&big())),
            ("budget.emails[0]", {
                let mut p = budget("ml");
                p.emails = vec![format!("{}@example.com", big())];
                p
            }),
            ("budget.emails", {
                let mut p = budget("ml");
                p.emails = (0..=limits::EMAILS.max)
                    .map(|i| format!("a{i}@example.com"))
                    .collect();
                p
            }),
            ("budget.timezone", {
                let mut p = budget("ml");
                p.timezone = big();
                p
            }),
            ("budget.scope.provider", {
                let mut p = budget("ml");
                p.scope = Some(proto::BudgetScope {
                    provider: big(),
                    ..Default::default()
                });
                p
            }),
            ("budget.scope.service", {
                let mut p = budget("ml");
                p.scope = Some(proto::BudgetScope {
                    service: "s".repeat(limits::SCOPE_VALUE.max_bytes + 1),
                    ..Default::default()
                });
                p
            }),
            ("budget.scope.account", {
                let mut p = budget("ml");
                p.scope = Some(proto::BudgetScope {
                    account: big(),
                    ..Default::default()
                });
                p
            }),
            ("budget.scope.region", {
                let mut p = budget("ml");
                p.scope = Some(proto::BudgetScope {
                    region: big(),
                    ..Default::default()
                });
                p
            }),
            ("budget.scope.tag", {
                let mut p = budget("ml");
                p.scope = Some(proto::BudgetScope {
                    tag: format!("team={}", "v".repeat(limits::TAG_VALUE.max_bytes + 1)),
                    ..Default::default()
                });
                p
            }),
            ("budget.scope.tag", {
                let mut p = budget("ml");
                p.scope = Some(proto::BudgetScope {
                    tag: big(),
                    ..Default::default()
                });
                p
            }),
            ("budget.amount.currency", {
                let mut p = budget("ml");
                p.amount.as_mut().unwrap().currency = big();
                p
            }),
            ("budget.amount.amount", {
                let mut p = budget("ml");
                p.amount.as_mut().unwrap().amount = big();
                p
            }),
            ("budget.thresholds[0].percent", {
                let mut p = budget("ml");
                p.thresholds[0].percent = big();
                p
            }),
        ];
        for (field, p) in cases {
            let what = format!("{b}: {field}");
            short_invalid(
                budgets
                    .create_budget(proto::CreateBudgetRequest {
                        budget: Some(p.clone()),
                    })
                    .await,
                field,
                &what,
            );
            short_invalid(
                budgets
                    .update_budget(proto::UpdateBudgetRequest { budget: Some(p) })
                    .await,
                field,
                &what,
            );
        }
        let listed = budgets
            .list_budgets(proto::ListBudgetsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(listed.budgets.is_empty(), "{b}: nothing stored");
        short_invalid(
            budgets
                .delete_budget(proto::DeleteBudgetRequest { name: big() })
                .await,
            "name",
            b,
        );
        short_invalid(
            budgets
                .get_budget_status(proto::GetBudgetStatusRequest {
                    name: big(),
                    at: None,
                })
                .await,
            "name",
            b,
        );
        short_invalid(
            placement
                .clear_unavailable(proto::ClearUnavailableRequest { id: big() })
                .await,
            "id",
            b,
        );
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn ten_kilobyte_inputs_get_short_invalid_argument_errors() {
    for db in common::both_backends().await {
        let b = db.backend;
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut pricing = server.pricing().await;
        let mut placement = PlacementServiceClient::new(server.channel().await);
        let mut spend = SpendServiceClient::new(server.channel().await);

        // ListPrices.
        for (field, req) in [
            (
                "max_price_per_hour",
                proto::ListPricesRequest {
                    max_price_per_hour: big(),
                    ..Default::default()
                },
            ),
            (
                "region",
                proto::ListPricesRequest {
                    region: big(),
                    ..Default::default()
                },
            ),
            (
                "instance_type",
                proto::ListPricesRequest {
                    instance_type: big(),
                    ..Default::default()
                },
            ),
            (
                "gpu_model",
                proto::ListPricesRequest {
                    gpu_model: big(),
                    ..Default::default()
                },
            ),
            (
                "page_token",
                proto::ListPricesRequest {
                    page_token: big(),
                    ..Default::default()
                },
            ),
        ] {
            short_invalid(pricing.list_prices(req).await, field, b);
        }

        // GetSpend: the issue's 10 KB group-by, and every other string.
        let day = |s: i64| {
            Some(prost_types::Timestamp {
                seconds: s,
                nanos: 0,
            })
        };
        let spend_req = || proto::GetSpendRequest {
            start: day(1_725_148_800),
            end: day(1_727_740_800),
            ..Default::default()
        };
        for (field, req) in [
            (
                "group_by",
                proto::GetSpendRequest {
                    group_by: big(),
                    ..spend_req()
                },
            ),
            (
                "group_by",
                proto::GetSpendRequest {
                    group_by: format!("tag:{}", big()),
                    ..spend_req()
                },
            ),
            (
                "tag",
                proto::GetSpendRequest {
                    tag: big(),
                    ..spend_req()
                },
            ),
            (
                "tag",
                proto::GetSpendRequest {
                    tag: format!("team={}", big()),
                    ..spend_req()
                },
            ),
            (
                "provider",
                proto::GetSpendRequest {
                    provider: big(),
                    ..spend_req()
                },
            ),
            (
                "service",
                proto::GetSpendRequest {
                    service: big(),
                    ..spend_req()
                },
            ),
            (
                "region",
                proto::GetSpendRequest {
                    region: big(),
                    ..spend_req()
                },
            ),
            (
                "account",
                proto::GetSpendRequest {
                    account: big(),
                    ..spend_req()
                },
            ),
        ] {
            short_invalid(spend.get_spend(req).await, field, b);
        }

        // SelectProvider.
        let select = || proto::SelectProviderRequest {
            expected_hours: 1.0,
            market: proto::MarketPolicy::SpotAllowed as i32,
            ..Default::default()
        };
        let located = |loc: proto::DataLocation| proto::SelectProviderRequest {
            inputs: vec![proto::DataInput {
                size_gb: 10.0,
                location: Some(loc),
            }],
            ..select()
        };
        let constrained = |c: proto::Constraints| proto::SelectProviderRequest {
            constraints: Some(c),
            ..select()
        };
        for (field, req) in [
            (
                "resources.accelerators",
                proto::SelectProviderRequest {
                    resources: Some(proto::Resources {
                        accelerators: vec![big()],
                        ..Default::default()
                    }),
                    ..select()
                },
            ),
            (
                "spot.max_interruption_band",
                proto::SelectProviderRequest {
                    spot: Some(proto::SpotPolicy {
                        max_interruption_band: big(),
                        ..Default::default()
                    }),
                    ..select()
                },
            ),
            (
                "inputs.location",
                located(proto::DataLocation {
                    uri: big(),
                    ..Default::default()
                }),
            ),
            (
                "inputs.location",
                located(proto::DataLocation {
                    uri: format!("{}://bucket/key@us-east-1", "s".repeat(10_000)),
                    ..Default::default()
                }),
            ),
            (
                "inputs.location",
                located(proto::DataLocation {
                    uri: format!("s3://bucket/key@{}", big()),
                    ..Default::default()
                }),
            ),
            (
                "inputs.location",
                located(proto::DataLocation {
                    provider: proto::Provider::Aws as i32,
                    region: big(),
                    ..Default::default()
                }),
            ),
            (
                "constraints.allowed_regions",
                constrained(proto::Constraints {
                    allowed_regions: vec![big()],
                    ..Default::default()
                }),
            ),
            (
                "constraints.denied_regions",
                constrained(proto::Constraints {
                    denied_regions: vec![big()],
                    ..Default::default()
                }),
            ),
            (
                "constraints.jurisdictions",
                constrained(proto::Constraints {
                    jurisdictions: vec![big()],
                    ..Default::default()
                }),
            ),
            (
                "constraints.max_price_per_hour",
                constrained(proto::Constraints {
                    max_price_per_hour: big(),
                    ..Default::default()
                }),
            ),
            (
                "constraints.max_total_cost",
                constrained(proto::Constraints {
                    max_total_cost: big(),
                    ..Default::default()
                }),
            ),
            (
                "labels",
                proto::SelectProviderRequest {
                    labels: [("team".to_string(), big())].into(),
                    ..select()
                },
            ),
            (
                "labels",
                proto::SelectProviderRequest {
                    labels: [(big(), "ml".to_string())].into(),
                    ..select()
                },
            ),
        ] {
            short_invalid(
                placement.select_provider(req).await,
                field,
                &format!("{b}: {field}"),
            );
        }
        server.stop().await.unwrap();
    }
}

/// A NOT_FOUND that names what was asked for quotes it short too.
#[tokio::test]
async fn not_found_quotes_the_name_short() {
    for db in common::both_backends().await {
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut budgets = BudgetServiceClient::new(server.channel().await);
        let name = format!("{}{}", "n".repeat(60), "m".repeat(40));
        let s = budgets
            .delete_budget(proto::DeleteBudgetRequest { name })
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::NotFound, "{}", db.backend);
        assert_eq!(
            s.message(),
            format!("no budget named \"{}\"… (100 bytes)", "n".repeat(40))
        );
        server.stop().await.unwrap();
    }
}
