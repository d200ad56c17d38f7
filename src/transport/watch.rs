//! What bounds the work on a connection: the deadline of the step it is in, a peer that
//! stopped answering, and the operator's Ctrl-C.
//!
//! The steps of an apply open with [`Watch::begin`], which refuses to start one once an
//! interrupt came (the step in flight finishes: a file batch is never left half-renamed);
//! every wait of the transport calls [`Watch::check`], which ends it when its step's
//! deadline passed or a second interrupt asks to abort. Once a command was cut short the
//! connection is spent: its state on the host is unknown, so every later call fails at once
//! with the same reason instead of waiting on a dead peer again.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::TransportError;
use crate::inventory::Deadlines;

/// The operator's interrupts of a run, shared by the engine (which raises it on SIGINT or
/// SIGTERM) and every connection of the run.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicU8>);

impl Interrupt {
    /// Counts one more signal; returns how many came (1: stop, 2: abort).
    pub fn raise(&self) -> u8 {
        self.0.fetch_add(1, Ordering::SeqCst).saturating_add(1)
    }

    /// A first signal came: start no new host and no new step.
    pub fn stopping(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= 1
    }

    /// A second signal came: end the steps in flight at once.
    pub fn aborting(&self) -> bool {
        self.0.load(Ordering::SeqCst) >= 2
    }
}

/// A step of the work on a host, each with its own deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Facts,
    /// Taking the deployments' locks: a round trip each, bounded as the facts are.
    Lock,
    Install,
    Image,
    Files,
    ComposeUp,
    Backup,
    /// An ACME deployment's placeholder certificate, then its issuance.
    Certificate,
    /// Waiting for the stack to turn healthy: `health_timeout`, and a minute for the last
    /// round of checks.
    Health(Duration),
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Facts => "facts",
            Step::Lock => "lock",
            Step::Install => "install",
            Step::Image => "image",
            Step::Files => "files",
            Step::ComposeUp => "compose up",
            Step::Backup => "backup",
            Step::Certificate => "certificate",
            Step::Health(_) => "health",
        }
    }

    /// The key of `[rollout.deadlines]` that sets this step's deadline.
    fn setting(self) -> &'static str {
        match self {
            Step::Facts | Step::Lock => "deadlines.facts",
            Step::Install => "deadlines.install",
            Step::Image => "deadlines.image",
            Step::Files => "deadlines.files",
            Step::ComposeUp => "deadlines.compose_up",
            Step::Backup => "deadlines.backup",
            Step::Certificate => "deadlines.certificate",
            Step::Health(_) => "health_timeout",
        }
    }

    fn deadline(self, deadlines: &Deadlines) -> Duration {
        match self {
            Step::Facts | Step::Lock => deadlines.facts,
            Step::Install => deadlines.install,
            Step::Image => deadlines.image,
            Step::Files => deadlines.files,
            Step::ComposeUp => deadlines.compose_up,
            Step::Backup => deadlines.backup,
            Step::Certificate => deadlines.certificate,
            Step::Health(wait) => wait.saturating_add(LAST_ROUND),
        }
    }
}

/// What the health step may take beyond `health_timeout`: the round of checks under way.
const LAST_ROUND: Duration = Duration::from_secs(60);

/// How long a peer may stay silent, keepalives sent meanwhile, before it counts as dead.
pub const SILENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Current {
    step: Step,
    started: Instant,
    until: Option<Instant>,
}

/// One connection's view of the run: its step, its deadlines, the run's interrupt.
#[derive(Debug)]
pub struct Watch {
    host: String,
    interrupt: Interrupt,
    deadlines: Deadlines,
    current: Mutex<Option<Current>>,
    spent: Mutex<Option<(String, bool)>>,
}

impl Watch {
    pub fn new(host: &str, interrupt: Interrupt, deadlines: Deadlines) -> Watch {
        Watch {
            host: host.to_string(),
            interrupt,
            deadlines,
            current: Mutex::new(None),
            spent: Mutex::new(None),
        }
    }

    /// Opens `step`: its deadline runs from now. Fails when an interrupt came, so that no
    /// new step starts.
    pub fn begin(&self, step: Step) -> Result<(), TransportError> {
        if self.interrupt.stopping() {
            self.spent()?;
            return Err(TransportError::Interrupted {
                host: self.host.clone(),
                before: step.name().to_string(),
            });
        }
        self.go_on_with(step)
    }

    /// Opens `step` whatever the interrupts: a part of the step in flight.
    pub fn go_on_with(&self, step: Step) -> Result<(), TransportError> {
        self.spent()?;
        let started = Instant::now();
        *self.current.lock().expect("step") = Some(Current {
            step,
            started,
            until: started.checked_add(step.deadline(&self.deadlines)),
        });
        Ok(())
    }

    /// Ends the step in flight: no deadline bounds what follows until the next step.
    pub fn end(&self) {
        *self.current.lock().expect("step") = None;
    }

