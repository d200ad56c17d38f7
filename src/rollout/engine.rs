//! The rollout engine on tokio: stage after stage, batch after batch, a task per host.
//!
//! A host's work blocks (ssh2 is blocking), so each runs on tokio's blocking pool, at most
//! `parallel` at once (a semaphore). SIGINT and SIGTERM are the engine's: the first starts
//! no new host (and, through the shared [`Interrupt`], no new step on the hosts in flight,
//! which end at their next step and release their locks); the second makes the steps in
//! flight end at once, and a host that still has not returned [`ABORT_GRACE`] later is left
//! behind, its connection closed by our exit (so its lock goes with it); a third exits.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{Event, Failure, HostResult, Status, Work, allowed_failures, batches};
use crate::inventory::Amount;
use crate::transport::watch::Interrupt;

/// How long the hosts in flight have to return after a second interrupt.
pub const ABORT_GRACE: Duration = Duration::from_secs(5);

/// How a rollout goes through its hosts.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Hosts per batch (all at once when unset).
    pub batch: Option<Amount>,
    /// Hosts worked on at once.
    pub parallel: usize,
    /// Failed hosts tolerated before the rollout stops.
    pub max_failures: Amount,
}

/// Runs `work` on every host, stage after stage (see [`super::stages`]) and batch after
/// batch; returns one result per host, in the order of `stages`. SIGINT and SIGTERM raise
/// `interrupt` while it runs.
pub fn run(
    stages: &[Vec<String>],
    policy: &Policy,
    work: Arc<Work>,
    events: &Sender<Event>,
    interrupt: &Interrupt,
) -> Vec<HostResult> {
    raise_open_files();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(policy.parallel.max(1))
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let results = runtime.block_on(roll(stages, policy, work, events, interrupt));
    // A host abandoned after a second interrupt is not waited for.
    runtime.shutdown_background();
    results
}

async fn roll(
    stages: &[Vec<String>],
    policy: &Policy,
    work: Arc<Work>,
    events: &Sender<Event>,
    interrupt: &Interrupt,
) -> Vec<HostResult> {
    let hosts: Vec<String> = stages.concat();
    let allowed = allowed_failures(hosts.len(), policy.max_failures);
    let (raised, signals) = watch::channel(0u8);
    let listener = tokio::spawn(listen(interrupt.clone(), raised, events.clone()));
    let batches: Vec<Vec<String>> = (stages.iter())
        .flat_map(|s| batches(s, policy.batch))
        .collect();
    let count = batches.len();
    let slots = Arc::new(Semaphore::new(policy.parallel.max(1)));
    let mut results: Vec<HostResult> = Vec::new();
    for (index, batch) in batches.into_iter().enumerate() {
        let failed = (results.iter())
            .filter(|r| matches!(r.status, Status::Failed(_)))
            .count();
        if interrupt.stopping() || failed > allowed {
            let skipped: Vec<String> = (hosts.iter())
                .filter(|h| !results.iter().any(|r| &r.host == *h))
                .cloned()
                .collect();
            // An interrupt was said when it came; a threshold passed is said here.
            if !interrupt.stopping() {
                let _ = events.send(Event::Stopped {
                    failed,
                    allowed,
                    skipped: skipped.clone(),
                });
            }
            results.extend(skipped.into_iter().map(skipped_result));
            break;
        }
        let _ = events.send(Event::Batch {
            index: index + 1,
            count,
            hosts: batch.clone(),
        });
        let mut tasks = JoinSet::new();
        for host in batch {
            tasks.spawn(one_host(
                host,
                Arc::clone(&slots),
                Arc::clone(&work),
                events.clone(),
                interrupt.clone(),
                signals.clone(),
            ));
        }
        while let Some(done) = tasks.join_next().await {
            results.push(done.expect("a host task does not panic"));
        }
    }
    listener.abort();
    results.sort_by_key(|r| hosts.iter().position(|h| *h == r.host));
    results
}

/// Raises the soft limit of open files to the hard one: each host in flight holds a socket
/// (and an image stream a pipe), so a `parallel` of a thousand would exhaust the usual soft
/// limit of 1024 where the hard one (often 512Ki) is ample.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on a valid rlimit owned by this frame.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn skipped_result(host: String) -> HostResult {
    HostResult {
        host,
        status: Status::Skipped,
        duration: Duration::ZERO,
    }
}

/// Counts SIGINT and SIGTERM into `interrupt` (and `raised`, which wakes the host tasks
/// waiting on a second one).
async fn listen(interrupt: Interrupt, raised: watch::Sender<u8>, events: Sender<Event>) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let count = interrupt.raise();
        let _ = events.send(Event::Interrupted { count });
        raised.send_replace(count);
        if count >= 3 {
            std::process::exit(130);
        }
    }
}

/// One host: waits for a slot, then runs `work` on a blocking thread. Once a second
/// interrupt came, the host has [`ABORT_GRACE`] left to return.
async fn one_host(
    host: String,
    slots: Arc<Semaphore>,
    work: Arc<Work>,
    events: Sender<Event>,
    interrupt: Interrupt,
    mut signals: watch::Receiver<u8>,
) -> HostResult {
    let _slot = slots
        .acquire_owned()
        .await
        .expect("the semaphore stays open");
    if interrupt.stopping() {
        return skipped_result(host);
    }
    let started = Instant::now();
    let _ = events.send(Event::Started { host: host.clone() });
    let last_step = Arc::new(Mutex::new(String::from("connecting")));
    let mut blocking = {
        let (host, events, last_step) = (host.clone(), events.clone(), Arc::clone(&last_step));
        tokio::task::spawn_blocking(move || {
            let step = |message: String| {
                *last_step.lock().expect("last step") = message.clone();
                let _ = events.send(Event::Step {
                    host: host.clone(),
                    message,
                });
            };
            work(&host, &step)
        })
    };
    let aborted = async {
        let _ = signals.wait_for(|count| *count >= 2).await;
    };
    let outcome = tokio::select! {
        done = &mut blocking => Some(done),
        () = aborted => tokio::time::timeout(ABORT_GRACE, &mut blocking).await.ok(),
    };
    let after = last_step.lock().expect("last step").clone();
    let status = match outcome {
        Some(Ok(Ok((changes, unchanged)))) => Status::Done { changes, unchanged },
        Some(Ok(Err(Failure::Error(report)))) => Status::Failed(report),
        Some(Ok(Err(Failure::Interrupted))) => Status::Interrupted { after },
        Some(Err(panic)) => Status::Failed(format!("{host}: synprov failed: {panic}")),
        None => Status::Interrupted {
            after: format!("{after} (abandoned: no answer {ABORT_GRACE:?} after the abort)"),
        },
    };
    let result = HostResult {
        host,
        status,
        duration: started.elapsed(),
    };
    let _ = events.send(Event::Finished(result.clone()));
    result
}
