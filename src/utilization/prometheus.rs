//! Utilisation from a Prometheus server that already scrapes dcgm-exporter: two HTTP API
//! instant queries (`POST /api/v1/query`) evaluated at the read's time. The first gives one
//! series per (host, GPU) with the highest utilisation in percent over the last `$range`
//! (the interval between reads, so a spike between two reads is not missed); the second
//! gives each GPU's highest power draw and memory in use over the same range, as evidence.
//!
//! Series name their machine by `instance_id`, else `Hostname`, else `hostname` (the
//! exporter's newer spelling). `pod` and `exported_pod` (the exporter's own pod on an idle
//! GPU, the workload's on a busy one, `exported_` when Prometheus kept its own) name a pod,
//! not the machine: the queries aggregate them away, so a GPU whose pod changed within the
//! range is still one GPU.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::dcgm::{FB_USED, GPU_UTIL, GR_ENGINE_ACTIVE, POWER_USAGE};
use super::settings::PrometheusConfig;
use super::{InstanceHint, RawSample, ReadReport, SourceError, shown_url};
use crate::domain::quote::{clip, quote};

/// The labels a series is grouped by: the machine and the GPU.
const BY: &str = "Hostname, hostname, instance_id, gpu";

/// The label the evidence query adds to say which field a series carries.
const FIELD_LABEL: &str = "bursar_field";

/// The built-in utilisation query for a range written in PromQL (`"15s"`): per host and
/// GPU, the maximum of `DCGM_FI_PROF_GR_ENGINE_ACTIVE`×100 over the range where the GPU has
/// it, else the maximum of `DCGM_FI_DEV_GPU_UTIL`.
pub fn default_query(range: &str) -> String {
    format!(
        "max by ({BY}) (max_over_time({GR_ENGINE_ACTIVE}[{range}])) * 100 \
         or max by ({BY}) (max_over_time({GPU_UTIL}[{range}]))"
    )
}

/// The evidence query: per host and GPU, the maximum power draw (W) and memory in use (MiB)
/// over the range, tagged `bursar_field="power"` / `"memory"`.
pub fn evidence_query(range: &str) -> String {
    let one = |metric: &str, field: &str| {
        format!(
            "label_replace(max by ({BY}) (max_over_time({metric}[{range}])), \
             \"{FIELD_LABEL}\", \"{field}\", \"\", \"\")"
        )
    };
    format!(
        "{} or {}",
        one(POWER_USAGE, "power"),
        one(FB_USED, "memory")
    )
}

/// A duration in PromQL: whole seconds, rounded up, at least `1s`.
pub fn promql_range(range: Duration) -> String {
    format!("{}s", range.as_millis().div_ceil(1000).max(1))
}

/// Reads utilisation (and power and memory as evidence) from the Prometheus at `cfg.url`
/// for the `range` ending at `at`. The utilisation query failing (transport, timeout, an
/// error answer, not an instant vector) is an error naming the URL; the evidence query
/// failing is counted as bad and the utilisation is kept. A series without a machine or
/// GPU label, or whose value is not a number in 0–100, is counted as bad; the rest is kept.
pub async fn query_prometheus(
    client: &reqwest::Client,
    cfg: &PrometheusConfig,
    range: Duration,
    at: DateTime<Utc>,
) -> Result<ReadReport, SourceError> {
    if cfg.url.trim().is_empty() {
        return Err(SourceError::Config(
            "idle_gpu.prometheus.url is empty".into(),
        ));
    }
    let endpoint = format!("{}/api/v1/query", cfg.url.trim().trim_end_matches('/'));
    let range_text = promql_range(range);
    let query = if cfg.query.trim().is_empty() {
        default_query(&range_text)
    } else {
        cfg.query.replace("$range", &range_text)
    };
    let body = instant_query(client, &endpoint, &query, at, cfg.timeout).await?;
    let mut report = read_utilization(&body, &shown_url(&endpoint), at)?;
    match instant_query(
        client,
        &endpoint,
        &evidence_query(&range_text),
        at,
        cfg.timeout,
    )
    .await
    {
        Ok(body) => match read_evidence(&body, &shown_url(&endpoint), &mut report) {
            Ok(()) => {}
            Err(e) => report.refuse(|| format!("power and memory query: {e}")),
        },
        Err(e) => report.refuse(|| format!("power and memory query: {e}")),
    }
    Ok(report)
}

