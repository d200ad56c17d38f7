//! Many hosts: in batches, several at once, stopping when too many fail.
//!
//! Hosts of a batch run in parallel, up to `parallel` at a time, one thread per host (each
//! owns its SSH session: PITFALLS.md). The next batch starts only when every host of the
//! current one has finished; once more hosts have failed than `max_failures` allows, the
//! hosts not yet started are left untouched. The engine reports [`Event`]s; it never prints.
//!
//! The engine runs on tokio ([`engine`]): a task per host, its blocking SSH work on a
//! blocking thread, the operator's signals watched by a task of their own.
//!
//! A host that depends on others (its workers need the Postgres and Redis of a spread
//! deployment's main host) comes in a later stage: stages run one after the other, each in
//! its batches, so such a host starts only once the hosts it needs have finished.

mod engine;

use std::time::Duration;

pub use engine::{Policy, run};

use crate::inventory::Amount;

/// What happened on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Done, with this many changes (0: nothing to do).
    Done {
        changes: usize,
        unchanged: usize,
    },
    Failed(String),
    /// Stopped by an interrupt after the step named (what was done before it is kept; the
    /// next apply finishes the rest).
    Interrupted {
        after: String,
    },
    /// Not started: the rollout stopped (or was interrupted) before reaching it.
    Skipped,
}

#[derive(Debug, Clone)]
pub struct HostResult {
    pub host: String,
    pub status: Status,
    pub duration: Duration,
}

/// Progress of a rollout, for the display.
#[derive(Debug, Clone)]
pub enum Event {
    Batch {
        index: usize,
        count: usize,
        hosts: Vec<String>,
    },
    Started {
        host: String,
    },
    Step {
        host: String,
        message: String,
    },
    /// Text to show as is (a host's plan).
    Output {
        host: String,
        text: String,
    },
    Finished(HostResult),
    Stopped {
        failed: usize,
        allowed: usize,
        skipped: Vec<String>,
    },
    /// The operator sent SIGINT or SIGTERM: the `count`th time.
    Interrupted {
        count: u8,
    },
}

/// Splits `hosts` into batches of `batch` (all at once when unset).
pub fn batches(hosts: &[String], batch: Option<Amount>) -> Vec<Vec<String>> {
    let size = match batch {
        None => hosts.len(),
        Some(Amount::Count(n)) => n as usize,
        Some(Amount::Percent(p)) => (hosts.len() * p as usize).div_ceil(100),
    }
    .max(1);
    hosts.chunks(size).map(<[String]>::to_vec).collect()
}

