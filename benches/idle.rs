//! The idle-GPU policy at fleet scale: 10,000 GPU instances (one in four with 8 GPUs, the
//! rest with 1), each with 32 minutes of 15-second samples (the 30-minute window, its
//! 1-minute lag and a minute more). Measures:
//! - `push`: feeding every sample into the per-instance `SampleWindow`s (samples/s);
//! - `pass`: one policy pass as the loop runs it: every window's summary, then `evaluate`
//!   over the whole fleet (target ≤ 50 ms);
//! - `evaluate`: `evaluate` alone, summaries given;
//!
//! and prints the memory a window holds per instance.
//! Run: `cargo bench --bench idle`.
use std::collections::BTreeMap;
use std::hint::black_box;

use bursar::domain::Provider;
use bursar::domain::fleet::{FleetInstance, GpuSample, InstanceState, SampleSource};
use bursar::domain::idle::{
    Case, FleetView, IdleMode, IdlePolicy, InstanceView, SampleWindow, Stage, evaluate,
};
use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const INSTANCES: usize = 10_000;
const MINUTES: i64 = 32;
const STEP_SECS: i64 = 15;

/// A small deterministic generator (no dependency, same fleet every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What an instance's GPUs do in the generated fleet.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Below the threshold throughout (0–5 %).
    Idle,
    /// Mostly busy.
    Busy,
    /// Idle with one short burst.
    Burst,
    /// Samples only in the last few minutes: unknown.
    Sparse,
}

struct Fleet {
    now: DateTime<Utc>,
    instances: Vec<FleetInstance>,
    kinds: Vec<Kind>,
    cases: Vec<Option<Case>>,
}

fn fleet() -> Fleet {
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let mut rng = Lcg(19);
    let mut instances = Vec::with_capacity(INSTANCES);
    let mut kinds = Vec::with_capacity(INSTANCES);
    let mut cases = Vec::with_capacity(INSTANCES);
    for i in 0..INSTANCES {
        let eight = i % 4 == 0;
        let mut labels = BTreeMap::new();
        labels.insert("Name".to_string(), format!("gpu-{i}"));
        labels.insert("team".to_string(), format!("team-{}", i % 37));
        labels.insert("env".to_string(), "prod".to_string());
        if i % 10 == 3 {
            labels.insert(
                "aws:autoscaling:groupName".to_string(),
                "gpu-asg".to_string(),
            );
        }
        if i % 50 == 7 {
            labels.insert("bursar.io/protect".to_string(), "true".to_string());
        }
        let kind = match rng.below(10) {
            0..=5 => Kind::Idle,
            6 | 7 => Kind::Busy,
            8 => Kind::Burst,
            _ => Kind::Sparse,
        };
        // Most idle machines are mid-ladder (a steady pass); a few are new or due.
        let case = (kind == Kind::Idle).then(|| {
            let opened = now - TimeDelta::minutes(rng.below(14) as i64 + 1);
            Case {
                opened_at: opened,
                notified_at: Some(opened),
                due_at: opened + TimeDelta::minutes(15),
                mode: IdleMode::Stop,
                stage: Stage::Waiting,
                acted_at: None,
            }
        });
        let case = case.filter(|_| rng.below(50) != 0);
        instances.push(FleetInstance {
            provider: Provider::ALL[i % 3],
            id: format!("i-{i:017x}"),
            name: format!("gpu-{i}"),
            scope: "us-east-1".into(),
            resource: format!("i-{i:017x}"),
            region: "us-east-1".into(),
            zone: "us-east-1a".into(),
            instance_type: if eight { "p4d.24xlarge" } else { "g5.xlarge" }.into(),
            gpu_model: Some(if eight { "A100" } else { "A10G" }.into()),
            gpu_count: if eight { 8 } else { 1 },
            labels,
            launched_at: Some(now - TimeDelta::hours(3)),
            state: InstanceState::Running,
            private_hostname: format!("ip-10-0-{}-{}.ec2.internal", i / 256, i % 256),
            cloud_protection: None,
            managed_by: None,
        });
        kinds.push(kind);
        cases.push(case);
    }
    Fleet {
        now,
        instances,
        kinds,
        cases,
    }
}

