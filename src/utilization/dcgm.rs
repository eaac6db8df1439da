//! dcgm-exporter, read directly: `parse_dcgm` turns one scrape (Prometheus text exposition)
//! into one `RawSample` per GPU, and `scrape_dcgm` fetches a target and parses it.
//!
//! Per GPU (label `gpu`, else `UUID`): utilisation from `DCGM_FI_PROF_GR_ENGINE_ACTIVE` (a
//! 0–1 ratio, ×100) where the exporter has it, else `DCGM_FI_DEV_GPU_UTIL` (a percentage);
//! memory from `DCGM_FI_DEV_FB_USED` (MiB); power from `DCGM_FI_DEV_POWER_USAGE` (W). When one
//! GPU has several series of a metric (MIG instances, a pod label that changed), the
//! highest is kept: a GPU is as busy as its busiest part.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::exposition::{Series, parse_line};
use super::settings::DcgmTarget;
use super::{InstanceHint, RawSample, ReadReport, SourceError, shown_url};
use crate::domain::quote::{clip, quote};

pub const GR_ENGINE_ACTIVE: &str = "DCGM_FI_PROF_GR_ENGINE_ACTIVE";
pub const GPU_UTIL: &str = "DCGM_FI_DEV_GPU_UTIL";
pub const FB_USED: &str = "DCGM_FI_DEV_FB_USED";
pub const POWER_USAGE: &str = "DCGM_FI_DEV_POWER_USAGE";

/// The largest scrape read (an 8-GPU node's full output is ~100 KB).
pub const MAX_SCRAPE_BYTES: usize = 16 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A 0–1 ratio.
    GrEngine,
    /// A percentage.
    GpuUtil,
    MemoryMib,
    PowerWatts,
}

impl Field {
    fn of(name: &str) -> Option<Field> {
        match name {
            GR_ENGINE_ACTIVE => Some(Field::GrEngine),
            GPU_UTIL => Some(Field::GpuUtil),
            FB_USED => Some(Field::MemoryMib),
            POWER_USAGE => Some(Field::PowerWatts),
            _ => None,
        }
    }

    /// The highest value that still makes sense.
    fn max(self) -> f64 {
        match self {
            Field::GrEngine => 1.0,
            Field::GpuUtil => 100.0,
            Field::MemoryMib | Field::PowerWatts => f64::MAX,
        }
    }
}

#[derive(Default)]
struct Gpu {
    gr_engine: Option<f64>,
    gpu_util: Option<f64>,
    memory: Option<f64>,
    power: Option<f64>,
    /// The first line of this GPU, for a problem about the GPU as a whole.
    first_line: usize,
}

fn keep_max(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.map_or(v, |old| old.max(v)));
}

/// Parses one dcgm-exporter scrape taken at `at`. `instance` is the id the target names
/// (`Some`, non-blank): every sample gets `InstanceHint::Id`; otherwise each sample's host is
/// its `Hostname` (or `hostname`) label. A malformed line, a NaN, a negative or
/// out-of-range value of a metric read, or a GPU with no utilisation metric is counted in
/// `bad` and described; everything else is kept.
pub fn parse_dcgm(text: &str, instance: Option<&str>, at: DateTime<Utc>) -> ReadReport {
    let instance = instance.map(str::trim).filter(|s| !s.is_empty());
    let mut report = ReadReport::default();
    let mut gpus: BTreeMap<(InstanceHint, String), Gpu> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let series = match parse_line(line) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                report.refuse(|| format!("line {n}: {}", clip(&e)));
                continue;
            }
        };
        let Some(field) = Field::of(series.name) else {
            continue;
        };
        let Some(gpu) = series.label("gpu").or_else(|| series.label("UUID")) else {
            report.refuse(|| format!("line {n}: {}: no gpu or UUID label", series.name));
            continue;
        };
        let hint = match instance {
            Some(id) => InstanceHint::Id(id.to_string()),
            None => match host_label(&series) {
                Some(h) => InstanceHint::Hostname(h.to_string()),
                None => {
                    report.refuse(|| {
                        format!(
                            "line {n}: {}{{gpu={}}}: no Hostname label, and the target names no instance",
                            series.name,
                            quote(gpu)
                        )
                    });
                    continue;
                }
            },
        };
        let v = series.value;
        if !v.is_finite() || v < 0.0 || v > field.max() {
            report.refuse(|| {
                let range = match field {
                    Field::GrEngine => "a ratio 0–1",
                    Field::GpuUtil => "a percentage 0–100",
                    _ => "a finite number ≥ 0",
                };
                format!(
                    "line {n}: {}{{gpu={}}}: {v} is not {range}",
                    series.name,
                    quote(gpu)
                )
            });
            continue;
        }
        let entry = gpus.entry((hint, gpu.to_string())).or_insert_with(|| Gpu {
            first_line: n,
            ..Gpu::default()
        });
        let slot = match field {
            Field::GrEngine => &mut entry.gr_engine,
            Field::GpuUtil => &mut entry.gpu_util,
            Field::MemoryMib => &mut entry.memory,
            Field::PowerWatts => &mut entry.power,
        };
        keep_max(slot, v);
    }
    for ((hint, gpu), g) in gpus {
        let utilization = g.gr_engine.map(|r| r * 100.0).or(g.gpu_util);
        let Some(utilization_percent) = utilization else {
            report.refuse(|| {
                format!(
                    "line {}: GPU {} of {hint}: neither {GR_ENGINE_ACTIVE} nor {GPU_UTIL} was read",
                    g.first_line,
                    quote(&gpu)
                )
            });
            continue;
        };
        report.samples.push(RawSample {
            hint,
            gpu,
            at,
            utilization_percent,
            memory_used_mib: g.memory,
            power_watts: g.power,
        });
    }
    report
}

