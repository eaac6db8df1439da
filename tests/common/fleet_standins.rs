//! Local stand-ins for the clouds' fleet APIs, on loopback: the Compute Engine REST API
//! (`GcpStandIn`), Azure Resource Manager (`AzureStandIn`) and a metadata-service token
//! endpoint (`TokenStandIn`). Each keeps the machines as state that stop/delete really
//! change, CHECKS what a real API would refuse (method and path, the bearer token → 401,
//! Azure's api-version → 400, GCE's requestId and returnPartialSuccess), records every
//! request, and answers in the recorded shapes of ../shared/data/fleet-api-samples: the GCP
//! flights' Operation bodies, and the Azure recording's 202 headers and InProgress →
//! Succeeded status bodies. Faults (a status for the next N matching calls) are injected
//! per test.
//!
//! Self-contained (include it with `#[path = "common/fleet_standins.rs"] mod fleet_standins;`).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;

fn sample(name: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/fleet-api-samples/"
    );
    std::fs::read_to_string(format!("{path}{name}"))
        .unwrap_or_else(|e| panic!("reading fleet-api-samples/{name}: {e}"))
}

/// The `body` of a recorded GCP flight.
pub fn gcp_flight(name: &str) -> Value {
    let v: Value = serde_json::from_str(&sample(name)).unwrap();
    v["body"].clone()
}

// ---------------------------------------------------------------------------------------
// The server and what it records

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub headers: HeaderMap,
}

impl Seen {
    /// A query parameter, URL-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// Answer the next `remaining` requests with `method` whose path contains `path_contains`
/// with `status` (and a JSON error body).
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: &'static str,
    pub path_contains: String,
    pub status: u16,
    pub remaining: u32,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
    fn empty(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// Binds a loopback port first (the stand-ins write absolute links to themselves).
async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

fn serve(
    listener: tokio::net::TcpListener,
    seen: Arc<Mutex<Vec<Seen>>>,
    handler: Handler,
) -> oneshot::Sender<()> {
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, _body: Bytes| {
            let handler = handler.clone();
            let seen = seen.clone();
            async move {
                let req = Seen {
                    method: method.to_string(),
                    path: uri.path().to_string(),
                    query: uri.query().unwrap_or("").to_string(),
                    authorization: headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    headers,
                };
                seen.lock().unwrap().push(req.clone());
                let a = handler(&req);
                let mut h = HeaderMap::new();
                for (k, v) in a.headers {
                    h.insert(
                        HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        HeaderValue::from_str(&v).unwrap(),
                    );
                }
                let r: Response =
                    (StatusCode::from_u16(a.status).unwrap(), h, a.body).into_response();
                r
            }
        },
    );
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    tx
}

fn take_fault(faults: &mut [Fault], req: &Seen) -> Option<u16> {
    let f = faults.iter_mut().find(|f| {
        f.remaining > 0 && f.method == req.method && req.path.contains(&f.path_contains)
    })?;
    f.remaining -= 1;
    Some(f.status)
}

// ---------------------------------------------------------------------------------------
// Compute Engine

/// One GCE instance to serve.
#[derive(Clone, Debug)]
pub struct GceInstance {
    pub project: &'static str,
    pub zone: &'static str,
    pub name: &'static str,
    pub id: u64,
    pub machine_type: &'static str,
    pub status: &'static str,
    pub labels: Vec<(&'static str, &'static str)>,
    pub accelerator: Option<(&'static str, u32)>,
    pub deletion_protection: bool,
    pub created_by: Option<&'static str>,
}

impl GceInstance {
    pub fn running(project: &'static str, zone: &'static str, name: &'static str, id: u64) -> Self {
        GceInstance {
            project,
            zone,
            name,
            id,
            machine_type: "g2-standard-4",
            status: "RUNNING",
            labels: Vec::new(),
            accelerator: Some(("nvidia-l4", 1)),
            deletion_protection: false,
            created_by: None,
        }
    }

    pub fn resource(&self) -> String {
        format!(
            "projects/{}/zones/{}/instances/{}",
            self.project, self.zone, self.name
        )
    }

