//! CPU time and memory of a running process, read from Linux's `/proc`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};

/// Where a CPU-time figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuSource {
    /// Sum of `/proc/<pid>/task/*/schedstat`: nanosecond precision.
    Schedstat,
    /// `utime + stime` of `/proc/<pid>/stat`: clock-tick precision (usually 10 ms).
    Stat,
}

/// A process's CPU time at one moment.
#[derive(Debug, Clone)]
pub struct CpuReading {
    /// Nanoseconds on CPU per live thread. `schedstat` is per thread, and a thread that exits
    /// takes its time with it, so this is only usable when no thread exited in between.
    threads: BTreeMap<u32, u64>,
    /// Whole-process time, dead threads included, at tick resolution.
    total: Duration,
}

impl CpuReading {
    /// Read the CPU time of process `pid`.
    pub fn read(pid: u32, clock_ticks_per_second: u64) -> anyhow::Result<Self> {
        Ok(Self {
            threads: thread_schedstats(pid).unwrap_or_default(),
            total: stat_cpu_time(pid, clock_ticks_per_second)?,
        })
    }

    /// CPU time used between `earlier` and `self`: precise when every earlier thread is still
    /// alive (threads started in between are counted whole), else at tick resolution.
    pub fn since(&self, earlier: &Self) -> (Duration, CpuSource) {
        let all_alive = !earlier.threads.is_empty()
            && earlier
                .threads
                .keys()
                .all(|tid| self.threads.contains_key(tid));
        if all_alive {
            let now: u64 = self.threads.values().sum();
            let then: u64 = earlier.threads.values().sum();
            (
                Duration::from_nanos(now.saturating_sub(then)),
                CpuSource::Schedstat,
            )
        } else {
            (self.total.saturating_sub(earlier.total), CpuSource::Stat)
        }
    }
}

/// `sysconf(_SC_CLK_TCK)` through `getconf`; 100 (Linux's usual value) when that fails.
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// Busy and total CPU time of the whole machine so far, in ticks (the `cpu` line of
/// `/proc/stat`); two readings tell how busy other processes keep the machine.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...; idle and iowait are not busy.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle, total))
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most it has been resident.
    pub peak_rss_kib: u64,
}

impl Memory {
    /// Read `/proc/<pid>/status`.
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        parse_status(&status).with_context(|| format!("parsing {path}"))
    }
}

fn parse_status(status: &str) -> anyhow::Result<Memory> {
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .with_context(|| format!("no {name} line"))?;
        let kib = line.trim().trim_end_matches("kB").trim();
        kib.parse()
            .with_context(|| format!("{name} is not a number of kB: {line:?}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS")?,
        peak_rss_kib: field("VmHWM")?,
    })
}

fn thread_schedstats(pid: u32) -> anyhow::Result<BTreeMap<u32, u64>> {
    let mut threads = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread may exit between listing and reading; it is then simply absent.
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let nanos = text
            .split_whitespace()
            .next()
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("unexpected schedstat of thread {tid}: {text:?}"))?;
        threads.insert(tid, nanos);
    }
    Ok(threads)
}

fn stat_cpu_time(pid: u32, clock_ticks_per_second: u64) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_stat_ticks(&stat).with_context(|| format!("parsing {path}"))?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second as f64,
    ))
}

/// `utime + stime` (fields 14 and 15) in clock ticks. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted after its closing parenthesis.
fn parse_stat_ticks(stat: &str) -> anyhow::Result<u64> {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        bail!("no ')' after the command name");
    };
    // `rest` starts at field 3 (state), so utime is its 12th field (index 11).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick_field = |index: usize, name: &str| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("no numeric {name} field"))
    };
    Ok(tick_field(11, "utime")? + tick_field(12, "stime")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_survive_a_command_name_with_spaces_and_parens() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_stat_ticks(stat).expect("parses"), 325);
    }

    #[test]
    fn status_gives_current_and_peak_rss() {
        let status = "Name:\tbifrost\nVmHWM:\t   20480 kB\nVmRSS:\t   12288 kB\nThreads:\t3\n";
        let memory = parse_status(status).expect("parses");
        assert_eq!((memory.rss_kib, memory.peak_rss_kib), (12288, 20480));
    }

    #[test]
    fn a_thread_that_exited_falls_back_to_tick_resolution() {
        let before = CpuReading {
            threads: BTreeMap::from([(1, 1_000), (2, 5_000)]),
            total: Duration::from_millis(10),
        };
        let after = CpuReading {
            threads: BTreeMap::from([(1, 4_000), (3, 500)]),
            total: Duration::from_millis(30),
        };
        assert_eq!(
            after.since(&before),
            (Duration::from_millis(20), CpuSource::Stat)
        );
    }

    #[test]
    fn new_threads_are_counted_whole() {
        let before = CpuReading {
            threads: BTreeMap::from([(1, 1_000)]),
            total: Duration::ZERO,
        };
        let after = CpuReading {
            threads: BTreeMap::from([(1, 4_000), (3, 500)]),
            total: Duration::ZERO,
        };
        assert_eq!(
            after.since(&before),
            (Duration::from_nanos(3_500), CpuSource::Schedstat)
        );
    }

    #[test]
    fn this_process_can_be_read() {
        let pid = std::process::id();
        let cpu = CpuReading::read(pid, clock_ticks_per_second()).expect("cpu readable");
        assert!(!cpu.threads.is_empty());
        assert!(Memory::read(pid).expect("memory readable").rss_kib > 0);
    }
}
