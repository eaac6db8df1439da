//! `bursar.v1.SpendService`: exact spend from the cost table, and the ingest run log.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use super::errors::{FieldError, store_status};
use crate::proto;
use crate::proto::spend_service_server::SpendService;
use crate::store::Store;
use crate::store::billing::{Granularity, GroupBy, SpendQuery, tag_key_problem, valid_tag_key};

pub struct SpendApi {
    pub store: Store,
}

fn time(
    t: &Option<prost_types::Timestamp>,
    field: &'static str,
) -> Result<DateTime<Utc>, FieldError> {
    let t = t
        .as_ref()
        .ok_or_else(|| FieldError::new(field, "required"))?;
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
        .ok_or_else(|| FieldError::new(field, "out of range"))
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Validates a GetSpend request.
pub fn spend_query(r: &proto::GetSpendRequest) -> Result<SpendQuery, FieldError> {
    let start = time(&r.start, "start")?;
    let end = time(&r.end, "end")?;
    if end <= start {
        return Err(FieldError::new("end", "must be after start"));
    }
    let granularity = match proto::Granularity::try_from(r.granularity) {
        Ok(proto::Granularity::Unspecified | proto::Granularity::Day) => Granularity::Day,
        Ok(proto::Granularity::Month) => Granularity::Month,
        Err(_) => {
            return Err(FieldError::new(
                "granularity",
                format!("unknown value {}", r.granularity),
            ));
        }
    };
    let group_by = match r.group_by.trim() {
        "" => GroupBy::None,
        "provider" => GroupBy::Provider,
        "service" => GroupBy::Service,
        "region" => GroupBy::Region,
        "account" => GroupBy::Account,
        g => match g.strip_prefix("tag:") {
            Some(k) if valid_tag_key(k) => GroupBy::Tag(k.to_string()),
            Some(k) => {
                let problem = tag_key_problem(k).unwrap_or_default();
                return Err(FieldError::new("group_by", format!("{g:?}: {problem}")));
            }
            None => {
                return Err(FieldError::new(
                    "group_by",
                    format!("{g:?}: expected provider, service, region, account or tag:<key>"),
                ));
            }
        },
    };
    let tag = match opt(&r.tag) {
        None => None,
        Some(t) => match t.split_once('=') {
            Some((k, v)) if valid_tag_key(k.trim()) => {
                Some((k.trim().to_string(), v.trim().to_string()))
            }
            Some((k, _)) => {
                let problem = tag_key_problem(k.trim()).unwrap_or_default();
                return Err(FieldError::new("tag", format!("{t:?}: {problem}")));
            }
            None => return Err(FieldError::new("tag", format!("{t:?}: expected key=value"))),
        },
    };
    Ok(SpendQuery {
        start,
        end,
        granularity,
        group_by,
        provider: opt(&r.provider),
        service: opt(&r.service),
        region: opt(&r.region),
        account: opt(&r.account),
        tag,
    })
}

fn money(amount: Decimal, currency: &str) -> proto::Money {
    proto::Money {
        amount: amount.normalize().to_string(),
        currency: currency.to_string(),
    }
}

#[tonic::async_trait]
impl SpendService for SpendApi {
    #[tracing::instrument(skip_all)]
    async fn get_spend(
        &self,
        request: Request<proto::GetSpendRequest>,
    ) -> Result<Response<proto::GetSpendResponse>, Status> {
        let q = spend_query(request.get_ref())?;
        let rows = self.store.spend(&q).await.map_err(store_status)?;
        let mut billed: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut effective: BTreeMap<String, Decimal> = BTreeMap::new();
        let buckets = rows
            .iter()
            .map(|r| {
                *billed.entry(r.currency.clone()).or_default() += r.billed;
                *effective.entry(r.currency.clone()).or_default() += r.effective;
                proto::SpendBucket {
                    period_start: r.period_start.format("%Y-%m-%d").to_string(),
                    group: r.group.clone().unwrap_or_default(),
                    billed_cost: Some(money(r.billed, &r.currency)),
                    effective_cost: Some(money(r.effective, &r.currency)),
                    lines: r.lines,
                }
            })
            .collect();
        Ok(Response::new(proto::GetSpendResponse {
            buckets,
            total_billed: billed.iter().map(|(c, a)| money(*a, c)).collect(),
            total_effective: effective.iter().map(|(c, a)| money(*a, c)).collect(),
        }))
    }

    async fn list_ingest_runs(
        &self,
        request: Request<proto::ListIngestRunsRequest>,
    ) -> Result<Response<proto::ListIngestRunsResponse>, Status> {
        let limit = match request.get_ref().limit {
            0 => 50,
            n if !(1..=1000).contains(&n) => {
                return Err(
                    FieldError::new("limit", format!("{n} is out of range 1..=1000")).into(),
                );
            }
            n => n,
        };
        let runs = self
            .store
            .list_ingest_runs(i64::from(limit))
            .await
            .map_err(store_status)?;
        Ok(Response::new(proto::ListIngestRunsResponse {
            runs: runs
                .into_iter()
                .map(|r| {
                    let deviations: BTreeMap<String, u64> =
                        serde_json::from_str(&r.deviations).unwrap_or_default();
                    let totals: BTreeMap<String, serde_json::Value> =
                        serde_json::from_str(&r.totals).unwrap_or_default();
                    proto::IngestRun {
                        id: r.id,
                        source: r.source,
                        format: r.format.unwrap_or_default(),
                        variant: r.variant.unwrap_or_default(),
                        status: r.status,
                        started_at: Some(timestamp(r.started_at)),
                        finished_at: r.finished_at.map(timestamp),
                        rows_read: r.rows_read.max(0) as u64,
                        rows_stored: r.rows_stored.max(0) as u64,
                        rows_quarantined: r.rows_quarantined.max(0) as u64,
                        deviations: deviations.into_iter().collect(),
                        billed_totals: totals
                            .iter()
                            .map(|(c, v)| proto::Money {
                                amount: v["billed"].as_str().unwrap_or("0").to_string(),
                                currency: c.clone(),
                            })
                            .collect(),
                        error: r.error.unwrap_or_default(),
                    }
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_key_with_a_quote_is_named_as_such() {
        let base = proto::GetSpendRequest {
            start: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            end: Some(prost_types::Timestamp {
                seconds: 1_700_086_400,
                nanos: 0,
            }),
            ..Default::default()
        };
        for (edit, field) in [
            (
                proto::GetSpendRequest {
                    tag: "te\"am=ml".into(),
                    ..base.clone()
                },
                "tag",
            ),
            (
                proto::GetSpendRequest {
                    group_by: "tag:te\"am".into(),
                    ..base.clone()
                },
                "group_by",
            ),
        ] {
            let e = spend_query(&edit).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.message.contains("contains '\"'"), "{}", e.message);
            assert!(!e.message.contains("expected"), "{}", e.message);
        }
        let e = spend_query(&proto::GetSpendRequest {
            tag: "team".into(),
            ..base
        })
        .unwrap_err();
        assert!(e.message.contains("expected key=value"), "{}", e.message);
    }
}
