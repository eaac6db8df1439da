//! `SampleWindow`: one instance's recent utilisation readings, kept small, and
//! `WindowSummary`, what they say over a time range.
//!
//! Samples arrive per GPU, from several sources, late and out of order. The window folds
//! them by time, to the second: one *reading* of the machine holds, for that second, the
//! maximum utilisation, power and memory across the GPUs read then, and which GPUs those
//! were (a bit each in a 64-bit set). A reading takes 24 bytes whatever the number of GPUs;
//! the GPU names are kept once per window. 30 minutes of 15-second readings is 120 readings,
//! about 3 KiB ([`SampleWindow::heap_bytes`] says exactly).
//!
//! Utilisation is stored as `f32` rounded *up*, so a stored value is never below the one
//! read: comparing it with a threshold can only err towards "busy".
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::fleet::GpuSample;

/// GPUs a window tells apart. A machine with more (none has today) shares the last bit
/// among the 64th and later GPUs, so they count as one in [`WindowSummary::gpus`].
const MAX_GPUS: usize = 64;

/// One reading of the machine: every sample of one second, folded.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Reading {
    /// Seconds since the window's `base`.
    t: i32,
    /// Max utilisation across the GPUs read in this second, percent, rounded up.
    util: f32,
    /// Max power draw (W); NaN when no sample of this second had one.
    power: f32,
    /// Max memory in use (MiB); NaN when none had it.
    memory: f32,
    /// Which GPUs were read (bit i = `gpus[i]`).
    gpus: u64,
}

/// One instance's recent readings, sorted by time. Fed with [`push`](Self::push), trimmed
/// with [`prune`](Self::prune), read with [`summary`](Self::summary).
#[derive(Clone, Debug, Default)]
pub struct SampleWindow {
    /// Unix seconds that `Reading::t` counts from: the first sample pushed into an empty
    /// window.
    base: i64,
    readings: Vec<Reading>,
    /// GPU identities (index or UUID) in the order first seen; at most `MAX_GPUS`.
    gpus: Vec<Box<str>>,
}

/// What a window's readings say over `[from, to]`, plus the readings newer than `to`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowSummary {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Readings (distinct sample seconds) in `[from, to]`.
    pub samples: u32,
    /// The maximum utilisation (percent) across every GPU and reading in `[from, to]`.
    pub max_util_percent: Option<f64>,
    pub max_power_watts: Option<f64>,
    pub max_memory_mib: Option<f64>,
    /// Distinct GPUs read in `[from, to]`.
    pub gpus: u32,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// The longest stretch of `[from, to]` without a reading, in seconds: between two
    /// readings, or at either end. The whole range when there is none.
    pub max_gap_secs: u64,
    /// Readings after `to` (the lag: that part of time is not complete yet).
    pub newer_samples: u32,
    /// Their maximum utilisation: activity there still counts.
    pub newer_max_util_percent: Option<f64>,
}

impl WindowSummary {
    /// No readings at all over `[from, to]`.
    pub fn empty(from: DateTime<Utc>, to: DateTime<Utc>) -> WindowSummary {
        WindowSummary {
            from,
            to,
            samples: 0,
            max_util_percent: None,
            max_power_watts: None,
            max_memory_mib: None,
            gpus: 0,
            first_at: None,
            last_at: None,
            max_gap_secs: span(from, to),
            newer_samples: 0,
            newer_max_util_percent: None,
        }
    }
}

impl SampleWindow {
    pub fn new() -> SampleWindow {
        SampleWindow::default()
    }

