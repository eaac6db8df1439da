//! `bursar.v1.SpendService`: exact spend from the cost table, and the ingest run log.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use super::convert::{limited, timestamp};
use super::errors::{FieldError, store_status};
use crate::domain::limits;
use crate::domain::quote::quote;
use crate::domain::tags::{tag_key_problem, valid_tag_key};
use crate::proto;
use crate::proto::spend_service_server::SpendService;
use crate::store::Store;
use crate::store::billing::{Granularity, GroupBy, SpendQuery};

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
        Ok(proto::Granularity::Total) => Granularity::Total,
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
            Some(k) if valid_tag_key(limited(k, limits::TAG_KEY, "group_by")?) => {
                GroupBy::Tag(k.to_string())
            }
            Some(k) => {
                let problem = tag_key_problem(k).unwrap_or_default();
                return Err(FieldError::new("group_by", problem));
            }
            None => {
                return Err(FieldError::new(
                    "group_by",
                    format!(
                        "{}: expected provider, service, region, account or tag:<key>",
                        quote(g)
                    ),
                ));
            }
        },
    };
    let tag = match opt(&r.tag) {
        None => None,
        Some(t) => {
            let bad = || FieldError::new("tag", format!("{}: expected key=value", quote(&t)));
            let (k, v) = t.split_once('=').ok_or_else(bad)?;
            let (k, v) = (k.trim(), v.trim());
            limited(k, limits::TAG_KEY, "tag")?;
            limited(v, limits::TAG_VALUE, "tag")?;
            if !valid_tag_key(k) {
                let problem = tag_key_problem(k).unwrap_or_default();
                return Err(FieldError::new("tag", problem));
            }
            Some((k.to_string(), v.to_string()))
        }
    };
    let filter = |v: &str, field: &'static str| -> Result<Option<String>, FieldError> {
        Ok(opt(limited(v, limits::FILTER, field)?))
    };
    Ok(SpendQuery {
        start,
        end,
        granularity,
        group_by,
        provider: filter(&r.provider, "provider")?,
        service: filter(&r.service, "service")?,
        region: filter(&r.region, "region")?,
        account: filter(&r.account, "account")?,
        tag,
    })
}

/// A validated ListQuarantine request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineQuery {
    pub run_id: String,
    /// The id of the last row already listed (0: none).
    pub after: i64,
    pub limit: i64,
}

/// Validates a ListQuarantine request.
pub fn quarantine_query(r: &proto::ListQuarantineRequest) -> Result<QuarantineQuery, FieldError> {
    let run_id = r.run_id.trim();
    if run_id.is_empty() {
        return Err(FieldError::new("run_id", "required"));
    }
    let limit = match r.limit {
        0 => 100,
        n if (1..=1000).contains(&n) => n,
        n => {
            return Err(FieldError::new(
                "limit",
                format!("{n} is out of range 1..=1000"),
            ));
        }
    };
    let after = match r.page_token.trim() {
        "" => 0,
        t => decode_quarantine_token(t)?,
    };
    Ok(QuarantineQuery {
        run_id: run_id.to_string(),
        after,
        limit: i64::from(limit),
    })
}

/// The page token after quarantined row `id`.
fn encode_quarantine_token(id: i64) -> String {
    format!("q1.{id}")
}

fn decode_quarantine_token(t: &str) -> Result<i64, FieldError> {
    t.strip_prefix("q1.")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| FieldError::new("page_token", "not a token returned by ListQuarantine"))
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

    #[tracing::instrument(skip_all)]
    async fn list_quarantine(
        &self,
        request: Request<proto::ListQuarantineRequest>,
    ) -> Result<Response<proto::ListQuarantineResponse>, Status> {
        let q = quarantine_query(request.get_ref())?;
        let rows = self
            .store
            .list_quarantine(&q.run_id, q.after, q.limit + 1)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("run_id: no ingest run {:?}", q.run_id)))?;
        let more = rows.len() as i64 > q.limit;
        let page = &rows[..rows.len().min(q.limit as usize)];
        let next_page_token = match page.last() {
            Some(last) if more => encode_quarantine_token(last.id),
            _ => String::new(),
        };
        Ok(Response::new(proto::ListQuarantineResponse {
            rows: page
                .iter()
                .map(|r| proto::QuarantinedRow {
                    file: r.file.clone(),
                    line: r.line.max(0) as u64,
                    column: r.column.clone().unwrap_or_default(),
                    reason: r.reason.clone(),
                    raw: r.raw.clone(),
                })
                .collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
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
        // Runs whose process is gone show as interrupted, not running.
        if let Err(e) = self.store.interrupt_expired_runs(Utc::now()).await {
            tracing::warn!(error = %e, "could not check for interrupted ingest runs");
        }
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

    fn req(run_id: &str, limit: i32, page_token: &str) -> proto::ListQuarantineRequest {
        proto::ListQuarantineRequest {
            run_id: run_id.into(),
            limit,
            page_token: page_token.into(),
        }
    }

    #[test]
    fn quarantine_requests_are_validated_naming_the_field() {
        let q = quarantine_query(&req(" run-1 ", 0, "")).unwrap();
        assert_eq!((q.run_id.as_str(), q.after, q.limit), ("run-1", 0, 100));
        let token = encode_quarantine_token(42);
        assert_eq!(quarantine_query(&req("r", 5, &token)).unwrap().after, 42);
        for (r, field) in [
            (req("", 0, ""), "run_id"),
            (req("r", -1, ""), "limit"),
            (req("r", 1001, ""), "limit"),
            (req("r", 0, "42"), "page_token"),
            (req("r", 0, "q1.-3"), "page_token"),
            (req("r", 0, "q1.x"), "page_token"),
        ] {
            assert_eq!(quarantine_query(&r).unwrap_err().field, field, "{r:?}");
        }
    }

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