    /// The recorded instance (gcp-instances-list-after-stop) with this one's fields.
    fn to_json(&self) -> Value {
        let mut v = gcp_flight("gcp-instances-list-after-stop.flight.json")["items"][0].clone();
        let zone_url = format!(
            "https://www.googleapis.com/compute/v1/projects/{}/zones/{}",
            self.project, self.zone
        );
        v["id"] = json!(self.id.to_string());
        v["name"] = json!(self.name);
        v["status"] = json!(self.status);
        v["zone"] = json!(zone_url);
        v["machineType"] = json!(format!("{zone_url}/machineTypes/{}", self.machine_type));
        v["selfLink"] = json!(format!("{zone_url}/instances/{}", self.name));
        v["creationTimestamp"] = json!("2024-05-01T03:00:00.000-07:00");
        v["deletionProtection"] = json!(self.deletion_protection);
        v["labels"] = Value::Object(
            self.labels
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        );
        if let Some((t, n)) = self.accelerator {
            v["guestAccelerators"] = json!([{
                "acceleratorType": format!("{zone_url}/acceleratorTypes/{t}"),
                "acceleratorCount": n
            }]);
        }
        if let Some(mig) = self.created_by {
            v["metadata"]["items"] = json!([{"key": "created-by", "value": mig}]);
        }
        v
    }
}

struct GceOp {
    project: String,
    zone: String,
    target: String,
    kind: &'static str,
    polls: u32,
    error: Option<Value>,
}

/// What the GCE stand-in holds; tests change the knobs through `GcpStandIn::state`.
pub struct GcpState {
    pub token: String,
    /// `projects/P/zones/Z/instances/N` → the instance resource.
    pub instances: BTreeMap<String, Value>,
    /// Polls of an operation before it is DONE.
    pub polls_to_done: u32,
    /// The `error` the next operations end DONE with.
    pub op_error: Option<Value>,
    pub faults: Vec<Fault>,
    ops: HashMap<String, GceOp>,
    request_ids: HashMap<String, String>,
    next_op: u32,
}

pub struct GcpStandIn {
    pub base: String,
    pub state: Arc<Mutex<GcpState>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

fn google_error(status: u16, reason: &str, message: &str) -> Answer {
    Answer::json(
        status,
        json!({"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}),
    )
}

impl GcpStandIn {
    pub async fn start(token: &str, instances: &[GceInstance]) -> GcpStandIn {
        let state = Arc::new(Mutex::new(GcpState {
            token: token.to_string(),
            instances: instances
                .iter()
                .map(|i| (i.resource(), i.to_json()))
                .collect(),
            polls_to_done: 2,
            op_error: None,
            faults: Vec::new(),
            ops: HashMap::new(),
            request_ids: HashMap::new(),
            next_op: 0,
        }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (listener, base) = bind().await;
        let st = state.clone();
        let stop = serve(
            listener,
            seen.clone(),
            Arc::new(move |req| gce(&mut st.lock().unwrap(), req)),
        );
        GcpStandIn {
            base,
            state,
            seen,
            _stop: stop,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn status_of(&self, resource: &str) -> Option<String> {
        let st = self.state.lock().unwrap();
        st.instances
            .get(resource)
            .map(|v| v["status"].as_str().unwrap().to_string())
    }
}

fn page<'a, T>(items: &'a [T], req: &Seen) -> (&'a [T], Option<String>) {
    let size: usize = req
        .param("maxResults")
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let from: usize = req
        .param("pageToken")
        .and_then(|t| t.strip_prefix("tok-").and_then(|n| n.parse().ok()))
        .unwrap_or(0)
        .min(items.len());
    let to = (from + size.max(1)).min(items.len());
    let next = (to < items.len()).then(|| format!("tok-{to}"));
    (&items[from..to], next)
}

fn gce(st: &mut GcpState, req: &Seen) -> Answer {
    if req.authorization.as_deref() != Some(&format!("Bearer {}", st.token)) {
        return Answer::json(
            401,
            json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
        );
    }
    if let Some(status) = take_fault(&mut st.faults, req) {
        return google_error(status, "backendError", "injected fault");
    }
    let Some(rest) = req.path.strip_prefix("/compute/v1/") else {
        return google_error(404, "notFound", "unknown path");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match (req.method.as_str(), &parts[..]) {
        ("GET", ["projects", p, "aggregated", "instances"]) => {
            if req.param("returnPartialSuccess").as_deref() != Some("true") {
                return google_error(400, "invalid", "expected returnPartialSuccess=true");
            }
            let prefix = format!("projects/{p}/");
            let all: Vec<(&String, &Value)> = st
                .instances
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .collect();
            let (items, next) = page(&all, req);
            let mut scoped = serde_json::Map::new();
            for (k, v) in items {
                let zone = k.split('/').nth(3).unwrap();
                let e = scoped
                    .entry(format!("zones/{zone}"))
                    .or_insert_with(|| json!({"instances": []}));
                e["instances"].as_array_mut().unwrap().push((*v).clone());
            }
            scoped.insert(
                "zones/asia-east1-a".into(),
                json!({"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope 'zones/asia-east1-a' on this page."}}),
            );
            let mut body = json!({"kind": "compute#instanceAggregatedList", "items": scoped});
            if let Some(n) = next {
                body["nextPageToken"] = json!(n);
            }
            Answer::json(200, body)
        }
        ("GET", ["projects", p, "zones", z, "instances"]) => {
            let prefix = format!("projects/{p}/zones/{z}/");
            let all: Vec<Value> = st
                .instances
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v.clone())
                .collect();
            let (items, next) = page(&all, req);
            let mut body = json!({"kind": "compute#instanceList", "items": items});
            if let Some(n) = next {
                body["nextPageToken"] = json!(n);
            }
            Answer::json(200, body)
        }
        ("GET", ["projects", _, "zones", _, "instances", _]) => match st.instances.get(rest) {
            Some(v) => Answer::json(200, v.clone()),
            None => google_error(
                404,
                "notFound",
                &format!("The resource '{rest}' was not found"),
            ),
        },
        ("POST", ["projects", p, "zones", z, "instances", n, "stop"]) => {
            let target = format!("projects/{p}/zones/{z}/instances/{n}");
            gce_operation(st, req, p, z, &target, "stop")
        }
        ("DELETE", ["projects", p, "zones", z, "instances", _]) => {
            gce_operation(st, req, p, z, rest, "delete")
        }
        ("GET", ["projects", _, "zones", _, "operations", name]) => {
            let polls_to_done = st.polls_to_done;
            let Some(op) = st.ops.get_mut(*name) else {
                return google_error(404, "notFound", "no such operation");
            };
            op.polls += 1;
            let done = op.polls >= polls_to_done;
            let body = gce_op_body(name, op, if done { "DONE" } else { "RUNNING" });
            if done && op.error.is_none() {
                let (target, kind) = (op.target.clone(), op.kind);
                if kind == "stop" {
                    if let Some(i) = st.instances.get_mut(&target) {
                        i["status"] = json!("TERMINATED");
                    }
                } else {
                    st.instances.remove(&target);
                }
            }
            Answer::json(200, body)
        }
        _ => google_error(404, "notFound", "unknown path"),
    }
}

fn gce_operation(
    st: &mut GcpState,
    req: &Seen,
    p: &str,
    z: &str,
    target: &str,
    kind: &'static str,
) -> Answer {
    let Some(rid) = req.param("requestId").filter(|r| r.len() == 36) else {
        return google_error(400, "invalid", "this stand-in expects a requestId (UUID)");
    };
    if !st.instances.contains_key(target) {
        return google_error(
            404,
            "notFound",
            &format!("The resource '{target}' was not found"),
        );
    }
    // The same requestId is the same call: answer with its operation.
    let name = match st.request_ids.get(&rid) {
        Some(name) => name.clone(),
        None => {
            st.next_op += 1;
            let name = format!("operation-{}-{kind}", st.next_op);
            st.ops.insert(
                name.clone(),
                GceOp {
                    project: p.into(),
                    zone: z.into(),
                    target: target.into(),
                    kind,
                    polls: 0,
                    error: st.op_error.clone(),
                },
            );
            st.request_ids.insert(rid, name.clone());
            name
        }
    };
    Answer::json(200, gce_op_body(&name, &st.ops[&name], "PENDING"))
}

/// The recorded Operation (stop/delete flight while pending, the DONE flight when done),
/// rewritten for this operation.
fn gce_op_body(name: &str, op: &GceOp, status: &str) -> Value {
    let mut v = if status == "DONE" {
        gcp_flight("gcp-zone-operation-done.flight.json")
    } else if op.kind == "stop" {
        gcp_flight("gcp-instances-stop.flight.json")
    } else {
        gcp_flight("gcp-instances-delete.flight.json")
    };
    let zone_url = format!(
        "https://www.googleapis.com/compute/v1/projects/{}/zones/{}",
        op.project, op.zone
    );
    v["name"] = json!(name);
    v["status"] = json!(status);
    v["operationType"] = json!(op.kind);
    v["zone"] = json!(zone_url);
    v["targetLink"] = json!(format!(
        "https://www.googleapis.com/compute/v1/{}",
        op.target
    ));
    v["selfLink"] = json!(format!("{zone_url}/operations/{name}"));
    if status == "DONE"
        && let Some(e) = &op.error
    {
        v["error"] = e.clone();
        v["httpErrorStatusCode"] = json!(400);
    }
    v
}

// ---------------------------------------------------------------------------------------
// Azure Resource Manager

/// One Azure VM to serve.
#[derive(Clone, Debug)]
pub struct AzureVm {
    pub subscription: &'static str,
    pub group: &'static str,
    pub name: &'static str,
    pub vm_id: &'static str,
    pub size: &'static str,
    /// `running`, `stopped` (powered off), `deallocated`, ...
    pub power: &'static str,
    pub scale_set: Option<&'static str>,
    pub tags: Vec<(&'static str, &'static str)>,
}

impl AzureVm {
    pub fn running(name: &'static str, vm_id: &'static str) -> AzureVm {
        AzureVm {
            subscription: "00000000-0000-0000-0000-000000000000",
            group: "gpu-rg",
            name,
            vm_id,
            size: "Standard_NC24ads_A100_v4",
            power: "running",
            scale_set: None,
            tags: Vec::new(),
        }
    }

    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
            self.subscription, self.group, self.name
        )
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "id": self.id(),
            "type": "Microsoft.Compute/virtualMachines",
            "location": "westus",
            "zones": ["1"],
            "tags": self.tags.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "properties": {
                "vmId": self.vm_id,
                "hardwareProfile": {"vmSize": self.size},
                "osProfile": {"computerName": format!("{}-host", self.name), "adminUsername": "azureuser"},
                "provisioningState": "Succeeded",
                "timeCreated": "2024-05-01T10:00:00.0000000+00:00",
                "instanceView": {"statuses": [
                    {"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"},
                    {"code": format!("PowerState/{}", self.power), "level": "Info"}
                ]}
            }
        });
        if let Some(ss) = self.scale_set {
            v["properties"]["virtualMachineScaleSet"] = json!({"id": format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachineScaleSets/{ss}",
                self.subscription, self.group
            )});
        }
        v
    }
}

/// One interaction of the Azure recording (vcrpy YAML).
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Reads azure-vm-deallocate-delete.recording.yaml: the interactions' method, URI, status,
/// first value of each response header, and body (a YAML double-quoted string, folded).
pub fn azure_recording() -> Vec<Recorded> {
    let text = sample("azure-vm-deallocate-delete.recording.yaml");
    let mut out: Vec<Recorded> = Vec::new();
    let mut in_response = false;
    let mut header: Option<String> = None;
    let mut body_lines: Option<Vec<String>> = None;
    for line in text.lines() {
        if let Some(lines) = body_lines.as_mut() {
            lines.push(line.to_string());
            if closes_quote(line) {
                let raw = body_lines.take().unwrap();
                out.last_mut().unwrap().body = fold_double_quoted(&raw);
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line == "- request:" {
            out.push(Recorded {
                method: String::new(),
                uri: String::new(),
                status: 0,
                headers: BTreeMap::new(),
                body: String::new(),
            });
            in_response = false;
            continue;
        }
        if line == "  response:" {
            in_response = true;
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if !in_response {
            if let Some(m) = line.strip_prefix("    method: ") {
                cur.method = m.to_string();
            } else if let Some(u) = line.strip_prefix("    uri: ") {
                cur.uri = u.to_string();
            }
            continue;
        }
        if let Some(s) = trimmed.strip_prefix("string: ") {
            header = None;
            if s == "''" {
                cur.body.clear();
            } else {
                let first = s.to_string();
                if closes_quote(&first[1..]) {
                    cur.body = fold_double_quoted(&[first]);
                } else {
                    body_lines = Some(vec![first]);
                }
            }
        } else if let Some(c) = trimmed.strip_prefix("code: ") {
            cur.status = c.parse().unwrap();
        } else if indent == 6 && trimmed.ends_with(':') {
            header = Some(trimmed.trim_end_matches(':').to_string());
        } else if indent == 6 && trimmed.starts_with("- ") {
            if let Some(h) = &header {
                cur.headers
                    .entry(h.clone())
                    .or_insert_with(|| trimmed[2..].to_string());
            }
        } else if indent <= 4 {
            header = None;
        }
    }
    out
}

/// Whether `line` ends a double-quoted scalar (a `"` not escaped by a backslash).
fn closes_quote(line: &str) -> bool {
    let t = line.trim_end();
    if !t.ends_with('"') {
        return false;
    }
    let backslashes = t[..t.len() - 1]
        .chars()
        .rev()
        .take_while(|c| *c == '\\')
        .count();
    backslashes % 2 == 0
}

/// YAML double-quoted folding: line breaks become one space (an escaped break none),
/// continuation lines lose their indentation; then the escapes are read.
fn fold_double_quoted(lines: &[String]) -> String {
    let mut raw = String::new();
    for (i, line) in lines.iter().enumerate() {
        let part = if i == 0 {
            line.as_str()
        } else {
            line.trim_start()
        };
        if i + 1 < lines.len() {
            let part = part.trim_end();
            match part.strip_suffix('\\') {
                Some(p) if !p.ends_with('\\') => raw.push_str(p),
                _ => {
                    raw.push_str(part);
                    raw.push(' ');
                }
            }
        } else {
            raw.push_str(part.trim_end());
        }
    }
    let inner = &raw[1..raw.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

struct ArmOp {
    vm: String,
    kind: &'static str,
    polls: u32,
    fail: Option<(String, String)>,
}

/// What the ARM stand-in holds; tests change the knobs through `AzureStandIn::state`.
pub struct AzureState {
    pub token: String,
    pub api_version: String,
    /// ARM id → the VM resource.
    pub vms: BTreeMap<String, Value>,
    pub page_size: usize,
    pub polls_to_done: u32,
    /// Answer 202 with only a `Location` header (the API spec's example shape).
    pub location_only: bool,
    /// A `Retry-After` (seconds) on 202 answers.
    pub retry_after: Option<u32>,
    /// Point the operation headers at another origin.
    pub foreign_operation_host: Option<String>,
    /// The next operations end `Failed` with this (code, message).
    pub op_fails: Option<(String, String)>,
    pub faults: Vec<Fault>,
    base: String,
    recording: Vec<Recorded>,
    ops: HashMap<String, ArmOp>,
    next_op: u32,
}

pub struct AzureStandIn {
    pub base: String,
    pub state: Arc<Mutex<AzureState>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

fn arm_error(status: u16, code: &str, message: &str) -> Answer {
    Answer::json(status, json!({"error": {"code": code, "message": message}}))
}

impl AzureStandIn {
    pub async fn start(token: &str, api_version: &str, vms: &[AzureVm]) -> AzureStandIn {
        let (listener, base) = bind().await;
        let state = Arc::new(Mutex::new(AzureState {
            token: token.to_string(),
            api_version: api_version.to_string(),
            vms: vms.iter().map(|v| (v.id(), v.to_json())).collect(),
            page_size: 100,
            polls_to_done: 2,
            location_only: false,
            retry_after: None,
            foreign_operation_host: None,
            op_fails: None,
            faults: Vec::new(),
            base: base.clone(),
            recording: azure_recording(),
            ops: HashMap::new(),
            next_op: 0,
        }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let st = state.clone();
        let stop = serve(
            listener,
            seen.clone(),
            Arc::new(move |req| arm(&mut st.lock().unwrap(), req)),
        );
        AzureStandIn {
            base,
            state,
            seen,
            _stop: stop,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn power_of(&self, id: &str) -> Option<String> {
        let st = self.state.lock().unwrap();
        st.vms.get(id).map(|v| power(v).to_string())
    }
}

fn power(vm: &Value) -> &str {
    vm["properties"]["instanceView"]["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["code"].as_str())
        .find_map(|c| c.strip_prefix("PowerState/"))
        .unwrap_or("")
}

fn set_power(vm: &mut Value, word: &str) {
    for s in vm["properties"]["instanceView"]["statuses"]
        .as_array_mut()
        .unwrap()
    {
        if s["code"].as_str().unwrap().starts_with("PowerState/") {
            s["code"] = json!(format!("PowerState/{word}"));
        }
    }
}

fn without_instance_view(vm: &Value) -> Value {
    let mut v = vm.clone();
    v["properties"]
        .as_object_mut()
        .unwrap()
        .remove("instanceView");
    v
}

fn arm(st: &mut AzureState, req: &Seen) -> Answer {
    if req.authorization.as_deref() != Some(&format!("Bearer {}", st.token)) {
        return arm_error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        );
    }
    if req.param("api-version").as_deref() != Some(st.api_version.as_str()) {
        return arm_error(
            400,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{}' is invalid. This stand-in serves '{}'.",
                req.param("api-version").unwrap_or_default(),
                st.api_version
            ),
        );
    }
    if let Some(status) = take_fault(&mut st.faults, req) {
        return arm_error(status, "InternalServerError", "injected fault");
    }
    let parts: Vec<&str> = req.path.split('/').collect();
    match (req.method.as_str(), &parts[..]) {
        (
            "GET",
            [
                "",
                "subscriptions",
                s,
                "providers",
                "Microsoft.Compute",
                "virtualMachines",
            ],
        ) => {
            let prefix = format!("/subscriptions/{s}/");
            let all: Vec<&Value> = st
                .vms
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v)
                .collect();
            let from: usize = req
                .param("$skiptoken")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0)
                .min(all.len());
            let to = (from + st.page_size).min(all.len());
            let status_only = req.param("statusOnly").as_deref() == Some("true");
            let value: Vec<Value> = all[from..to]
                .iter()
                .map(|v| {
                    if status_only {
                        (*v).clone()
                    } else {
                        without_instance_view(v)
                    }
                })
                .collect();
            let mut body = json!({"value": value});
            if to < all.len() {
                body["nextLink"] = json!(format!(
                    "{}/subscriptions/{s}/providers/Microsoft.Compute/virtualMachines?api-version={}&statusOnly=true&$skiptoken={to}",
                    st.base, st.api_version
                ));
            }
            Answer::json(200, body)
        }
        (
            "GET",
            [
                "",
                "subscriptions",
                s,
                "providers",
                "Microsoft.Compute",
                "locations",
                _,
                "operations",
                id,
            ],
        ) => arm_poll(st, req, s, id),
        (
            "GET",
            [
                "",
                "subscriptions",
                _,
                "resourceGroups",
                _,
                "providers",
                "Microsoft.Compute",
                "virtualMachines",
                _,
            ],
        ) => match st.vms.get(&req.path) {
            Some(v) if req.param("$expand").as_deref() == Some("instanceView") => {
                Answer::json(200, v.clone())
            }
            Some(v) => Answer::json(200, without_instance_view(v)),
            None => arm_error(404, "ResourceNotFound", "The Resource was not found."),
        },
        (
            "POST",
            [
                "",
                "subscriptions",
                s,
                "resourceGroups",
                g,
                "providers",
                "Microsoft.Compute",
                "virtualMachines",
                n,
                "deallocate",
            ],
        ) => {
            let id = format!(
                "/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.Compute/virtualMachines/{n}"
            );
            if !st.vms.contains_key(&id) {
                return arm_error(404, "ResourceNotFound", "The Resource was not found.");
            }
            arm_accepted(st, s, id, "deallocate")
        }
        (
            "DELETE",
            [
                "",
                "subscriptions",
                s,
                "resourceGroups",
                _,
                "providers",
                "Microsoft.Compute",
                "virtualMachines",
                _,
            ],
        ) => {
            if !st.vms.contains_key(&req.path) {
                return Answer::empty(204);
            }
            arm_accepted(st, s, req.path.clone(), "delete")
        }
        _ => arm_error(404, "NotFound", "unknown path"),
    }
}

/// 202 with the recording's headers (Azure-AsyncOperation, Location, the rate-limit
/// counter), pointing at this stand-in.
fn arm_accepted(st: &mut AzureState, sub: &str, vm: String, kind: &'static str) -> Answer {
    st.next_op += 1;
    let op_id = format!("00000000-0000-4000-8000-{:012}", st.next_op);
    st.ops.insert(
        op_id.clone(),
        ArmOp {
            vm,
            kind,
            polls: 0,
            fail: st.op_fails.clone(),
        },
    );
    let method = if kind == "delete" { "DELETE" } else { "POST" };
    let recorded = st
        .recording
        .iter()
        .find(|r| r.method == method && r.status == 202)
        .expect("the recording has the 202");
    let host = st
        .foreign_operation_host
        .clone()
        .unwrap_or_else(|| st.base.clone());
    let op_url = format!(
        "{host}/subscriptions/{sub}/providers/Microsoft.Compute/locations/westus/operations/{op_id}"
    );
    let mut headers: Vec<(String, String)> = Vec::new();
    if !st.location_only {
        headers.push((
            "azure-asyncoperation".into(),
            format!("{op_url}?api-version={}", st.api_version),
        ));
    }
    headers.push((
        "location".into(),
        format!("{op_url}?monitor=true&api-version={}", st.api_version),
    ));
    headers.push((
        "x-ms-ratelimit-remaining-resource".into(),
        recorded.headers["x-ms-ratelimit-remaining-resource"].clone(),
    ));
    if let Some(s) = st.retry_after {
        headers.push(("retry-after".into(), s.to_string()));
    }
    Answer {
        status: 202,
        headers,
        body: String::new(),
    }
}

fn arm_poll(st: &mut AzureState, req: &Seen, _sub: &str, op_id: &str) -> Answer {
    let polls_to_done = st.polls_to_done;
    let Some(op) = st.ops.get_mut(op_id) else {
        return arm_error(404, "NotFound", "no such operation");
    };
    op.polls += 1;
    let done = op.polls >= polls_to_done;
    let fail = op.fail.clone();
    if done && fail.is_none() {
        let (vm, kind) = (op.vm.clone(), op.kind);
        if kind == "deallocate" {
            if let Some(v) = st.vms.get_mut(&vm) {
                set_power(v, "deallocated");
            }
        } else {
            st.vms.remove(&vm);
        }
    }
    if req.param("monitor").as_deref() == Some("true") {
        return match (done, fail) {
            (false, _) => Answer::empty(202),
            (true, None) => Answer::empty(200),
            (true, Some((code, message))) => arm_error(409, &code, &message),
        };
    }
    // The recorded status bodies: InProgress, then Succeeded.
    let bodies: Vec<&Recorded> = st
        .recording
        .iter()
        .filter(|r| r.method == "GET" && r.uri.contains("/operations/"))
        .collect();
    let pick = |status: &str| {
        let r = bodies
            .iter()
            .find(|r| r.body.contains(&format!("\"{status}\"")))
            .unwrap_or_else(|| panic!("the recording has a {status} poll"));
        let mut v: Value = serde_json::from_str(&r.body).unwrap();
        v["name"] = json!(op_id);
        v
    };
    let body = match (done, fail) {
        (false, _) => pick("InProgress"),
        (true, None) => pick("Succeeded"),
        (true, Some((code, message))) => {
            let mut v = pick("Succeeded");
            v["status"] = json!("Failed");
            v["error"] = json!({"code": code, "message": message});
            v
        }
    };
    Answer::json(200, body)
}

// ---------------------------------------------------------------------------------------
// A metadata-service token endpoint

/// Serves `{"access_token", "expires_in", "token_type"}` at any path, only to requests
/// carrying `header` (GCE: `Metadata-Flavor: Google`; IMDS: `Metadata: true`); 400 else.
pub struct TokenStandIn {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// The token served from now on (a rotation).
    pub token: Arc<Mutex<String>>,
    _stop: oneshot::Sender<()>,
}

impl TokenStandIn {
    pub async fn start(
        path: &str,
        header: (&'static str, &'static str),
        token: &str,
        expires_in: Value,
    ) -> TokenStandIn {
        let (listener, base) = bind().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let token = Arc::new(Mutex::new(token.to_string()));
        let current = token.clone();
        let stop = serve(
            listener,
            seen.clone(),
            Arc::new(move |req: &Seen| {
                let ok = req.headers.get(header.0).and_then(|v| v.to_str().ok()) == Some(header.1);
                if !ok {
                    return Answer::json(400, json!({"error": "missing metadata header"}));
                }
                Answer::json(
                    200,
                    json!({"access_token": *current.lock().unwrap(), "expires_in": expires_in, "token_type": "Bearer"}),
                )
            }),
        );
        TokenStandIn {
            url: format!("{base}{path}"),
            seen,
            token,
            _stop: stop,
        }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}