    /// Adds one GPU's sample, in any order. Returns false (and keeps nothing) when the
    /// utilisation is not a finite number ≥ 0, or the time is more than 68 years from the
    /// window's other readings. Samples are expected to have passed
    /// [`GpuSample::validate`]; this only guards the window itself.
    pub fn push(&mut self, s: &GpuSample) -> bool {
        let u = s.utilization_percent;
        if !u.is_finite() || u < 0.0 {
            return false;
        }
        let secs = s.at.timestamp();
        if self.readings.is_empty() {
            self.base = secs;
        }
        let Ok(t) = i32::try_from(secs - self.base) else {
            return false;
        };
        let reading = Reading {
            t,
            util: round_up(u),
            power: extra(s.power_watts),
            memory: extra(s.memory_used_mib),
            gpus: self.gpu_bit(&s.gpu),
        };
        let at = match self.readings.last() {
            None => 0,
            Some(last) if last.t < t => self.readings.len(),
            _ => self.readings.partition_point(|r| r.t < t),
        };
        match self.readings.get_mut(at) {
            Some(r) if r.t == t => fold(r, &reading),
            _ => {
                if self.readings.len() == self.readings.capacity() {
                    // Grow by a quarter, not double: a window holds a steady number of
                    // readings, and doubling would leave half of it empty.
                    self.readings.reserve_exact(self.readings.len() / 4 + 16);
                }
                self.readings.insert(at, reading);
            }
        }
        true
    }

    /// Drops the readings older than `before` (to the second). An emptied window forgets
    /// its GPUs too.
    pub fn prune(&mut self, before: DateTime<Utc>) {
        let cut = before.timestamp().saturating_sub(self.base);
        let n = self.readings.partition_point(|r| i64::from(r.t) < cut);
        self.readings.drain(..n);
        let len = self.readings.len();
        if self.readings.capacity() > 2 * len + 32 {
            self.readings.shrink_to(len + len / 4 + 16);
        }
        if self.readings.is_empty() {
            self.gpus.clear();
        }
    }

    /// The readings over `[from, to]` (to the second), and those after `to`.
    pub fn summary(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> WindowSummary {
        let mut out = WindowSummary::empty(from, to);
        let lo = from.timestamp().saturating_sub(self.base);
        let hi = to.timestamp().saturating_sub(self.base);
        let start = self.readings.partition_point(|r| i64::from(r.t) < lo);
        let end = start + self.readings[start..].partition_point(|r| i64::from(r.t) <= hi);
        let inside = &self.readings[start..end];
        if let (Some(first), Some(last)) = (inside.first(), inside.last()) {
            let mut util = f32::NEG_INFINITY;
            let (mut power, mut memory) = (f32::NAN, f32::NAN);
            let mut gpus = 0u64;
            let mut gap = 0i64;
            let mut prev = first.t;
            for r in inside {
                gap = gap.max(i64::from(r.t) - i64::from(prev));
                prev = r.t;
                util = util.max(r.util);
                power = power.max(r.power);
                memory = memory.max(r.memory);
                gpus |= r.gpus;
            }
            out.samples = count(inside.len());
            out.max_util_percent = Some(f64::from(util));
            out.max_power_watts = known(power);
            out.max_memory_mib = known(memory);
            out.gpus = gpus.count_ones();
            out.first_at = self.time_of(first);
            out.last_at = self.time_of(last);
            let head = i64::from(first.t) - lo;
            let tail = hi - i64::from(last.t);
            out.max_gap_secs = u64::try_from(gap.max(head).max(tail)).unwrap_or(0);
        }
        let newer = &self.readings[end..];
        out.newer_samples = count(newer.len());
        out.newer_max_util_percent = newer.iter().map(|r| r.util).reduce(f32::max).map(f64::from);
        out
    }

    /// The newest reading's time (to the second).
    pub fn last_at(&self) -> Option<DateTime<Utc>> {
        self.readings.last().and_then(|r| self.time_of(r))
    }

    /// Readings held.
    pub fn len(&self) -> usize {
        self.readings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }

    /// Bytes this window holds on the heap (readings' capacity and GPU names). The struct
    /// itself is `size_of::<SampleWindow>()` more.
    pub fn heap_bytes(&self) -> usize {
        self.readings.capacity() * size_of::<Reading>()
            + self.gpus.capacity() * size_of::<Box<str>>()
            + self.gpus.iter().map(|g| g.len()).sum::<usize>()
    }

    fn time_of(&self, r: &Reading) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.base + i64::from(r.t), 0)
    }

    fn gpu_bit(&mut self, gpu: &str) -> u64 {
        let i = match self.gpus.iter().position(|g| &**g == gpu) {
            Some(i) => i,
            None if self.gpus.len() < MAX_GPUS => {
                self.gpus.push(gpu.into());
                self.gpus.len() - 1
            }
            None => MAX_GPUS - 1,
        };
        1u64 << i
    }
}

