//! Azure rows: region-wide on-demand and spot offers; Arm sizes recognised by name.
use std::path::Path;

use csv::ByteRecord;

use super::*;

use crate::domain::Market;
/// Azure Arm (Ampere/Cobalt) sizes carry a `p` among the lower-case feature letters after
/// the vCPU count: `Standard_D4ps_v5`, `Standard_E8pds_v6`, `Standard_B2pls_v2`.
pub(super) fn azure_arch(ty: &str) -> &'static str {
    let name = ty.strip_prefix("Standard_").unwrap_or(ty);
    let rest = name.trim_start_matches(|c: char| c.is_ascii_uppercase());
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = match rest.strip_prefix('-') {
        Some(r) => r.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    let features: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(rest.len())];
    if features.contains('p') {
        "arm64"
    } else {
        "x86_64"
    }
}

pub(super) struct AzureFile {
    pub(super) instance_type: Col,
    pub(super) acc_name: Col,
    pub(super) acc_count: Col,
    pub(super) vcpus: Col,
    pub(super) memory: Col,
    pub(super) gpu_info: Option<Col>,
    pub(super) price: Col,
    pub(super) spot: Col,
    pub(super) region: Col,
}

impl AzureFile {
    pub(super) fn new(h: &ByteRecord, path: &Path) -> Result<Self, CatalogError> {
        Ok(AzureFile {
            instance_type: column(h, "InstanceType", path)?,
            acc_name: column(h, "AcceleratorName", path)?,
            acc_count: column(h, "AcceleratorCount", path)?,
            vcpus: column(h, "vCPUs", path)?,
            memory: column(h, "MemoryGiB", path)?,
            gpu_info: optional_column(h, "GpuInfo"),
            price: column(h, "Price", path)?,
            spot: column(h, "SpotPrice", path)?,
            region: column(h, "Region", path)?,
        })
    }
}

impl RowHandler for AzureFile {
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
            ))
        })();
        let (ty, acc, count, vcpus, mem, info, od, spot, region) = match parsed {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if ty.is_empty() {
            return Ok(Err(issue(self.instance_type, ty)));
        }
        let gpu_mem = gpu_memory(info, acc, count, ctx.gpu_memory);
        let a = attrs(vcpus, mem, acc, count, gpu_mem, azure_arch(ty));
        ctx.emit(out, Market::OnDemand, od, region, "", ty, &a)?;
        ctx.emit(out, Market::Spot, spot, region, "", ty, &a)?;
        Ok(Ok(()))
    }
}