/// `Hostname`, or `hostname` (dcgm-exporter's newer spelling), when not blank. Never `pod`
/// or `exported_pod`: those name a pod, not the machine.
pub(crate) fn host_label<'a>(s: &'a Series<'_>) -> Option<&'a str> {
    [s.label("Hostname"), s.label("hostname")]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|h| !h.is_empty())
}

/// Scrapes `target` once (within its timeout) and parses the answer as taken at `at`. A
/// transport error, a timeout, a non-2xx answer or a body that is not UTF-8 is an error
/// naming the URL; bad lines inside a good answer are counted in the report.
pub async fn scrape_dcgm(
    client: &reqwest::Client,
    target: &DcgmTarget,
    at: DateTime<Utc>,
) -> Result<ReadReport, SourceError> {
    let url = shown_url(&target.url);
    let transport = |e: reqwest::Error| SourceError::Transport {
        url: url.clone(),
        detail: if e.is_timeout() {
            format!("timed out after {:?}", target.timeout)
        } else {
            clip(&e.without_url().to_string())
        },
    };
    let mut resp = client
        .get(&target.url)
        .timeout(target.timeout)
        .header(reqwest::header::ACCEPT, "text/plain")
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(SourceError::Http {
            url,
            status: status.as_u16(),
            attempts: 1,
            body: clip(&body.chars().take(300).collect::<String>()),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_SCRAPE_BYTES {
            return Err(SourceError::Malformed {
                url,
                detail: format!("answer larger than {MAX_SCRAPE_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).map_err(|e| SourceError::Malformed {
        url: url.clone(),
        detail: format!("not UTF-8 text: {e}"),
    })?;
    Ok(parse_dcgm(&text, target.instance(), at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input the dcgm fuzz target crashed on (`tests/fuzz-regressions/dcgm/`) parses
    /// without a panic, its samples within range.
    #[test]
    fn fuzz_regressions_parse_without_panicking() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz-regressions/dcgm");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for instance in [None, Some("i-0abc")] {
                let r = parse_dcgm(&text, instance, Utc::now());
                assert!(
                    r.samples
                        .iter()
                        .all(|s| (0.0..=100.0).contains(&s.utilization_percent))
                );
            }
            n += 1;
        }
        assert!(n > 0, "no inputs in {dir}");
    }

    fn recorded() -> String {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/gpu-metrics/dcgm-exporter-rtx4000ada.prom"
        );
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_772_476_205, 0).unwrap()
    }

    #[test]
    fn the_recorded_scrape_gives_one_sample_from_gr_engine_active() {
        let r = parse_dcgm(&recorded(), None, at());
        assert_eq!(r.bad, 0, "{:?}", r.problems);
        assert_eq!(r.samples.len(), 1);
        let s = &r.samples[0];
        assert_eq!(
            s.hint,
            InstanceHint::Hostname("lke529760-766837-0a634ab30000".into())
        );
        assert_eq!(s.gpu, "0");
        assert_eq!(s.at, at());
        // GR_ENGINE_ACTIVE 0.004656 → 0.4656 %, not DCGM_FI_DEV_GPU_UTIL's 0.
        assert!((s.utilization_percent - 0.4656).abs() < 1e-9, "{s:?}");
        assert_eq!(s.memory_used_mib, Some(1.0));
        assert_eq!(s.power_watts, Some(40.979));
    }

    #[test]
    fn a_target_that_names_its_instance_keys_samples_by_id() {
        let r = parse_dcgm(&recorded(), Some(" i-0abc "), at());
        assert_eq!(r.samples[0].hint, InstanceHint::Id("i-0abc".into()));
        let r = parse_dcgm(&recorded(), Some(""), at());
        assert!(matches!(r.samples[0].hint, InstanceHint::Hostname(_)));
    }

    #[test]
    fn gpu_util_is_used_where_gr_engine_active_is_absent() {
        let text: String = recorded()
            .lines()
            .filter(|l| !l.contains(GR_ENGINE_ACTIVE))
            .map(|l| format!("{l}\n"))
            .collect();
        let text = replace_value(&text, GPU_UTIL, "37");
        let r = parse_dcgm(&text, None, at());
        assert_eq!(r.bad, 0, "{:?}", r.problems);
        assert_eq!(r.samples[0].utilization_percent, 37.0);
    }

    /// The recorded text with `metric`'s value replaced.
    fn replace_value(text: &str, metric: &str, value: &str) -> String {
        text.lines()
            .map(|l| {
                if l.starts_with(&format!("{metric}{{")) {
                    let cut = l.rfind(' ').unwrap();
                    format!("{} {value}\n", &l[..cut])
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    }

    #[test]
    fn two_gpus_and_two_hosts_are_kept_apart_and_duplicates_keep_the_max() {
        let text = r#"
DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="a",pod="dcgm-exporter-x"} 5
DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="a",exported_pod="trainer-1"} 80
DCGM_FI_DEV_GPU_UTIL{gpu="1",Hostname="a"} 2
DCGM_FI_DEV_GPU_UTIL{gpu="0",hostname="b"} 9
DCGM_FI_DEV_POWER_USAGE{gpu="0",hostname="b"} 67.5
"#;
        let r = parse_dcgm(text, None, at());
        assert_eq!(r.bad, 0);
        let got: Vec<(String, &str, f64, Option<f64>)> = r
            .samples
            .iter()
            .map(|s| {
                (
                    s.hint.to_string(),
                    s.gpu.as_str(),
                    s.utilization_percent,
                    s.power_watts,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("host a".to_string(), "0", 80.0, None),
                ("host a".to_string(), "1", 2.0, None),
                ("host b".to_string(), "0", 9.0, Some(67.5)),
            ]
        );
    }

    #[test]
    fn bad_lines_are_counted_and_named_and_the_rest_is_kept() {
        let mut text = recorded();
        text.push_str(
            r#"DCGM_FI_DEV_GPU_UTIL{gpu="1",Hostname="h"} NaN
DCGM_FI_DEV_GPU_UTIL{gpu="2",Hostname="h"} -4
DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="3",Hostname="h"} 1.7
DCGM_FI_DEV_GPU_UTIL{gpu="4",Hostname="h"} 12
DCGM_FI_DEV_POWER_USAGE{gpu="4",Hostname="h"} -1
DCGM_FI_DEV_GPU_UTIL{gpu="5"} 12
DCGM_FI_DEV_GPU_UTIL{Hostname="h"} 12
DCGM_FI_DEV_GPU_UTIL{gpu="6",Hostname="h" 12
garbage here
DCGM_FI_DEV_FB_USED{gpu="7",Hostname="h"} 100
"#,
        );
        let r = parse_dcgm(&text, None, at());
        let lines = recorded().lines().count();
        // The recorded GPU and host h's GPU 4 are kept (4 without its bad power reading).
        assert_eq!(r.samples.len(), 2, "{:?}", r.samples);
        let g4 = r.samples.iter().find(|s| s.gpu == "4").unwrap();
        assert_eq!((g4.utilization_percent, g4.power_watts), (12.0, None));
        // NaN, negative, ratio > 1, negative power, no host, no gpu, unclosed, garbage, and
        // GPU 7 with memory but no utilisation reading.
        assert_eq!(r.bad, 9, "{:#?}", r.problems);
        assert_eq!(r.problems.len(), 9);
        let all = r.problems.join("\n");
        for needle in [
            format!(
                "line {}: DCGM_FI_DEV_GPU_UTIL{{gpu=\"1\"}}: NaN is not",
                lines + 1
            ),
            format!(
                "line {}: DCGM_FI_DEV_GPU_UTIL{{gpu=\"2\"}}: -4 is not",
                lines + 2
            ),
            format!(
                "line {}: {GR_ENGINE_ACTIVE}{{gpu=\"3\"}}: 1.7 is not a ratio",
                lines + 3
            ),
            format!("line {}: {POWER_USAGE}{{gpu=\"4\"}}: -1", lines + 5),
            format!(
                "line {}: DCGM_FI_DEV_GPU_UTIL{{gpu=\"5\"}}: no Hostname",
                lines + 6
            ),
            format!("line {}: DCGM_FI_DEV_GPU_UTIL: no gpu or UUID", lines + 7),
            format!(
                "line {}: DCGM_FI_DEV_GPU_UTIL: after label Hostname",
                lines + 8
            ),
            format!("line {}: garbage: ", lines + 9),
            format!("line {}: GPU \"7\" of host h: neither", lines + 10),
        ] {
            assert!(all.contains(&needle), "{needle}\nnot in\n{all}");
        }
    }
}
