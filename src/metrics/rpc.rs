//! `RpcMetrics`: gRPC calls counted and timed by service, method and status code
//! (`bursar_rpc_requests_total`, `bursar_rpc_duration_seconds`). The server's tower layer
//! (`server::rpc_metrics`) records into it.
//!
//! Cheap on the request path: the table of methods is made once from the services' own
//! descriptors, a request's path is looked up in it once, and each (method, code) cell holds
//! its counter and histogram, taken from the families the first time that pair is seen; after
//! that recording takes no lock on the family (the histogram's observe takes its own short
//! per-cell mutex, as prometheus-client's `Histogram` does). A path that is not in the table (an
//! unimplemented method, a probe) counts as service and method `unknown`, so the label sets
//! stay bounded whatever clients send.
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// gRPC status codes by number, as gRPC names them.
pub const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The status code of a call cancelled by its client (its response dropped unfinished).
pub const CANCELLED: u8 = 1;
/// The status code of a response that carried none, or one that is not a number.
pub const UNKNOWN: u8 = 2;

/// Latency buckets, in seconds: from 50 µs (SelectProvider answers in tens of µs) to 10 s
/// (a spend query over a year).
pub const BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub service: String,
    pub method: String,
    pub code: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// A method's place in the table (`RpcMetrics::method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodId(usize);

struct Cell {
    count: Counter,
    seconds: Histogram,
}

pub struct RpcMetrics {
    requests: Family<RpcLabels, Counter>,
    seconds: Family<RpcLabels, Histogram, fn() -> Histogram>,
    /// (service, method); the last entry is (`unknown`, `unknown`).
    methods: Vec<(String, String)>,
    by_path: hashbrown::HashMap<String, usize>,
    /// `methods.len() × CODES.len()` cells, filled on first use.
    cells: Box<[OnceLock<Cell>]>,
}

impl RpcMetrics {
    /// The table for `methods`, given as (fully qualified service, method) pairs, e.g.
    /// (`bursar.v1.PlacementService`, `SelectProvider`).
    pub fn new(methods: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut table: Vec<(String, String)> = Vec::new();
        let mut by_path = hashbrown::HashMap::new();
        for (service, method) in methods {
            let path = format!("/{service}/{method}");
            if by_path.contains_key(&path) {
                continue;
            }
            by_path.insert(path, table.len());
            table.push((service, method));
        }
        table.push(("unknown".into(), "unknown".into()));
        let cells = (0..table.len() * CODES.len())
            .map(|_| OnceLock::new())
            .collect();
        RpcMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(histogram),
            methods: table,
            by_path,
            cells,
        }
    }

    /// The method a request's path (`/package.Service/Method`) names.
    #[inline]
    pub fn method(&self, path: &str) -> MethodId {
        MethodId(
            self.by_path
                .get(path)
                .copied()
                .unwrap_or(self.methods.len() - 1),
        )
    }

    /// (service, method) of `m`.
    pub fn name(&self, m: MethodId) -> (&str, &str) {
        let (s, n) = &self.methods[m.0];
        (s, n)
    }

    /// One finished call of `m` with gRPC status `code` (numbers past 16 count as UNKNOWN)
    /// that took `elapsed`.
    #[inline]
    pub fn record(&self, m: MethodId, code: u8, elapsed: Duration) {
        let code = if (code as usize) < CODES.len() {
            code
        } else {
            UNKNOWN
        };
        let cell = self.cells[m.0 * CODES.len() + code as usize].get_or_init(|| {
            let (service, method) = &self.methods[m.0];
            let labels = RpcLabels {
                service: service.clone(),
                method: method.clone(),
                code: CODES[code as usize],
            };
            Cell {
                count: self.requests.get_or_create(&labels).clone(),
                seconds: self.seconds.get_or_create(&labels).clone(),
            }
        });
        cell.count.inc();
        cell.seconds.observe(elapsed.as_secs_f64());
    }

    /// Registers both families with `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "bursar_rpc_requests",
            "gRPC calls finished, by service, method and status code",
            self.requests.clone(),
        );
        r.register(
            "bursar_rpc_duration_seconds",
            "gRPC call latency from request to status, by service, method and code",
            self.seconds.clone(),
        );
    }
}

/// The gRPC status number in a `grpc-status` value (ASCII digits), or UNKNOWN.
pub fn parse_code(v: &[u8]) -> u8 {
    match v {
        [d @ b'0'..=b'9'] => d - b'0',
        [b'1', d @ b'0'..=b'6'] => 10 + (d - b'0'),
        _ => UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> RpcMetrics {
        RpcMetrics::new([
            ("bursar.v1.PlacementService".into(), "SelectProvider".into()),
            ("bursar.v1.PricingService".into(), "ListPrices".into()),
        ])
    }

    fn text(m: &RpcMetrics) -> String {
        let mut r = Registry::default();
        m.register(&mut r);
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
        s
    }

    #[test]
    fn codes_parse_as_grpc_numbers_them() {
        assert_eq!(parse_code(b"0"), 0);
        assert_eq!(parse_code(b"3"), 3);
        assert_eq!(parse_code(b"16"), 16);
        for bad in [&b"17"[..], b"", b"x", b"007", b"-1"] {
            assert_eq!(parse_code(bad), UNKNOWN, "{bad:?}");
        }
        assert_eq!(CODES[3], "INVALID_ARGUMENT");
        assert_eq!(CODES[9], "FAILED_PRECONDITION");
        assert_eq!(CODES[16], "UNAUTHENTICATED");
    }

    #[test]
    fn calls_are_counted_and_timed_by_method_and_code() {
        let m = metrics();
        let sel = m.method("/bursar.v1.PlacementService/SelectProvider");
        assert_eq!(
            m.name(sel),
            ("bursar.v1.PlacementService", "SelectProvider")
        );
        m.record(sel, 0, Duration::from_micros(40));
        m.record(sel, 0, Duration::from_micros(70));
        m.record(sel, 3, Duration::from_millis(2));
        let t = text(&m);
        let ok = "service=\"bursar.v1.PlacementService\",method=\"SelectProvider\",code=\"OK\"";
        assert!(
            t.contains(&format!("bursar_rpc_requests_total{{{ok}}} 2\n")),
            "{t}"
        );
        assert!(
            t.contains(&format!("bursar_rpc_duration_seconds_count{{{ok}}} 2\n")),
            "{t}"
        );
        // 40 µs falls in the first bucket, 70 µs in the second.
        for (le, n) in [("0.00005", 1), ("0.0001", 2), ("+Inf", 2)] {
            let line = format!("bursar_rpc_duration_seconds_bucket{{le=\"{le}\",{ok}}} {n}\n");
            assert!(t.contains(&line), "{line} in\n{t}");
        }
        assert!(t.contains("code=\"INVALID_ARGUMENT\"} 1\n"), "{t}");
        // A method never called has no series.
        assert!(!t.contains("ListPrices"), "{t}");
    }

    #[test]
    fn unknown_paths_and_codes_stay_bounded() {
        let m = metrics();
        let a = m.method("/evil.Service/Method1");
        let b = m.method("/nothing");
        assert_eq!(a, b);
        assert_eq!(m.name(a), ("unknown", "unknown"));
        m.record(a, 12, Duration::from_micros(5));
        m.record(a, 200, Duration::from_micros(5));
        let t = text(&m);
        assert!(
            t.contains("method=\"unknown\",code=\"UNIMPLEMENTED\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("method=\"unknown\",code=\"UNKNOWN\"} 1\n"),
            "{t}"
        );
    }
}
