//! The coordinator's side of the pollers: splits them into groups, one per
//! worker, starts the workers, and merges what they report.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::protocol::Protocol;
use crate::scenario::Target;
use crate::worker::{GroupReport, GroupSpec, WorkerCommand, WorkerEvent, WorkerLink};
use crate::Error;

/// Every worker of a run.
pub(crate) struct Fleet {
    links: Vec<WorkerLink>,
    /// Pollers whose first poll was answered.
    pub(crate) ready: usize,
    /// Pollers that never got going.
    pub(crate) failed: usize,
}

/// The source address of worker `group`: the one the target names, or with
/// several workers on a loopback server, 127.0.0.2, 127.0.0.3, … so that
/// each worker has its own range of ephemeral ports.
fn source_of(target: &Target, group: usize, server_is_loopback_v4: bool) -> Option<IpAddr> {
    if !target.source_ips.is_empty() {
        return Some(target.source_ips[group % target.source_ips.len()]);
    }
    if target.workers > 0 && server_is_loopback_v4 && group < 250 {
        return Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + group as u8)));
    }
    None
}

impl Fleet {
    /// Starts `pollers` pollers over `channels` and waits for the ramp.
    pub(crate) async fn launch<T: Protocol>(
        target: &Target,
        run_id: &str,
        channels: &[String],
        pollers: usize,
        poll_limit: Duration,
    ) -> Result<Fleet, Error> {
        let server = crate::worker::server_address(&target.base_url)?;
        let server_is_loopback_v4 = matches!(server.ip(), IpAddr::V4(ip) if ip.is_loopback());
        let n_groups = target.workers.max(1);
        let ramp_limit = Duration::from_secs_f64(pollers as f64 / target.ramp_per_second)
            + Duration::from_secs(30);
        let mut links = Vec::with_capacity(n_groups);
        let mut first_index = 0;
        for group in 0..n_groups {
            // Spread the remainder over the first groups.
            let size = pollers / n_groups + usize::from(group < pollers % n_groups);
            let mut link = if target.workers == 0 {
                WorkerLink::in_process::<T>()
            } else {
                let program = target.worker_program.as_ref().ok_or_else(|| {
                    Error::Config("worker processes need a worker program".into())
                })?;
                WorkerLink::spawn(program)?
            };
            let spec = GroupSpec {
                base_url: target.base_url.clone(),
                source_ip: source_of(target, group, server_is_loopback_v4),
                run_id: run_id.to_owned(),
                channels: channels.to_vec(),
                first_index,
                pollers: size,
                ramp_per_second: target.ramp_per_second / n_groups as f64,
                transport: target.transport,
                wait_ms: target.wait_ms,
                poll_limit_ms: poll_limit.as_millis() as u64,
                ramp_limit_ms: ramp_limit.as_millis() as u64,
                leave_at_end: target.leave_at_end,
            };
            first_index += size;
            link.send(&WorkerCommand::Start { spec }).await?;
            links.push(link);
        }
        let mut fleet = Fleet {
            links,
            ready: 0,
            failed: 0,
        };
        for link in &mut fleet.links {
            match link
                .next_event(ramp_limit + Duration::from_secs(30))
                .await?
            {
                WorkerEvent::Ramped { ready, failed } => {
                    fleet.ready += ready;
                    fleet.failed += failed;
                }
                other => return Err(Error::Worker(format!("expected ramped, got {other:?}"))),
            }
        }
        Ok(fleet)
    }

    /// The process ids of the worker processes (none when in-process).
    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        self.links.iter().filter_map(WorkerLink::pid).collect()
    }

    /// Every worker's counters, merged.
    pub(crate) async fn collect(
        &mut self,
        expected: &[u64],
        drain: Duration,
    ) -> Result<GroupReport, Error> {
        Ok(merged(&self.collect_each(expected, drain).await?))
    }

    /// Each worker's counters, in the order of the workers: a worker that
    /// falls behind the others shows in its own latencies.
    pub(crate) async fn collect_each(
        &mut self,
        expected: &[u64],
        drain: Duration,
    ) -> Result<Vec<GroupReport>, Error> {
        let command = WorkerCommand::Collect {
            expected: expected.to_vec(),
            drain_ms: drain.as_millis() as u64,
        };
        for link in &mut self.links {
            link.send(&command).await?;
        }
        let mut reports = Vec::with_capacity(self.links.len());
        for link in &mut self.links {
            match link.next_event(drain + Duration::from_secs(60)).await? {
                WorkerEvent::Report { report } => reports.push(report),
                other => return Err(Error::Worker(format!("expected a report, got {other:?}"))),
            }
        }
        Ok(reports)
    }

    /// Stops every worker and waits for them to end their sessions.
    pub(crate) async fn stop(mut self) {
        for link in &mut self.links {
            let _ = link.send(&WorkerCommand::Stop).await;
        }
        for mut link in self.links {
            let _ = link.next_event(Duration::from_secs(60)).await;
            link.finish().await;
        }
    }
}

/// The workers' counters as one report.
pub(crate) fn merged(reports: &[GroupReport]) -> GroupReport {
    let mut merged = GroupReport::default();
    for report in reports {
        merged.merge(report);
    }
    merged
}
