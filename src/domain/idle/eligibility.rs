//! Who the idle policy never touches, whatever the GPUs say: machines an autoscaler or
//! Kubernetes owns ([`managed_by`]), protected machines ([`protection`]) and machines
//! outside the selectors ([`excluded`]). Pure rules over a `FleetInstance`.
//!
//! Tag keys are compared ignoring ASCII case (Azure's tag names are case-insensitive; on AWS
//! and GCP the well-known keys are lower-case anyway). A tag that protects or excludes also
//! matches its value ignoring case (`bursar.io/protect=True` protects); a tag the selectors
//! *require* must match its value exactly. So a near miss never exposes a machine.
use std::collections::BTreeMap;

use super::{IdlePolicy, Selectors, TagMatch};
use crate::domain::fleet::FleetInstance;

/// How a rule names a tag key.
#[derive(Clone, Copy)]
enum Key {
    Exact(&'static str),
    Prefix(&'static str),
}

/// Tags and labels that say an autoscaler or Kubernetes owns the machine, in the order a
/// reason is picked when several match. Stopping such a machine only makes its owner start
/// a replacement.
const OWNERS: &[(Key, &str)] = &[
    // AWS
    (
        Key::Exact("aws:autoscaling:groupName"),
        "Auto Scaling group",
    ),
    (Key::Exact("aws:ec2:fleet-id"), "EC2 Fleet"),
    (Key::Exact("aws:ec2spot:fleet-request-id"), "Spot Fleet"),
    (Key::Exact("eks:nodegroup-name"), "EKS node group"),
    (Key::Exact("eks:cluster-name"), "EKS cluster"),
    (Key::Prefix("karpenter.sh/"), "Karpenter"),
    (Key::Prefix("kubernetes.io/cluster/"), "Kubernetes cluster"),
    // GCP
    (Key::Exact("goog-gke-node"), "GKE node"),
    (Key::Exact("goog-k8s-cluster-name"), "GKE cluster"),
    (Key::Exact("goog-k8s-node-pool-name"), "GKE node pool"),
    // Azure
    (Key::Prefix("aks-managed-"), "AKS"),
    (Key::Prefix("kubernetes.io-created-for-"), "AKS"),
];

/// What owns the machine, if anything: the adapter's own finding (`inst.managed_by`: a GCE
/// managed instance group, an Azure scale set) first, else the first tag rule that matches,
/// as `what: key=value` (e.g. `Auto Scaling group: aws:autoscaling:groupName=gpu-asg`).
pub fn managed_by(inst: &FleetInstance) -> Option<String> {
    if let Some(m) = inst.managed_by.as_deref().filter(|m| !m.trim().is_empty()) {
        return Some(m.to_string());
    }
    let mut best: Option<(usize, &str, &str)> = None;
    for (k, v) in &inst.labels {
        let rule = OWNERS.iter().position(|(key, _)| match *key {
            Key::Exact(e) => k.eq_ignore_ascii_case(e),
            Key::Prefix(p) => starts_with_ignore_case(k, p),
        });
        if let Some(r) = rule
            && best.is_none_or(|(b, _, _)| r < b)
        {
            best = Some((r, k, v));
        }
    }
    best.map(|(r, k, v)| format!("{}: {k}={v}", OWNERS[r].1))
}

/// Why the machine is protected, if it is: the protect tag (`tag bursar.io/protect=true`),
/// or the cloud's own protection (`cloud protection: disableApiStop`).
pub fn protection(inst: &FleetInstance, policy: &IdlePolicy) -> Option<String> {
    if let Some((k, v)) = find_tag(&inst.labels, &policy.protect_tag, Strictness::Lenient) {
        return Some(format!("tag {k}={v}"));
    }
    inst.cloud_protection
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .map(|p| format!("cloud protection: {p}"))
}

/// Why the selectors leave the machine out, if they do. Deny lists are checked first and
/// always win; an empty allow list allows all.
pub fn excluded(inst: &FleetInstance, sel: &Selectors) -> Option<String> {
    if sel
        .exclude_regions
        .iter()
        .any(|r| r.eq_ignore_ascii_case(&inst.region))
    {
        return Some(format!("region {} is excluded", inst.region));
    }
    for m in &sel.exclude_tags {
        if let Some((k, v)) = find_tag(&inst.labels, m, Strictness::Lenient) {
            return Some(format!("tag {k}={v} is excluded"));
        }
    }
    if !sel.providers.is_empty() && !sel.providers.contains(&inst.provider) {
        return Some(format!(
            "provider {} is not selected",
            inst.provider.as_str()
        ));
    }
    if !sel.regions.is_empty()
        && !sel
            .regions
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&inst.region))
    {
        return Some(format!("region {} is not selected", inst.region));
    }
    if !sel.tags.is_empty()
        && !sel
            .tags
            .iter()
            .any(|m| find_tag(&inst.labels, m, Strictness::Exact).is_some())
    {
        return Some("carries none of the selected tags".to_string());
    }
    None
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// The value must be equal.
    Exact,
    /// The value may differ in ASCII case.
    Lenient,
}

