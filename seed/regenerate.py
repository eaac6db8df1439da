#!/usr/bin/env python3
"""Regenerates seed/prices.csv from the SkyPilot v8 catalog in ../shared/data/skypilot-catalog.

Usage (from the repository root):  python3 seed/regenerate.py [CATALOG_DIR] > seed/prices.csv

Reads only the catalog folder; standard library only. Applies the same rules as
src/clouds/skypilot.rs: AWS on-demand is region-wide (zone ""), AWS spot is per AZ id
(Local Zones left out); GCP prices are per zone and GPU machines are host row + accelerator
row of the same zone and market (one zone per region: the first, by name, that has both
markets); Azure prices are region-wide. See seed/README.md for provenance and dates.
"""
import csv
import re
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOG = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/data/skypilot-catalog"

# Date each provider's data reflects (see seed/README.md).
TAKEN_ON = {"aws": "2025-06-01", "gcp": "2026-05-20", "azure": "2026-05-20"}

AWS_TYPES = ["m6i.2xlarge", "p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge"]
AWS_REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]

GCP_REGIONS = ["us-central1", "europe-west4", "asia-northeast1"]
# instance type -> (accelerator, count) for GPU machines; None for plain VMs.
GCP_TYPES = {
    "e2-standard-4": None,
    "n2-standard-8": None,
    "n2d-standard-8": None,
    "c3-standard-8": None,
    "t2a-standard-4": None,
    "n1-highmem-8": None,
    "a2-highgpu-1g": ("A100", 1),
    "a2-highgpu-8g": ("A100", 8),
    "a2-ultragpu-1g": ("A100-80GB", 1),
    "a3-highgpu-8g": ("H100", 8),
    "g2-standard-8": ("L4", 1),
}
# N1 host + attachable GPU: offer name -> (host type, accelerator, count)
GCP_N1 = {
    "n1-highmem-8+T4x1": ("n1-highmem-8", "T4", 1),
    "n1-highmem-8+V100x1": ("n1-highmem-8", "V100", 1),
}
GCP_ARM = ("t2a-", "c4a-", "n4a-")

AZURE_TYPES = [
    "Standard_D2s_v3",
    "Standard_D8s_v5",
    "Standard_E8s_v5",
    "Standard_F8s_v2",
    "Standard_D4ps_v5",
    "Standard_NC4as_T4_v3",
    "Standard_NC24ads_A100_v4",
    "Standard_ND96asr_v4",
    "Standard_ND96amsr_A100_v4",
    "Standard_NC40ads_H100_v5",
    "Standard_ND96isr_H100_v5",
]
AZURE_REGIONS = ["eastus", "westeurope", "westus2"]

HEADER = ["provider", "region", "zone", "instance_type", "market", "price_per_hour",
          "currency", "vcpus", "memory_gib", "gpu_model", "gpu_count", "gpu_memory_gib",
          "arch", "taken_on"]


def num(x):
    x = float(x)
    return str(int(x)) if x == int(x) else repr(round(x, 6))


def dec(s):
    return Decimal(s) if s.strip() else None


def load_gpu_memory():
    mem = {}
    with open(CATALOG / "common/metadata.csv", newline="") as f:
        for r in csv.DictReader(f):
            mem[r["GPU"].lower()] = float(r["MemoryGB"])
    return mem


GPU_MEM = load_gpu_memory()


def gpu_memory(info, model, count):
    if not model:
        return 0.0
    m = re.search(r"SizeInMiB['\"]?:\s*(\d+)", info or "")
    if m:
        per = int(m.group(1)) / 1024
    else:
        key = model.lower()
        per = GPU_MEM.get(key)
        if per is None:
            per = next((v for k, v in GPU_MEM.items() if k.endswith(" " + key)), 0.0)
    count = float(count or 0)
    return per * count if 0 < count < 1 else per


def row(provider, region, zone, ty, market, price, vcpus, mem, gpu="", count=0, gmem=0.0, arch="x86_64"):
    assert price is not None and price > 0, (provider, ty, region, zone, market)
    return [provider, region, zone, ty, market, str(price.normalize()) if price != price.to_integral() else str(price.quantize(Decimal(1))),
            "USD", num(vcpus), num(mem), gpu, num(count) if gpu else "0", num(gmem) if gpu else "0",
            arch, TAKEN_ON[provider]]


