//! GCP rows: offers per zone; GPU machines composed from the host row plus the
//! accelerator row of the same zone (built-in GPU families, and N1 hosts with attachable
//! GPUs as `n1-highmem-8+T4x1`); TPUs skipped.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use csv::ByteRecord;
use rust_decimal::Decimal;

use super::*;

use crate::domain::{InstanceAttrs, Market};
/// GPUs that GCP attaches to N1 hosts, and the `n1-highmem-N` host used per GPU count.
pub(super) const N1_GPUS: [&str; 5] = ["T4", "V100", "P100", "P4", "K80"];
pub(super) const N1_HOSTS: [(u32, u32); 4] = [(1, 8), (2, 16), (4, 32), (8, 64)];
/// What a GCP machine type is, for pricing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GcpKind {
    Plain,
    /// Host price only in its row; add the accelerator row (model, count) of its zone.
    BuiltinGpu(&'static str, u32),
    /// Looks like a GPU machine family but the shape is not one we know how to price.
    UnknownGpu,
    TpuHost,
}

pub(super) fn classify_gcp(ty: &str) -> GcpKind {
    if ty.ends_with("-tpu") {
        return GcpKind::TpuHost;
    }
    let base = ty.strip_suffix("-nolssd").unwrap_or(ty);
    if let Some(size) = base.strip_prefix("g2-standard-") {
        return match size {
            "4" | "8" | "12" | "16" | "32" => GcpKind::BuiltinGpu("L4", 1),
            "24" => GcpKind::BuiltinGpu("L4", 2),
            "48" => GcpKind::BuiltinGpu("L4", 4),
            "96" => GcpKind::BuiltinGpu("L4", 8),
            _ => GcpKind::UnknownGpu,
        };
    }
    const FAMILIES: [(&str, &str); 8] = [
        ("a2-highgpu-", "A100"),
        ("a2-megagpu-", "A100"),
        ("a2-ultragpu-", "A100-80GB"),
        ("a3-highgpu-", "H100"),
        ("a3-edgegpu-", "H100"),
        ("a3-megagpu-", "H100-MEGA"),
        ("a3-ultragpu-", "H200"),
        ("a4-highgpu-", "B200"),
    ];
    for (prefix, model) in FAMILIES {
        if let Some(rest) = base.strip_prefix(prefix) {
            return match rest
                .strip_suffix('g')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n > 0)
            {
                Some(n) => GcpKind::BuiltinGpu(model, n),
                None => GcpKind::UnknownGpu,
            };
        }
    }
    const GPU_FAMILY_PREFIXES: [&str; 6] = ["a2-", "a3-", "a4-", "a4x-", "g2-", "g4-"];
    if GPU_FAMILY_PREFIXES.iter().any(|p| base.starts_with(p)) {
        return GcpKind::UnknownGpu;
    }
    GcpKind::Plain
}

/// GCP Arm machine families (Ampere Altra T2A, Google Axion C4A/N4A).
pub(super) fn gcp_arch(ty: &str) -> &'static str {
    if ["t2a-", "c4a-", "n4a-"].iter().any(|p| ty.starts_with(p)) {
        "arm64"
    } else {
        "x86_64"
    }
}

pub(super) struct GcpAccel {
    pub(super) model: String,
    pub(super) count: u32,
    pub(super) region: String,
    pub(super) zone: String,
    pub(super) price: Option<Decimal>,
    pub(super) spot: Option<Decimal>,
    pub(super) gpu_memory_gib: f64,
}

pub(super) struct GcpGpuVm {
    pub(super) instance_type: String,
    pub(super) region: String,
    pub(super) zone: String,
    pub(super) vcpus: f64,
    pub(super) memory_gib: f64,
    pub(super) model: &'static str,
    pub(super) count: u32,
    pub(super) price: Option<Decimal>,
    pub(super) spot: Option<Decimal>,
}

pub(super) struct GcpHost {
    pub(super) vcpus: f64,
    pub(super) memory_gib: f64,
    pub(super) price: Option<Decimal>,
    pub(super) spot: Option<Decimal>,
}

pub(super) struct GcpFile {
    pub(super) instance_type: Col,
    pub(super) vcpus: Col,
    pub(super) memory: Col,
    pub(super) acc_name: Col,
    pub(super) acc_count: Col,
    pub(super) gpu_info: Option<Col>,
    pub(super) region: Col,
    pub(super) zone: Col,
    pub(super) price: Col,
    pub(super) spot: Col,
    /// Accelerator rows in file order, indexed by "model\x1fcount\x1fzone".
    pub(super) accels: Vec<GcpAccel>,
    pub(super) accel_index: HashMap<String, usize>,
    /// GPU machines waiting for their accelerator rows (composed in `finish`).
    pub(super) gpu_vms: Vec<GcpGpuVm>,
    /// n1-highmem-{8,16,32,64} host rows, keyed "size\x1fzone".
    pub(super) n1_hosts: HashMap<String, GcpHost>,
    pub(super) key_buf: String,
}