fn fold(into: &mut Reading, r: &Reading) {
    into.util = into.util.max(r.util);
    into.power = into.power.max(r.power);
    into.memory = into.memory.max(r.memory);
    into.gpus |= r.gpus;
}

/// The smallest `f32` not below `x`.
fn round_up(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x { f.next_up() } else { f }
}

/// Power or memory as stored: NaN for "not read", a non-finite or negative value too.
fn extra(v: Option<f64>) -> f32 {
    match v {
        Some(v) if v.is_finite() && v >= 0.0 => v as f32,
        _ => f32::NAN,
    }
}

fn known(v: f32) -> Option<f64> {
    (!v.is_nan()).then_some(f64::from(v))
}

/// `to − from` in whole seconds, 0 when negative.
fn span(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    u64::try_from(to.timestamp().saturating_sub(from.timestamp())).unwrap_or(0)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fleet::SampleSource;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn s(at: i64, gpu: &str, util: f64, power: Option<f64>) -> GpuSample {
        GpuSample {
            instance_id: "i-1".into(),
            gpu: gpu.into(),
            at: t(at),
            utilization_percent: util,
            memory_used_mib: Some(util * 100.0),
            power_watts: power,
            source: SampleSource::Dcgm,
        }
    }

    #[test]
    fn gpus_read_in_the_same_second_are_one_reading() {
        let mut w = SampleWindow::new();
        for g in 0..8 {
            assert!(w.push(&s(
                0,
                &g.to_string(),
                f64::from(g),
                Some(60.0 + f64::from(g))
            )));
        }
        // Sub-second spread of one scrape still lands in the same second.
        let mut late = s(15, "0", 1.0, None);
        late.at += chrono::TimeDelta::milliseconds(900);
        w.push(&late);
        w.push(&s(15, "1", 2.0, None));
        let sum = w.summary(t(0), t(60));
        assert_eq!(sum.samples, 2);
        assert_eq!(sum.gpus, 8);
        assert_eq!(sum.max_util_percent, Some(7.0));
        assert_eq!(sum.max_power_watts, Some(67.0));
        assert_eq!(sum.max_memory_mib, Some(700.0));
        assert_eq!(sum.first_at, Some(t(0)));
        assert_eq!(sum.last_at, Some(t(15)));
        assert_eq!(sum.max_gap_secs, 45, "from the last reading to the end");
    }

    #[test]
    fn the_longest_stretch_without_a_reading_counts_both_ends_and_the_middle() {
        let mut w = SampleWindow::new();
        for at in [100, 115, 130, 400, 415] {
            w.push(&s(at, "0", 1.0, None));
        }
        assert_eq!(w.summary(t(100), t(415)).max_gap_secs, 270);
        assert_eq!(w.summary(t(0), t(415)).max_gap_secs, 270);
        assert_eq!(w.summary(t(-300), t(415)).max_gap_secs, 400);
        assert_eq!(w.summary(t(400), t(1000)).max_gap_secs, 585);
        assert_eq!(w.summary(t(500), t(1000)).max_gap_secs, 500);
    }

    #[test]
    fn out_of_order_and_late_samples_give_the_same_summary() {
        let mut samples = Vec::new();
        for i in 0..20 {
            for g in ["0", "1"] {
                let u = if i == 7 && g == "1" { 55.0 } else { 1.0 };
                samples.push(s(i * 15, g, u, Some(70.0)));
            }
        }
        let mut ordered = SampleWindow::new();
        samples.iter().for_each(|x| assert!(ordered.push(x)));
        // Reverse, then interleave: every insertion lands before the tail.
        let mut shuffled = SampleWindow::new();
        for x in samples.iter().rev().step_by(2) {
            shuffled.push(x);
        }
        for x in samples.iter().step_by(2) {
            shuffled.push(x);
        }
        let absolute = |w: &SampleWindow| -> Vec<(Option<DateTime<Utc>>, f32, u64)> {
            w.readings
                .iter()
                .map(|r| (w.time_of(r), r.util, r.gpus))
                .collect()
        };
        assert_eq!(absolute(&ordered), absolute(&shuffled));
        assert_eq!(absolute(&ordered).len(), 20);
        let sum = shuffled.summary(t(0), t(300));
        assert_eq!(sum.samples, 20);
        assert_eq!(sum.max_util_percent, Some(55.0));
        // A late sample for a second already read folds into it.
        shuffled.push(&s(30, "1", 90.0, None));
        assert_eq!(shuffled.len(), 20);
        assert_eq!(shuffled.summary(t(30), t(30)).max_util_percent, Some(90.0));
    }

    #[test]
    fn bounds_are_inclusive_and_readings_after_the_end_are_reported_apart() {
        let mut w = SampleWindow::new();
        for i in 0..10 {
            w.push(&s(i * 10, "0", if i == 9 { 80.0 } else { 2.0 }, None));
        }
        let sum = w.summary(t(10), t(80));
        assert_eq!(sum.samples, 8);
        assert_eq!(sum.max_util_percent, Some(2.0));
        assert_eq!(sum.newer_samples, 1);
        assert_eq!(sum.newer_max_util_percent, Some(80.0));
        assert_eq!(sum.max_power_watts, None, "no power read: unknown, not 0");
        let none = w.summary(t(200), t(300));
        assert_eq!(none, WindowSummary::empty(t(200), t(300)));
        let before = w.summary(t(-100), t(-50));
        assert_eq!(before.samples, 0);
        assert_eq!(before.newer_samples, 10);
    }

    #[test]
    fn prune_drops_old_readings_and_an_empty_window_forgets_its_gpus() {
        let mut w = SampleWindow::new();
        for i in 0..10 {
            w.push(&s(i * 10, &format!("gpu{i}"), 1.0, None));
        }
        w.prune(t(50));
        assert_eq!(w.len(), 5);
        assert_eq!(w.summary(t(0), t(100)).first_at, Some(t(50)));
        w.prune(t(1000));
        assert!(w.is_empty());
        assert!(w.gpus.is_empty());
        // A new base after emptying: far later samples still fit.
        assert!(w.push(&s(3_000_000_000, "0", 3.0, None)));
        assert_eq!(w.last_at(), Some(t(3_000_000_000)));
        assert!(!w.push(&s(-100, "0", 3.0, None)), "68+ years apart");
    }

    #[test]
    fn utilisation_is_rounded_up_so_a_threshold_comparison_errs_towards_busy() {
        for u in [10.1, 9.999_999_9, 0.004_656 * 100.0, 33.3] {
            let mut w = SampleWindow::new();
            w.push(&s(0, "0", u, None));
            let max = w.summary(t(0), t(0)).max_util_percent.unwrap();
            assert!(max >= u, "{max} < {u}");
            assert!(max - u < 1e-5);
        }
    }

    #[test]
    fn not_a_number_is_refused_and_a_bad_extra_is_unknown() {
        let mut w = SampleWindow::new();
        assert!(!w.push(&s(0, "0", f64::NAN, None)));
        assert!(!w.push(&s(0, "0", -1.0, None)));
        assert!(w.is_empty());
        assert!(w.push(&s(0, "0", 1.0, Some(f64::NAN))));
        assert_eq!(w.summary(t(0), t(0)).max_power_watts, None);
    }

    #[test]
    fn many_gpus_share_the_last_slot_and_memory_stays_small() {
        let mut w = SampleWindow::new();
        for g in 0..100 {
            w.push(&s(0, &format!("GPU-{g}"), 1.0, None));
        }
        assert_eq!(w.summary(t(0), t(0)).gpus, 64);
        let mut w = SampleWindow::new();
        for i in 0..120 {
            for g in 0..8 {
                w.push(&s(i * 15, &g.to_string(), 1.0, Some(70.0)));
            }
        }
        assert_eq!(w.len(), 120);
        assert_eq!(size_of::<Reading>(), 24);
        // Capacity grows by a quarter: 16, 36, 61, 92, 131.
        assert_eq!(w.heap_bytes(), 131 * 24 + 8 * 16 + 8);
        // Pruning most of it gives the room back.
        w.prune(t(100 * 15));
        assert_eq!(w.len(), 20);
        assert!(w.heap_bytes() <= 41 * 24 + 8 * 16 + 8, "{}", w.heap_bytes());
    }
}
