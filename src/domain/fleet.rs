//! The GPU fleet as the idle policy sees it: `FleetInstance` (one machine from a cloud's
//! inventory), `InstanceState`, and `GpuSample` (one utilisation reading of one GPU, from a
//! dcgm-exporter scrape, a Prometheus query or an agent's push). Pure data; the cloud
//! adapters (`crate::fleet`) build instances, the utilisation readers build samples.
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::Provider;

/// Lifecycle state, normalised across clouds. `Other` keeps the cloud's own word.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    /// Stopped (EC2, GCE `TERMINATED`/`STOPPED`) or deallocated (Azure). Not billed for
    /// compute.
    Stopped,
    /// Azure's "stopped" without deallocation: still billed for compute.
    PoweredOff,
    /// Being deleted or gone.
    Terminated,
    Other(String),
}

impl InstanceState {
    pub fn as_str(&self) -> &str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::PoweredOff => "powered_off",
            InstanceState::Terminated => "terminated",
            InstanceState::Other(s) => s,
        }
    }

    /// Parses `as_str`'s words back (the store's column); anything else is `Other`.
    pub fn from_word(s: &str) -> InstanceState {
        match s {
            "pending" => InstanceState::Pending,
            "running" => InstanceState::Running,
            "stopping" => InstanceState::Stopping,
            "stopped" => InstanceState::Stopped,
            "powered_off" => InstanceState::PoweredOff,
            "terminated" => InstanceState::Terminated,
            other => InstanceState::Other(other.to_string()),
        }
    }

    /// Compute is no longer billed: the machine is stopped, deallocated, being deleted or
    /// gone. (An Azure VM that is only powered off is still billed.)
    pub fn not_billed(&self) -> bool {
        matches!(
            self,
            InstanceState::Stopped | InstanceState::Terminated | InstanceState::Stopping
        )
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One machine of a cloud's inventory.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetInstance {
    pub provider: Provider,
    /// EC2 instance id (`i-…`); GCE numeric instance id; Azure `vmId` (a UUID). What agents
    /// report and what samples are keyed by.
    pub id: String,
    /// EC2 `Name` tag (or the id); GCE instance name; Azure VM name.
    pub name: String,
    /// Where it lives for its cloud: AWS region, GCP project, Azure
    /// `subscription/resourceGroup`.
    pub scope: String,
    /// What the adapter addresses it by: AWS the instance id, GCP
    /// `projects/P/zones/Z/instances/NAME`, Azure the ARM resource id.
    pub resource: String,
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    /// From the catalog's hardware table (the task fills it; adapters may leave it empty).
    pub gpu_model: Option<String>,
    pub gpu_count: u32,
    /// Tags (AWS), labels (GCP), tags (Azure), as key → value.
    pub labels: BTreeMap<String, String>,
    pub launched_at: Option<DateTime<Utc>>,
    pub state: InstanceState,
    /// EC2 `PrivateDnsName`; GCE `NAME.ZONE.c.PROJECT.internal` or the hostname field;
    /// Azure computer name. What dcgm-exporter's `Hostname` label is matched against.
    pub private_hostname: String,
    /// The cloud's own protection, when set: `disableApiStop`, `disableApiTermination`,
    /// `deletionProtection`. The policy never acts on a protected machine.
    pub cloud_protection: Option<String>,
    /// What the cloud itself says owns the machine, when the adapter can tell from more than
    /// tags/labels: a GCE managed instance group (metadata `created-by`), an Azure scale set
    /// (`virtualMachineScaleSet`). Tag/label rules (Auto Scaling groups, EKS/GKE/AKS nodes,
    /// `kubernetes.io/cluster/*`) are applied by the policy (`domain::idle`) on top.
    pub managed_by: Option<String>,
}

impl FleetInstance {
    /// `provider:id`, unique across clouds.
    pub fn key(&self) -> String {
        format!("{}:{}", self.provider.as_str(), self.id)
    }
}

/// Where a sample came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleSource {
    Dcgm,
    Prometheus,
    Push,
}

impl SampleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SampleSource::Dcgm => "dcgm",
            SampleSource::Prometheus => "prometheus",
            SampleSource::Push => "push",
        }
    }
}

/// One utilisation reading of one GPU. Utilisation is a percentage (0–100) whatever the
/// source's unit (dcgm's `GR_ENGINE_ACTIVE` ratio is multiplied by 100). Not money: `f64`.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSample {
    /// The instance id (`FleetInstance::id`).
    pub instance_id: String,
    /// GPU index or UUID on that machine.
    pub gpu: String,
    pub at: DateTime<Utc>,
    pub utilization_percent: f64,
    pub memory_used_mib: Option<f64>,
    pub power_watts: Option<f64>,
    pub source: SampleSource,
}

/// Why a sample was refused (a NaN, a negative or > 100 utilisation, an empty id, ...).
/// `field` names the sample's field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct BadSample {
    pub field: &'static str,
    pub reason: String,
}

impl GpuSample {
    /// The checks every source applies before a sample is kept.
    pub fn validate(&self) -> Result<(), BadSample> {
        let bad = |field, reason: &str| {
            Err(BadSample {
                field,
                reason: reason.to_string(),
            })
        };
        if self.instance_id.trim().is_empty() {
            return bad("instance_id", "required");
        }
        if self.gpu.trim().is_empty() {
            return bad("gpu", "required");
        }
        let u = self.utilization_percent;
        if !u.is_finite() {
            return bad("utilization_percent", "not a finite number");
        }
        if !(0.0..=100.0).contains(&u) {
            return bad("utilization_percent", "outside 0–100");
        }
        for (field, v) in [
            ("memory_used_mib", self.memory_used_mib),
            ("power_watts", self.power_watts),
        ] {
            if let Some(v) = v
                && (!v.is_finite() || v < 0.0)
            {
                return bad(field, "not a finite number ≥ 0");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(u: f64) -> GpuSample {
        GpuSample {
            instance_id: "i-1".into(),
            gpu: "0".into(),
            at: DateTime::from_timestamp(0, 0).unwrap(),
            utilization_percent: u,
            memory_used_mib: None,
            power_watts: Some(70.0),
            source: SampleSource::Push,
        }
    }

    #[test]
    fn samples_outside_the_range_or_not_numbers_are_refused_naming_the_field() {
        assert!(sample(0.0).validate().is_ok());
        assert!(sample(100.0).validate().is_ok());
        for u in [f64::NAN, -1.0, 100.5, f64::INFINITY] {
            assert_eq!(
                sample(u).validate().unwrap_err().field,
                "utilization_percent"
            );
        }
        let mut s = sample(1.0);
        s.power_watts = Some(-3.0);
        assert_eq!(s.validate().unwrap_err().field, "power_watts");
        s = sample(1.0);
        s.instance_id = " ".into();
        assert_eq!(s.validate().unwrap_err().field, "instance_id");
    }

    #[test]
    fn states_round_trip_through_their_words() {
        for s in [
            InstanceState::Pending,
            InstanceState::Running,
            InstanceState::Stopping,
            InstanceState::Stopped,
            InstanceState::PoweredOff,
            InstanceState::Terminated,
            InstanceState::Other("repairing".into()),
        ] {
            assert_eq!(InstanceState::from_word(s.as_str()), s);
        }
        assert!(!InstanceState::PoweredOff.not_billed());
        assert!(InstanceState::Stopped.not_billed());
    }
}