    /// Whether the command under way may go on: not when the connection is spent, a second
    /// interrupt came, or the step's deadline passed (the connection is then spent).
    pub fn check(&self) -> Result<(), TransportError> {
        self.spent()?;
        let current = *self.current.lock().expect("step");
        let step = current.map_or("command", |c| c.step.name()).to_string();
        if self.interrupt.aborting() {
            return Err(self.spend(TransportError::Aborted {
                host: self.host.clone(),
                step,
            }));
        }
        match current {
            Some(c) if c.until.is_some_and(|until| Instant::now() >= until) => {
                Err(self.spend(TransportError::Deadline {
                    host: self.host.clone(),
                    step,
                    waited: humantime::format_duration(secs(c.started.elapsed())).to_string(),
                    setting: c.step.setting(),
                }))
            }
            _ => Ok(()),
        }
    }

    /// Ends the connection's use after its peer stayed silent for `silent`.
    pub fn unresponsive(&self, silent: Duration) -> TransportError {
        let step = self.step_name();
        self.spend(TransportError::Unresponsive {
            host: self.host.clone(),
            step,
            silent: secs(silent).as_secs(),
        })
    }

    /// Ends the connection's use after a command printed more than `limit` on `stream`:
    /// the command was ended half-way, so its state on the host is unknown.
    pub fn overflowed(&self, stream: &'static str, limit: &str) -> TransportError {
        let step = self.step_name();
        self.spend(TransportError::TooMuch {
            host: self.host.clone(),
            step,
            stream,
            limit: limit.to_string(),
        })
    }

    /// The longest one blocking call may wait: what is left of the step, and never longer
    /// than a live peer takes to answer.
    pub fn blocking_bound(&self) -> Duration {
        let left = (*self.current.lock().expect("step"))
            .and_then(|c| c.until)
            .map_or(SILENCE, |until| {
                until.saturating_duration_since(Instant::now())
            });
        left.clamp(Duration::from_secs(1), SILENCE)
    }

    /// The step under way, as errors name it.
    fn step_name(&self) -> String {
        (*self.current.lock().expect("step"))
            .map_or("command", |c| c.step.name())
            .to_string()
    }

    fn spent(&self) -> Result<(), TransportError> {
        match &*self.spent.lock().expect("spent") {
            Some((said, interrupted)) => Err(TransportError::Spent {
                said: said.clone(),
                interrupted: *interrupted,
            }),
            None => Ok(()),
        }
    }

    fn spend(&self, error: TransportError) -> TransportError {
        *self.spent.lock().expect("spent") = Some((error.to_string(), error.interrupted()));
        error
    }
}

fn secs(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(interrupt: &Interrupt, files: Duration) -> Watch {
        let deadlines = Deadlines {
            files,
            ..Deadlines::default()
        };
        Watch::new("hs1", interrupt.clone(), deadlines)
    }

    #[test]
    fn a_first_interrupt_lets_the_step_finish_and_refuses_the_next() {
        let interrupt = Interrupt::default();
        let watch = watch(&interrupt, Duration::from_secs(60));
        watch.begin(Step::Files).unwrap();
        assert_eq!(interrupt.raise(), 1);
        watch.check().expect("the step in flight goes on");
        let refused = watch.begin(Step::ComposeUp).unwrap_err();
        assert_eq!(refused.to_string(), "hs1: interrupted before compose up");
        assert_eq!(interrupt.raise(), 2);
        assert_eq!(
            watch.check().unwrap_err().to_string(),
            "hs1: files aborted by a second interrupt"
        );
    }

    #[test]
    fn a_passed_deadline_names_the_step_and_spends_the_connection() {
        let interrupt = Interrupt::default();
        let watch = watch(&interrupt, Duration::from_secs(1));
        watch.begin(Step::Files).unwrap();
        watch.check().unwrap();
        assert_eq!(watch.blocking_bound(), Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(1100));
        let error = watch.check().unwrap_err();
        assert_eq!(
            error.to_string(),
            "hs1: step files did not finish within its deadline (waited 1s)"
        );
        let again = watch.begin(Step::Facts).unwrap_err();
        assert_eq!(again.to_string(), error.to_string(), "spent for good");
    }

    #[test]
    fn without_a_step_only_silence_bounds_a_wait() {
        let watch = watch(&Interrupt::default(), Duration::from_secs(1));
        assert_eq!(watch.blocking_bound(), SILENCE);
        watch.begin(Step::Files).unwrap();
        watch.end();
        assert_eq!(watch.blocking_bound(), SILENCE, "no step, no deadline");
        watch.check().unwrap();
        watch
            .begin(Step::Health(Duration::from_secs(u64::MAX)))
            .unwrap();
        watch
            .check()
            .expect("a deadline past the clock's end never passes");
    }
}
