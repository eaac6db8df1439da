//! A real Prometheus server (the Debian package `prometheus`) on a free loopback port, with
//! its TSDB in a temporary directory, scraping the given targets every second; killed on
//! drop. Tests wait for their targets to be up and their series to exist before querying.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{START_DEADLINE, free_port};

/// One scrape job: its name, `host:port` targets, and static labels added to every series
/// (a label the exposition also carries is then kept as `exported_<name>`, as in a
/// Kubernetes scrape).
pub struct ScrapeJob {
    pub name: String,
    pub targets: Vec<String>,
    pub labels: Vec<(String, String)>,
}

pub struct Prometheus {
    pub url: String,
    dir: tempfile::TempDir,
    child: Child,
}

fn binary() -> PathBuf {
    std::env::var_os("PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("prometheus"))
}

fn config(jobs: &[ScrapeJob]) -> String {
    let mut y = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n",
    );
    for j in jobs {
        y.push_str(&format!(
            "  - job_name: {:?}\n    static_configs:\n      - targets: [",
            j.name
        ));
        let t: Vec<String> = j.targets.iter().map(|t| format!("{t:?}")).collect();
        y.push_str(&t.join(", "));
        y.push_str("]\n");
        if !j.labels.is_empty() {
            y.push_str("        labels:\n");
            for (k, v) in &j.labels {
                y.push_str(&format!("          {k}: {v:?}\n"));
            }
        }
    }
    y
}

impl Prometheus {
    /// Starts Prometheus scraping `jobs` and waits until it is ready. Panics, naming the
    /// Debian package, when the binary is missing.
    #[allow(clippy::zombie_processes)] // killed and waited for in Drop
    pub async fn start(jobs: &[ScrapeJob]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config(jobs)).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let bin = binary();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "prometheus ({}) is required: install the Debian package `prometheus` \
                     (.ci/run does) or set PROMETHEUS: {e}",
                    bin.display()
                )
            });
        let mut p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child,
        };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        while tokio::time::Instant::now() < deadline {
            if client
                .get(format!("{}/-/ready", p.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited early ({status}):\n{}", p.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "prometheus did not become ready within {START_DEADLINE:?}:\n{}",
            p.log()
        );
    }

    /// Its log (stderr), for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query now; the `result` array of a success.
    pub async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let resp: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/api/v1/query", self.url))
            .form(&[("query", promql)])
            .send()
            .await
            .expect("query prometheus")
            .json()
            .await
            .expect("prometheus answers JSON");
        assert_eq!(resp["status"], "success", "{promql}: {resp}");
        resp["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the instant query `promql` satisfies `ok` (polled), or panics with the
    /// last result and the log.
    pub async fn wait_for(
        &self,
        what: &str,
        promql: &str,
        ok: impl Fn(&[serde_json::Value]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        let mut last = Vec::new();
        while tokio::time::Instant::now() < deadline {
            last = self.query(promql).await;
            if ok(&last) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "prometheus: {what} not seen within {START_DEADLINE:?}; last {promql} = {last:?}\n{}",
            self.log()
        );
    }

    /// Waits until every scrape target is up.
    pub async fn wait_targets_up(&self, count: usize) {
        self.wait_for("all targets up", "up", |r| {
            r.len() == count && r.iter().all(|s| s["value"][1] == "1")
        })
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
