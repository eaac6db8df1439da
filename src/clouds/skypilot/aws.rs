//! AWS rows: one region-wide on-demand offer per (type, region) and one spot offer per
//! (type, AZ id).
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use csv::ByteRecord;
use rust_decimal::Decimal;

use super::*;

use crate::domain::Market;
pub(super) struct AwsFile {
    pub(super) instance_type: Col,
    pub(super) acc_name: Col,
    pub(super) acc_count: Col,
    pub(super) vcpus: Col,
    pub(super) memory: Col,
    pub(super) gpu_info: Option<Col>,
    pub(super) price: Col,
    pub(super) spot: Col,
    pub(super) region: Col,
    pub(super) zone: Col,
    pub(super) arch: Col,
    /// Region-wide on-demand price already emitted, keyed "type\x1fregion".
    pub(super) on_demand: HashMap<String, Decimal>,
    pub(super) key_buf: String,
}

impl AwsFile {
    pub(super) fn new(h: &ByteRecord, path: &Path) -> Result<Self, CatalogError> {
        Ok(AwsFile {
            instance_type: column(h, "InstanceType", path)?,
            acc_name: column(h, "AcceleratorName", path)?,
            acc_count: column(h, "AcceleratorCount", path)?,
            vcpus: column(h, "vCPUs", path)?,
            memory: column(h, "MemoryGiB", path)?,
            gpu_info: optional_column(h, "GpuInfo"),
            price: column(h, "Price", path)?,
            spot: column(h, "SpotPrice", path)?,
            region: column(h, "Region", path)?,
            zone: column(h, "AvailabilityZone", path)?,
            arch: column(h, "Arch", path)?,
            on_demand: HashMap::new(),
            key_buf: String::new(),
        })
    }
}

pub(super) fn normalise_arch(a: &str) -> &str {
    match a {
        "" | "x86_64" | "amd64" | "x86-64" => "x86_64",
        "arm64" | "aarch64" => "arm64",
        other => other,
    }
}

impl RowHandler for AwsFile {
    fn row(
        &mut self,
        rec: &ByteRecord,
        ctx: &mut FileCtx<'_>,
        out: &mut Out<'_>,
    ) -> Result<Result<(), RowIssue>, CatalogError> {
        let parsed = (|| {
            Ok::<_, RowIssue>((
                text(rec, self.instance_type)?,
                text(rec, self.acc_name)?,
                number_or_zero(rec, self.acc_count)?,
                number(rec, self.vcpus)?,
                number(rec, self.memory)?,
                opt_text(rec, self.gpu_info)?,
                price(rec, self.price)?,
                price(rec, self.spot)?,
                text(rec, self.region)?,
                text(rec, self.zone)?,
                text(rec, self.arch)?,
            ))
        })();
        let (ty, acc, count, vcpus, mem, info, od, spot, region, zone, arch) = match parsed {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if ty.is_empty() {
            return Ok(Err(issue(self.instance_type, ty)));
        }
        let gpu_mem = gpu_memory(info, acc, count, ctx.gpu_memory);
        let a = attrs(vcpus, mem, acc, count, gpu_mem, normalise_arch(arch));

        match od {
            None => ctx.skip(SkipReason::NoOnDemandPrice),
            Some(p) => {
                self.key_buf.clear();
                let _ = write!(self.key_buf, "{ty}\x1f{region}");
                match self.on_demand.get(self.key_buf.as_str()) {
                    Some(prev) if *prev == p => {}
                    Some(_) => ctx.skip(SkipReason::ConflictingOnDemand),
                    None => {
                        self.on_demand.insert(self.key_buf.clone(), p);
                        ctx.emit(out, Market::OnDemand, Some(p), region, "", ty, &a)?;
                    }
                }
            }
        }
        ctx.emit(out, Market::Spot, spot, region, zone, ty, &a)?;
        Ok(Ok(()))
    }
}