/// POSTs one instant query evaluated at `at`; the body of a 2xx answer.
async fn instant_query(
    client: &reqwest::Client,
    endpoint: &str,
    query: &str,
    at: DateTime<Utc>,
    timeout: Duration,
) -> Result<bytes::Bytes, SourceError> {
    let url = shown_url(endpoint);
    let time = format!("{}.{:03}", at.timestamp(), at.timestamp_subsec_millis());
    let transport = |e: reqwest::Error| SourceError::Transport {
        url: url.clone(),
        detail: if e.is_timeout() {
            format!("timed out after {timeout:?}")
        } else {
            clip(&e.without_url().to_string())
        },
    };
    let resp = client
        .post(endpoint)
        .timeout(timeout)
        .form(&[("query", query), ("time", time.as_str())])
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(transport)?;
    if status.is_success() {
        return Ok(body);
    }
    // Prometheus explains a refused query in JSON (`errorType`, `error`).
    let detail = match serde_json::from_slice::<Answer>(&body) {
        Ok(Answer {
            error: Some(error),
            error_type,
            ..
        }) => format!("{}: {error}", error_type.unwrap_or_default()),
        _ => String::from_utf8_lossy(&body).chars().take(300).collect(),
    };
    Err(SourceError::Http {
        url,
        status: status.as_u16(),
        attempts: 1,
        body: clip(&detail),
    })
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<AnswerData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct AnswerData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (serde_json::Value, String),
}

/// The instant vector of an answer, element by element (each element is parsed on its own,
/// so one odd element does not lose the rest).
fn vector(body: &[u8], url: &str) -> Result<Vec<serde_json::Value>, SourceError> {
    let malformed = |detail: String| SourceError::Malformed {
        url: url.to_string(),
        detail,
    };
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| malformed(clip(&e.to_string())))?;
    if answer.status != "success" {
        return Err(malformed(format!(
            "status {}: {}",
            quote(&answer.status),
            clip(&answer.error.unwrap_or_default())
        )));
    }
    let data = answer
        .data
        .ok_or_else(|| malformed("a success without data".into()))?;
    if data.result_type != "vector" {
        return Err(malformed(format!(
            "expected an instant vector, got resultType {} (the query must return one series per GPU)",
            quote(&data.result_type)
        )));
    }
    Ok(data.result)
}

/// One series of a vector: its machine, GPU, value and labels.
struct Point {
    hint: InstanceHint,
    gpu: String,
    value: f64,
    metric: BTreeMap<String, String>,
}

/// `{k="v",...}` of a series, for a problem.
fn describe(metric: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    clip(&format!("{{{}}}", inner.join(",")))
}

/// The series of a vector whose value is a finite number ≥ 0 and that name a machine and a
/// GPU; the others are refused in `report`.
fn points(result: Vec<serde_json::Value>, report: &mut ReadReport) -> Vec<Point> {
    let mut out = Vec::with_capacity(result.len());
    for (i, element) in result.into_iter().enumerate() {
        let s: VectorSample = match serde_json::from_value(element) {
            Ok(s) => s,
            Err(e) => {
                report.refuse(|| format!("series {i}: not a sample: {}", clip(&e.to_string())));
                continue;
            }
        };
        let label = |k: &str| s.metric.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let hint = if let Some(id) = label("instance_id") {
            InstanceHint::Id(id.to_string())
        } else if let Some(h) = label("Hostname").or_else(|| label("hostname")) {
            InstanceHint::Hostname(h.to_string())
        } else {
            report.refuse(|| {
                format!(
                    "series {}: no Hostname, hostname or instance_id label (pod and exported_pod name a pod, not the machine)",
                    describe(&s.metric)
                )
            });
            continue;
        };
        let Some(gpu) = label("gpu").or_else(|| label("UUID")).map(str::to_string) else {
            report.refuse(|| format!("series {}: no gpu or UUID label", describe(&s.metric)));
            continue;
        };
        let value = match s.value.1.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => v,
            _ => {
                report.refuse(|| {
                    format!(
                        "series {}: value {} is not a finite number ≥ 0",
                        describe(&s.metric),
                        quote(&s.value.1)
                    )
                });
                continue;
            }
        };
        out.push(Point {
            hint,
            gpu,
            value,
            metric: s.metric,
        });
    }
    out
}

