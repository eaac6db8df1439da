//! Matching raw readings to the inventory: an `InstanceHint::Id` to `FleetInstance::id`, a
//! `Hostname` to `private_hostname`, both case-insensitive. A short hostname matches the
//! first label of an inventory FQDN (`ip-10-0-0-5` ↔ `ip-10-0-0-5.ec2.internal`), and a
//! FQDN matches an inventory entry that is only a short name, when no other instance shares
//! that short name; two FQDNs must be equal. A reading that matches nothing (or more than
//! one machine) is unknown: counted, never guessed. A matched reading is validated
//! (`GpuSample::validate`); a refused one is bad. Pure.
use std::collections::HashMap;

use super::{InstanceHint, MAX_PROBLEMS, RawSample};
use crate::domain::fleet::{FleetInstance, GpuSample, SampleSource};
use crate::domain::quote::quote;

/// What `resolve` kept and refused.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolved {
    pub samples: Vec<GpuSample>,
    /// Readings that match no instance of the inventory (or more than one).
    pub unknown: u32,
    /// Readings refused by `GpuSample::validate`.
    pub bad: u32,
    /// The first few unknown or bad readings, described (for the caller's log).
    pub problems: Vec<String>,
}

impl Resolved {
    fn note(&mut self, problem: impl FnOnce() -> String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem());
        }
    }
}

/// A name → instance id index; `None` marks a name two instances share.
#[derive(Default)]
struct Index<'a>(HashMap<String, Option<&'a str>>);

impl<'a> Index<'a> {
    fn add(&mut self, name: &str, id: &'a str) {
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() {
            return;
        }
        self.0
            .entry(name)
            .and_modify(|v| {
                if *v != Some(id) {
                    *v = None;
                }
            })
            .or_insert(Some(id));
    }

    /// `Some(Some(id))` matched, `Some(None)` ambiguous, `None` unknown.
    fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.0.get(&name.trim().to_ascii_lowercase()).copied()
    }
}