/// Feeds every instance's samples, reading by reading (all GPUs of a reading together,
/// as a scrape delivers them). Returns the windows and the number of samples.
fn feed(f: &Fleet) -> (Vec<SampleWindow>, u64) {
    let mut rng = Lcg(7);
    let start = f.now - TimeDelta::minutes(MINUTES);
    let mut windows = Vec::with_capacity(f.instances.len());
    let mut templates: Vec<GpuSample> = (0..8)
        .map(|g| GpuSample {
            instance_id: String::new(),
            gpu: g.to_string(),
            at: start,
            utilization_percent: 0.0,
            memory_used_mib: Some(1024.0),
            power_watts: Some(70.0),
            source: SampleSource::Dcgm,
        })
        .collect();
    let mut n = 0u64;
    for (inst, kind) in f.instances.iter().zip(&f.kinds) {
        let mut w = SampleWindow::new();
        let readings = MINUTES * 60 / STEP_SECS;
        let first = if *kind == Kind::Sparse {
            readings - 12
        } else {
            0
        };
        for r in first..readings {
            let at = start + TimeDelta::seconds(r * STEP_SECS);
            for s in templates.iter_mut().take(inst.gpu_count as usize) {
                s.at = at;
                s.utilization_percent = match kind {
                    Kind::Idle | Kind::Sparse => rng.below(500) as f64 / 100.0,
                    Kind::Busy => 40.0 + rng.below(60) as f64,
                    Kind::Burst if r == readings / 2 => 75.0,
                    Kind::Burst => rng.below(300) as f64 / 100.0,
                };
                s.power_watts = Some(60.0 + s.utilization_percent * 3.0);
                w.push(s);
                n += 1;
            }
        }
        windows.push(w);
    }
    (windows, n)
}

fn fleet_view(f: &Fleet) -> FleetView {
    FleetView {
        actions_last_hour: 3,
        stopped_by_policy: 40,
        fleet_size: f.instances.len() as u32,
        last_sample_at: Some(f.now),
    }
}

fn pass(
    policy: &IdlePolicy,
    f: &Fleet,
    windows: &[SampleWindow],
) -> Vec<bursar::domain::idle::Outcome> {
    let (from, to) = policy.window_at(f.now);
    let views: Vec<InstanceView> = f
        .instances
        .iter()
        .zip(windows)
        .zip(&f.cases)
        .map(|((inst, w), case)| InstanceView {
            instance: inst,
            summary: w.summary(from, to),
            case: case.clone(),
            kept_until: None,
        })
        .collect();
    evaluate(policy, f.now, &views, &fleet_view(f))
}

fn bench(c: &mut Criterion) {
    let f = fleet();
    let policy = IdlePolicy {
        mode: IdleMode::Stop,
        ..IdlePolicy::default()
    };
    let (windows, samples) = feed(&f);

    // Memory: what the windows hold, per instance.
    let heap: usize = windows.iter().map(|w| w.heap_bytes()).sum();
    let own = size_of::<SampleWindow>() * windows.len();
    let by_gpus = |gpus: u32| {
        let ws: Vec<&SampleWindow> = windows
            .iter()
            .zip(&f.instances)
            .zip(&f.kinds)
            .filter(|((_, i), k)| i.gpu_count == gpus && **k != Kind::Sparse)
            .map(|((w, _), _)| w)
            .collect();
        let bytes: usize = ws.iter().map(|w| w.heap_bytes()).sum();
        (bytes / ws.len().max(1), ws.first().map_or(0, |w| w.len()))
    };
    let (one, readings) = by_gpus(1);
    let (eight, _) = by_gpus(8);
    println!(
        "{} instances, {samples} samples; window memory: {:.0} bytes/instance on average \
         ({} heap + {} struct); {readings} readings: 1 GPU {one} B heap, 8 GPUs {eight} B heap",
        windows.len(),
        (heap + own) as f64 / windows.len() as f64,
        heap / windows.len(),
        size_of::<SampleWindow>(),
    );
    let out = pass(&policy, &f, &windows);
    let count = |pred: &dyn Fn(&bursar::domain::idle::Outcome) -> bool| {
        out.iter().filter(|o| pred(o)).count()
    };
    println!(
        "one pass: {} idle, {} busy, {} unknown, {} skipped; {} commands, {} audit rows",
        count(&|o| o.verdict.as_str() == "idle"),
        count(&|o| o.verdict.as_str() == "busy"),
        count(&|o| o.verdict.as_str() == "unknown"),
        count(&|o| o.verdict.as_str() == "skipped"),
        count(&|o| o.command.is_some()),
        count(&|o| o.audit.is_some()),
    );

    let mut g = c.benchmark_group("idle");
    g.sample_size(20);
    g.throughput(Throughput::Elements(samples));
    g.bench_function("push", |b| {
        b.iter_batched(|| (), |()| feed(black_box(&f)), BatchSize::PerIteration)
    });
    g.throughput(Throughput::Elements(f.instances.len() as u64));
    g.bench_function("pass", |b| {
        b.iter(|| pass(black_box(&policy), &f, &windows))
    });
    let (from, to) = policy.window_at(f.now);
    let views: Vec<InstanceView> = f
        .instances
        .iter()
        .zip(&windows)
        .zip(&f.cases)
        .map(|((inst, w), case)| InstanceView {
            instance: inst,
            summary: w.summary(from, to),
            case: case.clone(),
            kept_until: None,
        })
        .collect();
    let fv = fleet_view(&f);
    g.bench_function("evaluate", |b| {
        b.iter(|| evaluate(black_box(&policy), f.now, &views, &fv))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