/// Parses the utilisation answer: one sample per (machine, GPU) taken at `at`, the highest
/// when several series name the same GPU (`Hostname` and `hostname` both present).
pub fn read_utilization(
    body: &[u8],
    url: &str,
    at: DateTime<Utc>,
) -> Result<ReadReport, SourceError> {
    let result = vector(body, url)?;
    let mut report = ReadReport::default();
    let mut max: BTreeMap<(InstanceHint, String), f64> = BTreeMap::new();
    for p in points(result, &mut report) {
        if p.value > 100.0 {
            report.refuse(|| {
                format!(
                    "series {}: {} is not a percentage 0–100",
                    describe(&p.metric),
                    p.value
                )
            });
            continue;
        }
        let slot = max.entry((p.hint, p.gpu)).or_insert(p.value);
        *slot = slot.max(p.value);
    }
    report.samples = max
        .into_iter()
        .map(|((hint, gpu), utilization_percent)| RawSample {
            hint,
            gpu,
            at,
            utilization_percent,
            memory_used_mib: None,
            power_watts: None,
        })
        .collect();
    Ok(report)
}

/// Parses the evidence answer and sets each sample's power and memory (the highest series
/// of each). A series says its field by `bursar_field`, else by its metric name
/// (`DCGM_FI_DEV_POWER_USAGE`, `DCGM_FI_DEV_FB_USED`). Evidence for a GPU without a
/// utilisation sample is dropped (it says nothing about activity).
pub fn read_evidence(body: &[u8], url: &str, report: &mut ReadReport) -> Result<(), SourceError> {
    let result = vector(body, url)?;
    let mut power: BTreeMap<(InstanceHint, String), f64> = BTreeMap::new();
    let mut memory: BTreeMap<(InstanceHint, String), f64> = BTreeMap::new();
    for p in points(result, report) {
        let field = p
            .metric
            .get(FIELD_LABEL)
            .or_else(|| p.metric.get("__name__"))
            .map(String::as_str);
        let map = match field {
            Some("power") | Some(POWER_USAGE) => &mut power,
            Some("memory") | Some(FB_USED) => &mut memory,
            _ => {
                report
                    .refuse(|| format!("series {}: neither power nor memory", describe(&p.metric)));
                continue;
            }
        };
        let slot = map.entry((p.hint, p.gpu)).or_insert(p.value);
        *slot = slot.max(p.value);
    }
    for s in &mut report.samples {
        let key = (s.hint.clone(), s.gpu.clone());
        s.power_watts = power.get(&key).copied();
        s.memory_used_mib = memory.get(&key).copied();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(name: &str) -> Vec<u8> {
        let p = format!(
            "{}/../shared/data/gpu-metrics/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_772_476_205, 0).unwrap()
    }

    const HOST: &str = "ip-100-64-147-149.ec2.internal";

    #[test]
    fn the_recorded_h100_answer_gives_eight_gpus_of_one_host() {
        let r =
            read_utilization(&recorded("prometheus-query-dcgm-gpu-util.json"), "u", at()).unwrap();
        assert_eq!(r.bad, 0, "{:?}", r.problems);
        let gpus: Vec<&str> = r.samples.iter().map(|s| s.gpu.as_str()).collect();
        assert_eq!(gpus, ["0", "1", "2", "3", "4", "5", "6", "7"]);
        for s in &r.samples {
            assert_eq!(s.hint, InstanceHint::Hostname(HOST.into()));
            assert_eq!((s.utilization_percent, s.at), (0.0, at()));
        }
    }

    #[test]
    fn evidence_sets_power_and_memory_per_gpu_and_memory_is_not_activity() {
        let mut r2 =
            read_utilization(&recorded("prometheus-query-dcgm-gpu-util.json"), "u", at()).unwrap();
        let both = merged_evidence();
        read_evidence(&both, "u", &mut r2).unwrap();
        assert_eq!(r2.bad, 0, "{:?}", r2.problems);
        let g2 = &r2.samples[2];
        assert_eq!(g2.utilization_percent, 0.0);
        assert_eq!(g2.memory_used_mib, Some(74166.0));
        assert!(g2.power_watts.unwrap() > 110.0, "{g2:?}");
        for s in r2.samples.iter().filter(|s| s.gpu != "2") {
            assert_eq!(s.memory_used_mib, Some(0.0), "{s:?}");
            assert!(s.power_watts.unwrap() < 75.0, "{s:?}");
        }
    }

    /// The recorded power and memory answers as one vector, as the evidence query returns.
    fn merged_evidence() -> Vec<u8> {
        let mut a: serde_json::Value =
            serde_json::from_slice(&recorded("prometheus-query-dcgm-power-usage.json")).unwrap();
        let b: serde_json::Value =
            serde_json::from_slice(&recorded("prometheus-query-dcgm-fb-used.json")).unwrap();
        let extra = b["data"]["result"].as_array().unwrap().clone();
        a["data"]["result"].as_array_mut().unwrap().extend(extra);
        serde_json::to_vec(&a).unwrap()
    }

    #[test]
    fn bad_series_are_counted_and_named_and_the_rest_is_kept() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
 {"metric":{"Hostname":"a","gpu":"0","pod":"trainer"},"value":[1,"12.5"]},
 {"metric":{"hostname":"b","gpu":"0","exported_pod":"trainer"},"value":[1,"3"]},
 {"metric":{"instance_id":"i-9","Hostname":"c","gpu":"1"},"value":[1,"4"]},
 {"metric":{"Hostname":"a","gpu":"0"},"value":[1,"20"]},
 {"metric":{"gpu":"0","pod":"dcgm-exporter-x","exported_pod":"trainer"},"value":[1,"5"]},
 {"metric":{"Hostname":"a"},"value":[1,"5"]},
 {"metric":{"Hostname":"a","gpu":"2"},"value":[1,"NaN"]},
 {"metric":{"Hostname":"a","gpu":"3"},"value":[1,"-1"]},
 {"metric":{"Hostname":"a","gpu":"4"},"value":[1,"abc"]},
 {"metric":{"Hostname":"a","gpu":"5"},"value":[1,"250"]},
 {"metric":{"Hostname":"a","gpu":"6"}}
]}}"#;
        let r = read_utilization(body, "u", at()).unwrap();
        let got: Vec<(InstanceHint, &str, f64)> = r
            .samples
            .iter()
            .map(|s| (s.hint.clone(), s.gpu.as_str(), s.utilization_percent))
            .collect();
        assert_eq!(
            got,
            [
                (InstanceHint::Id("i-9".into()), "1", 4.0),
                (InstanceHint::Hostname("a".into()), "0", 20.0),
                (InstanceHint::Hostname("b".into()), "0", 3.0),
            ]
        );
        assert_eq!(r.bad, 7, "{:#?}", r.problems);
        let all = r.problems.join("\n");
        for needle in [
            "no Hostname, hostname or instance_id label",
            "{Hostname=\"a\"}: no gpu",
            "gpu=\"2\"}: value \"NaN\"",
            "gpu=\"3\"}: value \"-1\"",
            "gpu=\"4\"}: value \"abc\"",
            "250 is not a percentage",
            "series 10: not a sample",
        ] {
            assert!(all.contains(needle), "{needle}\nnot in\n{all}");
        }
    }

    #[test]
    fn error_answers_and_other_result_types_are_errors_naming_the_url() {
        for (body, needle) in [
            (
                &br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#[..],
                "parse error",
            ),
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
                "resultType \"matrix\"",
            ),
            (br#"{"status":"success"}"#, "without data"),
            (b"<html>", "expected value"),
        ] {
            let e = read_utilization(body, "http://prom/api/v1/query", at())
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(needle) && e.contains("http://prom"), "{e}");
        }
    }

    #[test]
    fn queries_name_the_range_and_group_by_machine_and_gpu_only() {
        assert_eq!(promql_range(Duration::from_secs(15)), "15s");
        assert_eq!(promql_range(Duration::from_millis(1500)), "2s");
        assert_eq!(promql_range(Duration::ZERO), "1s");
        let q = default_query("15s");
        assert!(q.contains("max_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE[15s])) * 100"));
        assert!(q.contains(" or max by (Hostname, hostname, instance_id, gpu)"));
        assert!(!q.contains("pod"));
        let e = evidence_query("30s");
        assert!(
            e.contains("DCGM_FI_DEV_POWER_USAGE[30s]") && e.contains("DCGM_FI_DEV_FB_USED[30s]")
        );
    }
}