pub(super) fn accel_key(buf: &mut String, model: &str, count: u32, zone: &str) {
    buf.clear();
    let _ = write!(buf, "{model}\x1f{count}\x1f{zone}");
}

pub(super) fn n1_key(buf: &mut String, size: u32, zone: &str) {
    buf.clear();
    let _ = write!(buf, "{size}\x1f{zone}");
}

impl GcpFile {
    pub(super) fn new(h: &ByteRecord, path: &Path) -> Result<Self, CatalogError> {
        Ok(GcpFile {
            instance_type: column(h, "InstanceType", path)?,
            vcpus: column(h, "vCPUs", path)?,
            memory: column(h, "MemoryGiB", path)?,
            acc_name: column(h, "AcceleratorName", path)?,
            acc_count: column(h, "AcceleratorCount", path)?,
            gpu_info: optional_column(h, "GpuInfo"),
            region: column(h, "Region", path)?,
            zone: column(h, "AvailabilityZone", path)?,
            price: column(h, "Price", path)?,
            spot: column(h, "SpotPrice", path)?,
            accels: Vec::new(),
            accel_index: HashMap::new(),
            gpu_vms: Vec::new(),
            n1_hosts: HashMap::new(),
            key_buf: String::new(),
        })
    }

    pub(super) fn accelerator_row(
        &mut self,
        rec: &ByteRecord,
        ctx: &mut FileCtx<'_>,
    ) -> Result<(), RowIssue> {
        let model = text(rec, self.acc_name)?;
        if model.is_empty() {
            return Err(issue(self.acc_name, model));
        }
        if model.starts_with("tpu-") {
            ctx.skip(SkipReason::Tpu);
            return Ok(());
        }
        let count_text = text(rec, self.acc_count)?;
        let count = match count_text.parse::<f64>() {
            Ok(c) if c >= 1.0 && c.fract() == 0.0 && c <= f64::from(u16::MAX) => c as u32,
            _ => return Err(issue(self.acc_count, count_text)),
        };
        let region = text(rec, self.region)?;
        let zone = text(rec, self.zone)?;
        let od = price(rec, self.price)?;
        let spot = price(rec, self.spot)?;
        let info = opt_text(rec, self.gpu_info)?;
        accel_key(&mut self.key_buf, model, count, zone);
        if self.accel_index.contains_key(self.key_buf.as_str()) {
            ctx.skip(SkipReason::DuplicateAcceleratorRow);
            return Ok(());
        }
        self.accel_index
            .insert(self.key_buf.clone(), self.accels.len());
        self.accels.push(GcpAccel {
            model: model.to_string(),
            count,
            region: region.to_string(),
            zone: zone.to_string(),
            price: od,
            spot,
            gpu_memory_gib: gpu_memory(info, model, f64::from(count), ctx.gpu_memory),
        });
        ctx.report.component_rows += 1;
        Ok(())
    }

    /// Emits the composed offers of one GPU machine in one market.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit_composed(
        ctx: &mut FileCtx<'_>,
        out: &mut Out<'_>,
        market: Market,
        host: Option<Decimal>,
        accel: Option<Decimal>,
        region: &str,
        zone: &str,
        ty: &str,
        a: &InstanceAttrs,
    ) -> Result<(), CatalogError> {
        match (host, accel) {
            (None, _) => ctx.emit(out, market, None, region, zone, ty, a),
            (Some(_), None) => {
                ctx.skip(SkipReason::MissingAccelerator);
                Ok(())
            }
            (Some(h), Some(g)) => match h.checked_add(g) {
                Some(sum) => ctx.emit(out, market, Some(sum), region, zone, ty, a),
                None => {
                    ctx.skip(SkipReason::NonPositivePrice);
                    Ok(())
                }
            },
        }
    }
}