/// The label `m` names (key ignoring case; an empty `m.value` matches any value).
fn find_tag<'a>(
    labels: &'a BTreeMap<String, String>,
    m: &TagMatch,
    how: Strictness,
) -> Option<(&'a str, &'a str)> {
    labels
        .iter()
        .find(|(k, v)| {
            k.eq_ignore_ascii_case(&m.key)
                && (m.value.is_empty()
                    || match how {
                        Strictness::Exact => **v == m.value,
                        Strictness::Lenient => v.eq_ignore_ascii_case(&m.value),
                    })
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Provider;
    use crate::domain::fleet::InstanceState;

    fn inst(labels: &[(&str, &str)]) -> FleetInstance {
        FleetInstance {
            provider: Provider::Aws,
            id: "i-1".into(),
            name: "gpu-1".into(),
            scope: "us-east-1".into(),
            resource: "i-1".into(),
            region: "us-east-1".into(),
            zone: "us-east-1a".into(),
            instance_type: "p4d.24xlarge".into(),
            gpu_model: Some("A100".into()),
            gpu_count: 8,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            launched_at: None,
            state: InstanceState::Running,
            private_hostname: "ip-10-0-0-1.ec2.internal".into(),
            cloud_protection: None,
            managed_by: None,
        }
    }

    #[test]
    fn autoscalers_and_kubernetes_are_recognised_by_their_tags() {
        type Labels<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Labels, Option<&str>)] = &[
            (&[("Name", "trainer"), ("team", "ml")], None),
            (
                &[("aws:autoscaling:groupName", "gpu-asg")],
                Some("Auto Scaling group: aws:autoscaling:groupName=gpu-asg"),
            ),
            (
                &[("eks:nodegroup-name", "gpu-ng")],
                Some("EKS node group: eks:nodegroup-name=gpu-ng"),
            ),
            (
                &[("eks:cluster-name", "prod")],
                Some("EKS cluster: eks:cluster-name=prod"),
            ),
            (
                &[("kubernetes.io/cluster/prod", "owned")],
                Some("Kubernetes cluster: kubernetes.io/cluster/prod=owned"),
            ),
            (
                &[("karpenter.sh/nodepool", "gpu")],
                Some("Karpenter: karpenter.sh/nodepool=gpu"),
            ),
            (
                &[("aws:ec2spot:fleet-request-id", "sfr-1")],
                Some("Spot Fleet: aws:ec2spot:fleet-request-id=sfr-1"),
            ),
            (&[("goog-gke-node", "")], Some("GKE node: goog-gke-node=")),
            (
                &[("goog-k8s-cluster-name", "c1")],
                Some("GKE cluster: goog-k8s-cluster-name=c1"),
            ),
            (
                &[("aks-managed-poolName", "gpupool")],
                Some("AKS: aks-managed-poolName=gpupool"),
            ),
            (
                &[("AKS-Managed-Orchestrator", "k8s")],
                Some("AKS: AKS-Managed-Orchestrator=k8s"),
            ),
            (
                &[("kubernetes.io-created-for-pvc-name", "x")],
                Some("AKS: kubernetes.io-created-for-pvc-name=x"),
            ),
            // Several: the first rule wins, whatever the tags' order.
            (
                &[
                    ("kubernetes.io/cluster/prod", "owned"),
                    ("aws:autoscaling:groupName", "eks-gpu-123"),
                    ("eks:nodegroup-name", "gpu"),
                ],
                Some("Auto Scaling group: aws:autoscaling:groupName=eks-gpu-123"),
            ),
            // Look-alikes are not owners.
            (&[("kubernetes.io", "x"), ("karpenter", "y")], None),
        ];
        for (labels, want) in cases {
            assert_eq!(managed_by(&inst(labels)).as_deref(), *want, "{labels:?}");
        }
    }

    #[test]
    fn the_adapters_own_finding_comes_first() {
        let mut i = inst(&[("aws:autoscaling:groupName", "g")]);
        i.managed_by = Some("scale set vmss-gpu".into());
        assert_eq!(managed_by(&i).as_deref(), Some("scale set vmss-gpu"));
        i.managed_by = Some(" ".into());
        assert!(managed_by(&i).unwrap().starts_with("Auto Scaling group"));
    }

    #[test]
    fn protection_by_tag_leniently_or_by_the_cloud() {
        let p = IdlePolicy::default();
        for (labels, want) in [
            (vec![], None),
            (
                vec![("bursar.io/protect", "true")],
                Some("tag bursar.io/protect=true"),
            ),
            (
                vec![("Bursar.io/Protect", "TRUE")],
                Some("tag Bursar.io/Protect=TRUE"),
            ),
            (vec![("bursar.io/protect", "false")], None),
        ] {
            assert_eq!(
                protection(&inst(&labels), &p).as_deref(),
                want,
                "{labels:?}"
            );
        }
        let mut i = inst(&[]);
        i.cloud_protection = Some("disableApiStop".into());
        assert_eq!(
            protection(&i, &p).as_deref(),
            Some("cloud protection: disableApiStop")
        );
        // An empty value in the policy's tag: the key alone protects.
        let any = IdlePolicy {
            protect_tag: TagMatch::parse("keep").unwrap(),
            ..IdlePolicy::default()
        };
        assert!(protection(&inst(&[("keep", "whatever")]), &any).is_some());
    }

    #[test]
    fn selectors_allow_lists_deny_lists_and_deny_wins() {
        let tag = |s: &str| TagMatch::parse(s).unwrap();
        let labels = [("team", "ml"), ("env", "Dev")];
        let cases: Vec<(Selectors, Option<&str>)> = vec![
            (Selectors::default(), None),
            (
                Selectors {
                    providers: vec![Provider::Gcp],
                    ..Default::default()
                },
                Some("provider aws is not selected"),
            ),
            (
                Selectors {
                    providers: vec![Provider::Aws],
                    regions: vec!["US-EAST-1".into()],
                    ..Default::default()
                },
                None,
            ),
            (
                Selectors {
                    regions: vec!["eu-west-1".into()],
                    ..Default::default()
                },
                Some("region us-east-1 is not selected"),
            ),
            (
                Selectors {
                    regions: vec!["us-east-1".into()],
                    exclude_regions: vec!["us-east-1".into()],
                    ..Default::default()
                },
                Some("region us-east-1 is excluded"),
            ),
            (
                Selectors {
                    tags: vec![tag("team=ml")],
                    ..Default::default()
                },
                None,
            ),
            (
                Selectors {
                    tags: vec![tag("env=dev")],
                    ..Default::default()
                },
                Some("carries none of the selected tags"),
            ),
            (
                Selectors {
                    tags: vec![tag("team")],
                    exclude_tags: vec![tag("env=dev")],
                    ..Default::default()
                },
                Some("tag env=Dev is excluded"),
            ),
        ];
        for (sel, want) in cases {
            assert_eq!(excluded(&inst(&labels), &sel).as_deref(), want, "{sel:?}");
        }
    }
}