/// Orders `hosts` into stages: a host comes after every host of `hosts` it depends on
/// (`prerequisites`). Hosts that depend on one another in a cycle share a stage.
pub fn stages(hosts: &[String], prerequisites: impl Fn(&str) -> Vec<String>) -> Vec<Vec<String>> {
    let needs: Vec<Vec<usize>> = hosts
        .iter()
        .map(|host| {
            prerequisites(host)
                .into_iter()
                .filter_map(|p| hosts.iter().position(|h| *h == p))
                .collect()
        })
        .collect();
    // Each pass moves a host behind its prerequisites; a cycle stops at the cap.
    let mut stage = vec![0; hosts.len()];
    for _ in 0..hosts.len() {
        for (host, needs) in needs.iter().enumerate() {
            let after = needs.iter().map(|&p| stage[p] + 1).max().unwrap_or(0);
            stage[host] = after.min(hosts.len()).max(stage[host]);
        }
    }
    let last = stage.iter().copied().max().unwrap_or(0);
    (0..=last)
        .map(|n| {
            hosts
                .iter()
                .zip(&stage)
                .filter(|(_, s)| **s == n)
                .map(|(h, _)| h.clone())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// How many failed hosts are tolerated among `total`.
pub fn allowed_failures(total: usize, max_failures: Amount) -> usize {
    match max_failures {
        Amount::Count(n) => n as usize,
        Amount::Percent(p) => total * p as usize / 100,
    }
}

/// Why a host's work ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It failed: the report to show.
    Error(String),
    /// The operator interrupted the run: the host stopped between steps (or in one, at a
    /// second interrupt), its lock released.
    Interrupted,
}

impl From<String> for Failure {
    fn from(report: String) -> Failure {
        Failure::Error(report)
    }
}

/// What a rollout does to one host: returns (changes, unchanged files) or why it stopped.
/// `step` reports progress. It runs on a thread of its own, blocking as it likes.
pub type Work = dyn Fn(&str, &dyn Fn(String)) -> Result<(usize, usize), Failure> + Send + Sync;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::transport::watch::Interrupt;

    fn hosts(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("h{i}")).collect()
    }

    /// Runs `work` as the engine does, with its own interrupt; the results and every event.
    fn roll(
        stages: &[Vec<String>],
        batch: Option<Amount>,
        parallel: usize,
        max_failures: Amount,
        work: impl Fn(&str, &dyn Fn(String)) -> Result<(usize, usize), Failure> + Send + Sync + 'static,
    ) -> (Vec<HostResult>, Vec<Event>) {
        roll_interrupted(
            stages,
            batch,
            parallel,
            max_failures,
            work,
            &Interrupt::default(),
        )
    }

    fn roll_interrupted(
        stages: &[Vec<String>],
        batch: Option<Amount>,
        parallel: usize,
        max_failures: Amount,
        work: impl Fn(&str, &dyn Fn(String)) -> Result<(usize, usize), Failure> + Send + Sync + 'static,
        interrupt: &Interrupt,
    ) -> (Vec<HostResult>, Vec<Event>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let policy = Policy {
            batch,
            parallel,
            max_failures,
        };
        let results = run(stages, &policy, Arc::new(work), &tx, interrupt);
        (results, rx.try_iter().collect())
    }

    #[test]
    fn batches_by_count_and_percent() {
        assert_eq!(
            batches(&hosts(7), Some(Amount::Count(3)))
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [3, 3, 1]
        );
        assert_eq!(
            batches(&hosts(8), Some(Amount::Percent(25)))
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [2, 2, 2, 2]
        );
        assert_eq!(batches(&hosts(3), None).len(), 1);
    }

    #[test]
    fn a_failure_past_the_threshold_stops_before_the_next_batch() {
        let work = |host: &str, _: &dyn Fn(String)| {
            if host == "h2" {
                Err(Failure::Error("boom".to_string()))
            } else {
                Ok((1, 0))
            }
        };
        let (results, events) = roll(
            &[hosts(6)],
            Some(Amount::Count(2)),
            4,
            Amount::Count(0),
            work,
        );
        let statuses: Vec<_> = results
            .iter()
            .map(|r| (r.host.as_str(), r.status.clone()))
            .collect();
        assert_eq!(statuses[1], ("h2", Status::Failed("boom".into())));
        assert_eq!(
            statuses[0].1,
            Status::Done {
                changes: 1,
                unchanged: 0
            }
        );
        assert!(
            statuses[2..].iter().all(|(_, s)| *s == Status::Skipped),
            "{statuses:?}"
        );
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Stopped {
                failed: 1,
                allowed: 0,
                ..
            }
        )));
    }

    #[test]
    fn failures_within_the_threshold_go_on_and_hosts_run_in_parallel() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (running_, peak_) = (Arc::clone(&running), Arc::clone(&peak));
        let work = move |host: &str, _: &dyn Fn(String)| {
            let (running, peak) = (&running_, &peak_);
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            running.fetch_sub(1, Ordering::SeqCst);
            if host == "h1" {
                Err(Failure::Error("down".to_string()))
            } else {
                Ok((0, 3))
            }
        };
        let (results, _) = roll(&[hosts(6)], None, 3, Amount::Percent(20), work);
        assert_eq!(
            results
                .iter()
                .filter(|r| matches!(r.status, Status::Done { .. }))
                .count(),
            5
        );
        assert_eq!(peak.load(Ordering::SeqCst), 3, "three hosts at once");
    }

    #[test]
    fn hosts_come_after_the_hosts_they_depend_on() {
        let all = hosts(4);
        // h1 runs workers of a deployment whose main is on h3; h2 depends on h1.
        let staged = stages(&all, |host| match host {
            "h1" => vec!["h3".to_string()],
            "h2" => vec!["h1".to_string(), "elsewhere".to_string()],
            _ => vec![],
        });
        assert_eq!(staged, [vec!["h3", "h4"], vec!["h1"], vec!["h2"]]);
        assert_eq!(stages(&all, |_| vec![]), std::slice::from_ref(&all));
        let cycle = stages(&hosts(2), |host| {
            vec![if host == "h1" { "h2" } else { "h1" }.to_string()]
        });
        assert_eq!(cycle, [hosts(2)], "a cycle shares one stage");
    }

    #[test]
    fn a_stage_starts_only_when_the_one_before_has_finished() {
        let work = |_: &str, _: &dyn Fn(String)| Ok((1, 0));
        let staged = vec![
            vec!["h1".to_string(), "h2".to_string()],
            vec!["h3".to_string()],
        ];
        let (_, events) = roll(&staged, None, 10, Amount::Count(0), work);
        let order: Vec<String> = events
            .into_iter()
            .filter_map(|e| match e {
                Event::Batch { hosts, .. } => Some(format!("batch {}", hosts.join(","))),
                Event::Finished(r) => Some(r.host),
                _ => None,
            })
            .collect();
        assert_eq!(order[0], "batch h1,h2");
        assert_eq!(order[3..], ["batch h3", "h3"]);
    }

    #[test]
    fn an_interrupt_starts_no_new_host_and_marks_those_in_flight_interrupted() {
        let interrupt = Interrupt::default();
        let raised = interrupt.clone();
        // h1 and h2 run at once; h2 is interrupted between its steps, as a host's work is
        // when the first signal comes (its next step refused).
        let work = move |host: &str, step: &dyn Fn(String)| {
            step(format!("{host}: writing 3 file(s)"));
            if host == "h2" {
                raised.raise();
                return Err(Failure::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(100));
            Ok((3, 0))
        };
        let (results, _) = roll_interrupted(
            &[hosts(5)],
            Some(Amount::Count(2)),
            2,
            Amount::Count(0),
            work,
            &interrupt,
        );
        let statuses: Vec<Status> = results.into_iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                Status::Done {
                    changes: 3,
                    unchanged: 0
                },
                Status::Interrupted {
                    after: "h2: writing 3 file(s)".into()
                },
                Status::Skipped,
                Status::Skipped,
                Status::Skipped,
            ]
        );
    }
}
