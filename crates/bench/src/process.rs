//! Samples of a process's memory and CPU time from `/proc`, for the server
//! under test and for the bench itself.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A process's resident memory and CPU time at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    /// Resident set size in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// When the sample was taken.
    pub at: Instant,
}

/// Reads `/proc/<pid>` (or `/proc/self` for `None`).
pub fn sample(pid: Option<u32>) -> std::io::Result<ProcessSample> {
    let base = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let status = std::fs::read_to_string(format!("{base}/status"))?;
    let stat = std::fs::read_to_string(format!("{base}/stat"))?;
    Ok(ProcessSample {
        rss_kib: rss_from_status(&status).unwrap_or(0),
        cpu_ticks: cpu_ticks_from_stat(&stat).unwrap_or(0),
        at: Instant::now(),
    })
}

fn rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime`: fields 14 and 15 of `stat`, counted after the command
/// name, which is in parentheses and may itself hold spaces.
fn cpu_ticks_from_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name come state (field 3) … utime (14) and stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`); 100 on every usual Linux.
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// What a process used between two samples.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Usage {
    /// CPU used, in percent of one core.
    pub cpu_percent: f64,
    /// CPU used, in seconds, so that a cost per answer or per delivery can
    /// be worked out without knowing how long the phase was.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Resident memory at the end, KiB.
    pub rss_kib: u64,
    /// Change of resident memory, KiB.
    pub rss_growth_kib: i64,
}

impl Usage {
    /// The usage from `before` to `after`.
    pub fn between(before: &ProcessSample, after: &ProcessSample, ticks_per_second: f64) -> Usage {
        let seconds = after.at.duration_since(before.at).as_secs_f64();
        let cpu_seconds =
            after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / ticks_per_second;
        Usage {
            cpu_percent: if seconds > 0.0 {
                100.0 * cpu_seconds / seconds
            } else {
                0.0
            },
            cpu_seconds,
            rss_kib: after.rss_kib,
            rss_growth_kib: after.rss_kib as i64 - before.rss_kib as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\ttalk\nVmPeak:\t  9000 kB\nVmRSS:\t   1234 kB\n";
        assert_eq!(rss_from_status(status), Some(1234));
        let stat = "42 (talk serve) S 1 42 42 0 -1 4194560 100 0 0 0 77 23 0 0 20 0 3 0";
        assert_eq!(cpu_ticks_from_stat(stat), Some(100));
    }

    #[test]
    fn samples_this_process() {
        let sample = sample(None).unwrap();
        assert!(sample.rss_kib > 0);
    }
}
