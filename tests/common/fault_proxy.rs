//! `FaultProxy`: a loopback proxy in front of moto_server that answers chosen EC2 actions
//! with an injected error (HTTP 500, throttling, a refusal) and forwards everything else —
//! the faults moto itself cannot produce.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

// ---------------------------------------------------------------------------------------
// A proxy in front of moto that injects EC2 errors.

#[derive(Clone)]
pub struct Fault {
    status: u16,
    code: &'static str,
    /// How many more calls get the error.
    remaining: u32,
}

#[derive(Clone)]
pub struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    faults: Arc<Mutex<HashMap<String, Fault>>>,
    /// Every request's form parameters, in order.
    seen: Arc<Mutex<Vec<HashMap<String, String>>>>,
    /// Actions held this long before they are forwarded; forwarded even if the caller has
    /// gone meanwhile (a cloud that got the call whoever waits for its answer).
    delays: Arc<Mutex<HashMap<String, std::time::Duration>>>,
}

pub struct FaultProxy {
    pub url: String,
    state: ProxyState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        let state = ProxyState {
            upstream: upstream.to_string(),
            client: reqwest::Client::new(),
            faults: Arc::default(),
            seen: Arc::default(),
            delays: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(proxy)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FaultProxy { url, state, task }
    }

    /// The next `times` calls of `action` are answered `status` with the EC2 error `code`.
    pub fn fail(&self, action: &str, status: u16, code: &'static str, times: u32) {
        self.state.faults.lock().unwrap().insert(
            action.to_string(),
            Fault {
                status,
                code,
                remaining: times,
            },
        );
    }

    /// Every later call of `action` is held `d` before it reaches moto, and reaches it even
    /// if its caller died meanwhile.
    pub fn delay(&self, action: &str, d: std::time::Duration) {
        self.state
            .delays
            .lock()
            .unwrap()
            .insert(action.to_string(), d);
    }

    /// The form parameters of every call of `action` seen so far.
    pub fn calls(&self, action: &str) -> Vec<HashMap<String, String>> {
        self.state
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.get("Action").map(String::as_str) == Some(action))
            .cloned()
            .collect()
    }
}

async fn proxy(
    State(s): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let action = params.get("Action").cloned().unwrap_or_default();
    s.seen.lock().unwrap().push(params);
    let injected = {
        let mut faults = s.faults.lock().unwrap();
        match faults.get_mut(&action) {
            Some(f) if f.remaining > 0 => {
                f.remaining -= 1;
                Some((f.status, f.code))
            }
            _ => None,
        }
    };
    if let Some((status, code)) = injected {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
             <Message>injected by the test proxy</Message></Error></Errors>\
             <RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
        );
        return (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "text/xml;charset=UTF-8")],
            xml,
        )
            .into_response();
    }
    let delay = s.delays.lock().unwrap().get(&action).copied();
    if let Some(d) = delay {
        // In its own task: the call reaches moto even when its caller is gone.
        let forwarded = tokio::spawn(async move {
            tokio::time::sleep(d).await;
            forward(s, method, uri, headers, body).await
        });
        return forwarded.await.unwrap();
    }
    forward(s, method, uri, headers, body).await
}

async fn forward(
    s: ProxyState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = s.client.request(method, format!("{}{path}", s.upstream));
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let answer = req.body(body).send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let ctype = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/xml")
        .to_string();
    let bytes = answer.bytes().await.unwrap();
    (status, [("content-type", ctype)], bytes).into_response()
}
