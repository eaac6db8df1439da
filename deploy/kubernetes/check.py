"""Validates the kustomize base: every resource against the Kubernetes OpenAPI schema
(kubernetes-validate, strict, offline), then what bursar needs of them. Renders with
`kubectl kustomize` when kubectl is installed, otherwise reads the kustomization's
resources itself. Prints the ConfigMap's bursar.toml path (written to argv[2]) on success.

usage: check.py BASE_DIR OUT_TOML [KUBERNETES_VERSION]
"""
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import yaml

base, out_toml = Path(sys.argv[1]), Path(sys.argv[2])
version = sys.argv[3] if len(sys.argv) > 3 else "1.30.0"
problems = []


def load_resources():
    if shutil.which("kubectl"):
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(base)], capture_output=True, text=True
        )
        if rendered.returncode != 0:
            sys.exit(f"kubectl kustomize {base}: {rendered.stderr.strip()}")
        return [d for d in yaml.safe_load_all(rendered.stdout) if d], "kubectl kustomize"
    k = yaml.safe_load((base / "kustomization.yaml").read_text())
    docs = []
    for r in k["resources"]:
        docs += [d for d in yaml.safe_load_all((base / r).read_text()) if d]
    # The kustomization's common labels, as kustomize adds them (not to selectors).
    for pairs in k.get("labels", []):
        for d in docs:
            d["metadata"].setdefault("labels", {}).update(pairs["pairs"])
    return docs, "the kustomization's resources"


docs, how = load_resources()
for d in docs:
    name = f'{d["kind"]}/{d["metadata"]["name"]}'
    try:
        kubernetes_validate.validate(d, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        problems.append(f"{name}: schema: {e.message} at {'.'.join(map(str, e.path))}")
    except kubernetes_validate.SchemaNotFoundError as e:
        problems.append(f"{name}: no schema for {e}")

by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)


def one(kind):
    found = by_kind.get(kind, [])
    if len(found) != 1:
        problems.append(f"expected one {kind}, found {len(found)}")
        return None
    return found[0]


dep, svc, pdb, cm = one("Deployment"), one("Service"), one("PodDisruptionBudget"), one("ConfigMap")
if dep:
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    if spec.get("replicas") != 3:
        problems.append(f"Deployment replicas {spec.get('replicas')}, want 3")
    if spec["selector"]["matchLabels"].items() - labels.items():
        problems.append("Deployment selector does not match its pod labels")
    sc = pod.get("securityContext", {})
    if not sc.get("runAsNonRoot") or sc.get("runAsUser", 0) == 0:
        problems.append("pods must run as a non-root user")
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        g = c.get(probe, {}).get("grpc")
        if not g or g.get("port") != ports.get("grpc"):
            problems.append(f"{probe} must be a gRPC probe on the grpc port")
    if c.get("readinessProbe", {}).get("grpc", {}).get("service") != "bursar.v1.PlacementService":
        problems.append("readiness must ask for bursar.v1.PlacementService")
    req = c.get("resources", {}).get("requests", {})
    if not req.get("cpu") or not req.get("memory"):
        problems.append("the container needs cpu and memory requests")
    env = {e["name"]: e for e in c["env"]}
    db = env.get("BURSAR_DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef")
    if not db:
        problems.append("BURSAR_DATABASE_URL must come from a Secret")
    if not env.get("BURSAR_AUTH_TOKENS", {}).get("valueFrom", {}).get("secretKeyRef"):
        problems.append("BURSAR_AUTH_TOKENS must come from a Secret")
    for e in c["env"]:
        if "value" in e and any(s in e["name"] for s in ("PASSWORD", "TOKEN", "SECRET")):
            problems.append(f"{e['name']} is set in plain text; use a secretKeyRef")
    if not c.get("securityContext", {}).get("readOnlyRootFilesystem"):
        problems.append("the root filesystem should be read-only")
    config_path = env.get("BURSAR_CONFIG", {}).get("value", "")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    cm_vol = [n for n, v in vols.items() if v.get("configMap", {}).get("name") == (cm or {}).get("metadata", {}).get("name")]
    if not cm_vol or not config_path.startswith(mounts.get(cm_vol[0], "?") + "/"):
        problems.append("BURSAR_CONFIG must point into the ConfigMap's mount")
    elif cm and Path(config_path).name not in cm.get("data", {}):
        problems.append(f"the ConfigMap has no {Path(config_path).name}")
    if svc:
        if svc["spec"]["selector"].items() - labels.items():
            problems.append("the Service's selector does not select the pods")
        for p in svc["spec"]["ports"]:
            if p["targetPort"] not in ports:
                problems.append(f"Service port {p['name']} targets unknown {p['targetPort']}")
    if pdb:
        if pdb["spec"]["selector"]["matchLabels"].items() - labels.items():
            problems.append("the PodDisruptionBudget selects no pod")
        if pdb["spec"].get("maxUnavailable", 0) >= spec.get("replicas", 0):
            problems.append("the PodDisruptionBudget allows every replica to go")
if cm:
    data = cm.get("data", {})
    if "bursar.toml" not in data:
        problems.append("the ConfigMap has no bursar.toml")
    else:
        out_toml.write_text(data["bursar.toml"])
        try:
            conf = tomllib.loads(data["bursar.toml"])
        except tomllib.TOMLDecodeError as e:
            problems.append(f"the ConfigMap's bursar.toml: {e}")
            conf = {}
        if conf.get("auth", {}).get("required") is False:
            problems.append("auth.required = false leaves every RPC open")
        # SIGTERM drains for drain_timeout after the preStop sleep; both must end
        # before the kubelet's SIGKILL.
        if dep:
            drain = conf.get("drain_timeout", "20s")
            secs = int(drain[:-1]) * {"s": 1, "m": 60}.get(drain[-1], 0) if drain[:-1].isdigit() else None
            pod = dep["spec"]["template"]["spec"]
            (c,) = pod["containers"]
            pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if secs is None:
                problems.append(f"drain_timeout {drain!r}: write it as seconds or minutes (20s)")
            elif pre + secs >= grace:
                problems.append(
                    f"preStop {pre}s + drain_timeout {secs}s must end before "
                    f"terminationGracePeriodSeconds {grace}"
                )

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"{len(docs)} resources valid against Kubernetes {version} (read by {how})")