def aws_rows():
    out = []
    with open(CATALOG / "aws/vms.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    for ty in AWS_TYPES:
        for region in AWS_REGIONS:
            rs = [r for r in rows if r["InstanceType"] == ty and r["Region"] == region]
            if not rs:
                continue
            r0 = rs[0]
            arch = {"aarch64": "arm64"}.get(r0["Arch"], r0["Arch"] or "x86_64")
            gmem = gpu_memory(r0["GpuInfo"], r0["AcceleratorName"], r0["AcceleratorCount"])
            common = dict(vcpus=r0["vCPUs"], mem=r0["MemoryGiB"], gpu=r0["AcceleratorName"],
                          count=r0["AcceleratorCount"] or 0, gmem=gmem, arch=arch)
            out.append(row("aws", region, "", ty, "on_demand", dec(r0["Price"]), **common))
            for r in sorted(rs, key=lambda r: r["AvailabilityZone"]):
                if not re.fullmatch(r"[a-z0-9]+-az\d+", r["AvailabilityZone"]):
                    continue  # Local Zone
                if dec(r["SpotPrice"]):
                    out.append(row("aws", region, r["AvailabilityZone"], ty, "spot", dec(r["SpotPrice"]), **common))
    return out


def gcp_rows():
    with open(CATALOG / "gcp/vms.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    vms, accels = {}, {}
    for r in rows:
        if r["InstanceType"]:
            vms.setdefault((r["InstanceType"], r["AvailabilityZone"]), r)
        else:
            accels.setdefault((r["AcceleratorName"], int(r["AcceleratorCount"]), r["AvailabilityZone"]), r)

    def prices(host, acc):
        od = dec(host["Price"]) + dec(acc["Price"]) if acc else dec(host["Price"])
        spot = None
        if dec(host["SpotPrice"]) is not None and (acc is None or dec(acc["SpotPrice"]) is not None):
            spot = dec(host["SpotPrice"]) + (dec(acc["SpotPrice"]) if acc else 0)
        if acc is not None and dec(acc["Price"]) is None:
            od = None
        return od, spot

    offers = []  # (name, host_type, accel (model, count) or None)
    offers += [(t, t, g) for t, g in GCP_TYPES.items()]
    offers += [(name, host, (g, c)) for name, (host, g, c) in GCP_N1.items()]
    out = []
    for name, host_type, gpu in offers:
        for region in GCP_REGIONS:
            zones = sorted(z for (t, z) in vms if t == host_type and z.startswith(region + "-"))
            best = None
            for z in zones:
                acc = accels.get((gpu[0], gpu[1], z)) if gpu else None
                if gpu and acc is None:
                    continue
                od, spot = prices(vms[(host_type, z)], acc)
                if od is None or od <= 0:
                    continue
                if best is None or (spot is not None and best[2] is None):
                    best = (z, od, spot, acc)
                if spot is not None:
                    break
            if best is None:
                continue
            z, od, spot, acc = best
            h = vms[(host_type, z)]
            model, count = gpu if gpu else ("", 0)
            gmem = gpu_memory(acc["GpuInfo"], model, count) if acc else 0.0
            arch = "arm64" if name.startswith(GCP_ARM) else "x86_64"
            common = dict(vcpus=h["vCPUs"], mem=h["MemoryGiB"], gpu=model, count=count, gmem=gmem, arch=arch)
            out.append(row("gcp", region, z, name, "on_demand", od, **common))
            if spot is not None and spot > 0:
                out.append(row("gcp", region, z, name, "spot", spot, **common))
    return out


def azure_arch(ty):
    m = re.match(r"Standard_[A-Z]+\d+(?:-\d+)?([a-z]*)", ty)
    return "arm64" if m and "p" in m.group(1) else "x86_64"


def azure_rows():
    with open(CATALOG / "azure/vms.csv", newline="") as f:
        rows = {(r["InstanceType"], r["Region"]): r for r in csv.DictReader(f)}
    out = []
    for ty in AZURE_TYPES:
        for region in AZURE_REGIONS:
            r = rows.get((ty, region))
            if r is None:
                continue
            gmem = gpu_memory(r["GpuInfo"], r["AcceleratorName"], r["AcceleratorCount"])
            common = dict(vcpus=r["vCPUs"], mem=r["MemoryGiB"], gpu=r["AcceleratorName"],
                          count=r["AcceleratorCount"] or 0, gmem=gmem, arch=azure_arch(ty))
            out.append(row("azure", region, "", ty, "on_demand", dec(r["Price"]), **common))
            if dec(r["SpotPrice"]):
                out.append(row("azure", region, "", ty, "spot", dec(r["SpotPrice"]), **common))
    return out


def main():
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(HEADER)
    for r in aws_rows() + gcp_rows() + azure_rows():
        w.writerow(r)


if __name__ == "__main__":
    main()