fn first_label(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// Matches `raw` to `inventory` and validates each into a `GpuSample` from `source`.
pub fn resolve(raw: Vec<RawSample>, inventory: &[FleetInstance], source: SampleSource) -> Resolved {
    let mut ids = Index::default();
    // Full hostnames (and short ones, as written) …
    let mut hosts = Index::default();
    // … and the first label of each, for a short hint.
    let mut short = Index::default();
    for i in inventory {
        ids.add(&i.id, &i.id);
        let h = i.private_hostname.trim();
        if !h.is_empty() {
            hosts.add(h, &i.id);
            short.add(first_label(h), &i.id);
        }
    }
    let mut out = Resolved {
        samples: Vec::with_capacity(raw.len()),
        ..Resolved::default()
    };
    for r in raw {
        let found = match &r.hint {
            InstanceHint::Id(id) => ids.get(id),
            InstanceHint::Hostname(h) => {
                let h = h.trim();
                hosts.get(h).or_else(|| {
                    if h.contains('.') {
                        // A FQDN against an inventory entry that is only a short name.
                        hosts.get(first_label(h))
                    } else {
                        short.get(h)
                    }
                })
            }
        };
        let id = match found {
            Some(Some(id)) => id,
            Some(None) => {
                out.unknown = out.unknown.saturating_add(1);
                out.note(|| {
                    format!(
                        "{} (GPU {}): matches more than one instance",
                        r.hint,
                        quote(&r.gpu)
                    )
                });
                continue;
            }
            None => {
                out.unknown = out.unknown.saturating_add(1);
                out.note(|| format!("{} (GPU {}): not in the inventory", r.hint, quote(&r.gpu)));
                continue;
            }
        };
        let sample = GpuSample {
            instance_id: id.to_string(),
            gpu: r.gpu,
            at: r.at,
            utilization_percent: r.utilization_percent,
            memory_used_mib: r.memory_used_mib,
            power_watts: r.power_watts,
            source,
        };
        match sample.validate() {
            Ok(()) => out.samples.push(sample),
            Err(e) => {
                out.bad = out.bad.saturating_add(1);
                out.note(|| format!("instance {id} GPU {}: {e}", quote(&sample.gpu)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::Provider;
    use crate::domain::fleet::InstanceState;

    fn instance(id: &str, host: &str) -> FleetInstance {
        FleetInstance {
            provider: Provider::Aws,
            id: id.into(),
            name: id.into(),
            scope: "us-east-1".into(),
            resource: id.into(),
            region: "us-east-1".into(),
            zone: "us-east-1a".into(),
            instance_type: "g5.xlarge".into(),
            gpu_model: None,
            gpu_count: 1,
            labels: BTreeMap::new(),
            launched_at: None,
            state: InstanceState::Running,
            private_hostname: host.into(),
            cloud_protection: None,
            managed_by: None,
        }
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn raw(hint: InstanceHint, u: f64) -> RawSample {
        RawSample {
            hint,
            gpu: "0".into(),
            at: at(),
            utilization_percent: u,
            memory_used_mib: Some(1.0),
            power_watts: Some(67.0),
        }
    }

    fn host(h: &str) -> InstanceHint {
        InstanceHint::Hostname(h.into())
    }

    fn inventory() -> Vec<FleetInstance> {
        vec![
            instance("i-0aaa", "ip-10-0-0-5.ec2.internal"),
            instance("i-0bbb", "IP-10-0-0-6.ec2.internal"),
            instance("4711", "gpu-box"),
            instance("i-0ccc", "ip-10-0-0-7.ec2.internal"),
            instance("i-0ddd", "ip-10-0-0-7.us-west-2.compute.internal"),
            instance("i-0eee", ""),
        ]
    }

    fn matched(hint: InstanceHint) -> Option<String> {
        let r = resolve(vec![raw(hint, 5.0)], &inventory(), SampleSource::Dcgm);
        r.samples.first().map(|s| s.instance_id.clone())
    }

    #[test]
    fn hints_match_ids_and_hostnames_case_insensitively_and_short_to_long() {
        assert_eq!(
            matched(InstanceHint::Id("i-0aaa".into())).as_deref(),
            Some("i-0aaa")
        );
        assert_eq!(
            matched(InstanceHint::Id("I-0AAA".into())).as_deref(),
            Some("i-0aaa")
        );
        assert_eq!(
            matched(host("ip-10-0-0-5.ec2.internal")).as_deref(),
            Some("i-0aaa")
        );
        assert_eq!(
            matched(host("ip-10-0-0-6.EC2.internal")).as_deref(),
            Some("i-0bbb")
        );
        assert_eq!(matched(host("ip-10-0-0-5")).as_deref(), Some("i-0aaa"));
        assert_eq!(matched(host("IP-10-0-0-6")).as_deref(), Some("i-0bbb"));
        assert_eq!(matched(host("gpu-box")).as_deref(), Some("4711"));
        // A FQDN against an inventory entry that is only a short name.
        assert_eq!(
            matched(host("gpu-box.c.proj.internal")).as_deref(),
            Some("4711")
        );
    }

    #[test]
    fn unmatched_and_ambiguous_hints_are_unknown_not_guessed() {
        let raws = vec![
            raw(host("ip-10-0-0-9"), 1.0),
            // Two instances share this short name in different regions.
            raw(host("ip-10-0-0-7"), 1.0),
            // Two different FQDNs never match on their first label.
            raw(host("ip-10-0-0-5.eu-west-1.compute.internal"), 1.0),
            raw(InstanceHint::Id("i-gone".into()), 1.0),
            raw(host(""), 1.0),
            raw(host("ip-10-0-0-7.ec2.internal"), 1.0),
        ];
        let r = resolve(raws, &inventory(), SampleSource::Prometheus);
        assert_eq!(r.unknown, 5, "{:?}", r.problems);
        assert_eq!(r.bad, 0);
        assert_eq!(r.samples.len(), 1);
        assert_eq!(r.samples[0].instance_id, "i-0ccc");
        assert_eq!(r.samples[0].source, SampleSource::Prometheus);
        assert!(r.problems[0].contains("host ip-10-0-0-9 (GPU \"0\"): not in the inventory"));
        assert!(
            r.problems[1].contains("more than one instance"),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn matched_samples_are_validated_and_keep_their_evidence() {
        let mut nan_power = raw(host("ip-10-0-0-5"), 3.0);
        nan_power.power_watts = Some(f64::NAN);
        let mut no_gpu = raw(host("ip-10-0-0-5"), 3.0);
        no_gpu.gpu = " ".into();
        let raws = vec![
            raw(host("ip-10-0-0-5"), 0.4656),
            raw(host("ip-10-0-0-5"), 150.0),
            nan_power,
            no_gpu,
        ];
        let r = resolve(raws, &inventory(), SampleSource::Dcgm);
        assert_eq!((r.unknown, r.bad), (0, 3), "{:?}", r.problems);
        assert_eq!(
            r.samples,
            [GpuSample {
                instance_id: "i-0aaa".into(),
                gpu: "0".into(),
                at: at(),
                utilization_percent: 0.4656,
                memory_used_mib: Some(1.0),
                power_watts: Some(67.0),
                source: SampleSource::Dcgm,
            }]
        );
        assert!(
            r.problems[0].contains("utilization_percent"),
            "{:?}",
            r.problems
        );
        assert!(r.problems[1].contains("power_watts"));
        assert!(r.problems[2].contains("gpu"));
    }
}
