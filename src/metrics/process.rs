//! The process's own figures, read from `/proc` at scrape time (Linux): resident and virtual
//! memory, CPU time, threads, open and maximum file descriptors, start time. The parsers are
//! pure and unit-tested over recorded text; `read` does the I/O. Elsewhere `read` returns
//! nothing and the `process_*` families are simply absent.

/// One reading; a field is `None` when its file could not be read or parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// What `/proc/self/stat` gives: CPU time and start time in clock ticks, sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatLine {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub threads: u64,
    /// Since boot.
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<StatLine> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field n is at index n - 3.
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let at = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(StatLine {
        utime_ticks: at(14)?,
        stime_ticks: at(15)?,
        threads: at(20)?,
        start_ticks: at(22)?,
        vsize_bytes: at(23)?,
        rss_pages: at(24)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit on open files from `/proc/<pid>/limits` (`None` when unlimited).
pub fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Combines the parsed files into one reading, given the kernel's clock tick rate and page
/// size.
pub fn combine(
    stat: Option<StatLine>,
    btime: Option<u64>,
    ticks_per_second: u64,
    page_size: u64,
) -> ProcessStats {
    let tps = ticks_per_second.max(1) as f64;
    ProcessStats {
        resident_bytes: stat.map(|s| s.rss_pages.saturating_mul(page_size)),
        virtual_bytes: stat.map(|s| s.vsize_bytes),
        cpu_seconds: stat.map(|s| (s.utime_ticks + s.stime_ticks) as f64 / tps),
        start_time_seconds: stat
            .zip(btime)
            .map(|(s, b)| b as f64 + s.start_ticks as f64 / tps),
        threads: stat.map(|s| s.threads),
        open_fds: None,
        max_fds: None,
    }
}

/// Reads this process's figures from `/proc/self`.
#[cfg(target_os = "linux")]
pub fn read() -> ProcessStats {
    let file = |p: &str| std::fs::read_to_string(p).ok();
    let mut s = combine(
        file("/proc/self/stat").as_deref().and_then(parse_stat),
        file("/proc/stat").as_deref().and_then(parse_btime),
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size() as u64,
    );
    s.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    s.max_fds = file("/proc/self/limits").as_deref().and_then(parse_max_fds);
    s
}

#[cfg(not(target_os = "linux"))]
pub fn read() -> ProcessStats {
    ProcessStats::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from a process whose name holds a space and a parenthesis.
    const STAT: &str = "21159 (my (odd) cmd) S 21157 21157 11228 0 -1 4194304 102 0 0 0 \
        250 130 0 0 20 0 7 0 72480 3133440 411 18446744073709551615 94803083595776 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(
            s,
            StatLine {
                utime_ticks: 250,
                stime_ticks: 130,
                threads: 7,
                start_ticks: 72480,
                vsize_bytes: 3133440,
                rss_pages: 411,
            }
        );
        assert_eq!(parse_stat("12 (cut"), None);
        assert_eq!(parse_stat("12 (x) S 1 2"), None, "too few fields");
    }

    #[test]
    fn combine_turns_ticks_and_pages_into_seconds_and_bytes() {
        let s = combine(parse_stat(STAT), Some(1_796_542_205), 100, 4096);
        assert_eq!(s.resident_bytes, Some(411 * 4096));
        assert_eq!(s.virtual_bytes, Some(3133440));
        assert_eq!(s.cpu_seconds, Some(3.8));
        assert_eq!(s.start_time_seconds, Some(1_796_542_205.0 + 724.8));
        assert_eq!(s.threads, Some(7));
        assert_eq!(combine(None, None, 100, 4096), ProcessStats::default());
    }

    #[test]
    fn btime_and_open_file_limit_are_found() {
        let stat = "cpu  1 2 3\nintr 5\nbtime 1796542205\nprocesses 9\n";
        assert_eq!(parse_btime(stat), Some(1_796_542_205));
        assert_eq!(parse_btime("cpu 1\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max cpu time              unlimited            unlimited            seconds   \n\
            Max open files            20000                524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(20000));
        assert_eq!(
            parse_max_fds("Max open files            unlimited            unlimited files\n"),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_and_threads() {
        let s = read();
        assert!(s.resident_bytes.unwrap() > 1 << 20, "{s:?}");
        assert!(
            s.virtual_bytes.unwrap() >= s.resident_bytes.unwrap(),
            "{s:?}"
        );
        assert!(s.threads.unwrap() >= 1 && s.open_fds.unwrap() >= 3, "{s:?}");
        assert!(s.start_time_seconds.unwrap() > 1.6e9, "{s:?}");
    }
}