impl RowHandler for GcpFile {
    fn row(
        &mut self,
        rec: &ByteRecord,
        ctx: &mut FileCtx<'_>,
        out: &mut Out<'_>,
    ) -> Result<Result<(), RowIssue>, CatalogError> {
        let ty = match text(rec, self.instance_type) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if ty.is_empty() {
            return Ok(self.accelerator_row(rec, ctx));
        }
        let kind = classify_gcp(ty);
        match kind {
            GcpKind::TpuHost => {
                ctx.skip(SkipReason::TpuHost);
                return Ok(Ok(()));
            }
            GcpKind::UnknownGpu => {
                ctx.skip(SkipReason::UnknownGpuMachine);
                return Ok(Ok(()));
            }
            GcpKind::Plain | GcpKind::BuiltinGpu(..) => {}
        }
        let parsed = (|| {
            Ok::<_, RowIssue>((
                number(rec, self.vcpus)?,
                number(rec, self.memory)?,
                text(rec, self.acc_name)?,
                number_or_zero(rec, self.acc_count)?,
                opt_text(rec, self.gpu_info)?,
                text(rec, self.region)?,
                text(rec, self.zone)?,
                price(rec, self.price)?,
                price(rec, self.spot)?,
            ))
        })();
        let (vcpus, mem, acc, acc_count, info, region, zone, od, spot) = match parsed {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        match kind {
            GcpKind::BuiltinGpu(model, count) => {
                self.gpu_vms.push(GcpGpuVm {
                    instance_type: ty.to_string(),
                    region: region.to_string(),
                    zone: zone.to_string(),
                    vcpus,
                    memory_gib: mem,
                    model,
                    count,
                    price: od,
                    spot,
                });
            }
            _ => {
                if let Some(size) = ty.strip_prefix("n1-highmem-").and_then(|s| s.parse().ok())
                    && N1_HOSTS.iter().any(|(_, s)| *s == size)
                {
                    n1_key(&mut self.key_buf, size, zone);
                    self.n1_hosts
                        .entry(self.key_buf.clone())
                        .or_insert(GcpHost {
                            vcpus,
                            memory_gib: mem,
                            price: od,
                            spot,
                        });
                }
                let gpu_mem = gpu_memory(info, acc, acc_count, ctx.gpu_memory);
                let a = attrs(vcpus, mem, acc, acc_count, gpu_mem, gcp_arch(ty));
                ctx.emit(out, Market::OnDemand, od, region, zone, ty, &a)?;
                ctx.emit(out, Market::Spot, spot, region, zone, ty, &a)?;
            }
        }
        Ok(Ok(()))
    }

    fn finish(&mut self, ctx: &mut FileCtx<'_>, out: &mut Out<'_>) -> Result<(), CatalogError> {
        // Built-in GPU machines: host row + accelerator row of the same zone.
        let gpu_vms = std::mem::take(&mut self.gpu_vms);
        for vm in &gpu_vms {
            accel_key(&mut self.key_buf, vm.model, vm.count, &vm.zone);
            let accel = self
                .accel_index
                .get(self.key_buf.as_str())
                .map(|&i| &self.accels[i]);
            let gpu_mem = accel
                .map(|g| g.gpu_memory_gib)
                .filter(|m| *m > 0.0)
                .or_else(|| ctx.gpu_memory.lookup(vm.model))
                .unwrap_or(0.0);
            let a = attrs(
                vm.vcpus,
                vm.memory_gib,
                vm.model,
                f64::from(vm.count),
                gpu_mem,
                "x86_64",
            );
            let (g_od, g_spot) = accel.map_or((None, None), |g| (g.price, g.spot));
            for (market, host, acc) in [
                (Market::OnDemand, vm.price, g_od),
                (Market::Spot, vm.spot, g_spot),
            ] {
                Self::emit_composed(
                    ctx,
                    out,
                    market,
                    host,
                    acc,
                    &vm.region,
                    &vm.zone,
                    &vm.instance_type,
                    &a,
                )?;
            }
        }

        // N1-attachable GPUs: n1-highmem host chosen by GPU count + accelerator row.
        let mut ty = String::new();
        for g in &self.accels {
            if !N1_GPUS.contains(&g.model.as_str()) {
                continue;
            }
            let Some(&(_, size)) = N1_HOSTS.iter().find(|(c, _)| *c == g.count) else {
                ctx.skip(SkipReason::N1CountUnsupported);
                continue;
            };
            n1_key(&mut self.key_buf, size, &g.zone);
            let Some(host) = self.n1_hosts.get(self.key_buf.as_str()) else {
                ctx.skip(SkipReason::N1HostMissing);
                continue;
            };
            ty.clear();
            let _ = write!(ty, "n1-highmem-{size}+{}x{}", g.model, g.count);
            let a = attrs(
                host.vcpus,
                host.memory_gib,
                &g.model,
                f64::from(g.count),
                g.gpu_memory_gib,
                "x86_64",
            );
            for (market, h, acc) in [
                (Market::OnDemand, host.price, g.price),
                (Market::Spot, host.spot, g.spot),
            ] {
                Self::emit_composed(ctx, out, market, h, acc, &g.region, &g.zone, &ty, &a)?;
            }
        }
        Ok(())
    }
}
