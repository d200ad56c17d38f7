//! How long each step of each host took, read from the engine's events: a host's step runs
//! from the message that announced it to the next message of the same host (or the host's
//! end). A message that begins with the step's own followed by `: ` (`loading images A:
//! 120.0 MB sent`) says how far the step got and ends nothing. `--json` reports each step
//! as it finishes; `--timings` lists the slowest at the end.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use super::printable;
use crate::rollout::Event;

/// A step that finished: its host, its message (first line) and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTime {
    pub host: String,
    pub step: String,
    pub took: Duration,
}

/// The steps of every host, as their events arrive.
#[derive(Debug, Default)]
pub struct Timings {
    open: HashMap<String, (String, Instant)>,
    pub done: Vec<StepTime>,
}

impl Timings {
    /// Takes `event` (seen `at`); returns the step it ended, if any.
    pub fn see(&mut self, event: &Event, at: Instant) -> Option<StepTime> {
        let (host, next) = match event {
            Event::Started { host } => (host, Some("connecting".to_string())),
            Event::Step { host, message } => (
                host,
                Some(message.lines().next().unwrap_or_default().to_string()),
            ),
            Event::Finished(result) => (&result.host, None),
            _ => return None,
        };
        if let (Some(next), Some((step, _))) = (&next, self.open.get(host))
            && next
                .strip_prefix(step.as_str())
                .is_some_and(|rest| rest.starts_with(": "))
        {
            return None;
        }
        let ended = self.open.remove(host).map(|(step, since)| StepTime {
            host: host.clone(),
            step,
            took: at.saturating_duration_since(since),
        });
        if let Some(next) = next {
            self.open.insert(host.clone(), (next, at));
        }
        self.done.extend(ended.clone());
        ended
    }

    /// The `count` slowest steps, slowest first, as a table.
    pub fn slowest(&self, count: usize) -> String {
        let mut steps: Vec<&StepTime> = self.done.iter().collect();
        steps.sort_by_key(|s| std::cmp::Reverse(s.took));
        let hosts: Vec<_> = steps
            .iter()
            .take(count)
            .map(|s| printable(&s.host))
            .collect();
        let width = hosts.iter().map(|h| h.len()).max().unwrap_or(4).max(4);
        let mut out = format!(
            "\nslowest steps:\n{:<width$}  {:>8}  step\n",
            "host", "seconds"
        );
        for (step, host) in steps.iter().zip(&hosts) {
            let _ = writeln!(
                out,
                "{host:<width$}  {:>8.1}  {}",
                step.took.as_secs_f64(),
                printable(&step.step)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{HostResult, Status};

    #[test]
    fn a_step_lasts_until_the_next_step_of_its_host_and_the_slowest_come_first() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let step = |host: &str, message: &str| Event::Step {
            host: host.into(),
            message: message.into(),
        };
        let mut timings = Timings::default();
        assert_eq!(
            timings.see(&Event::Started { host: "hs1".into() }, at(0)),
            None
        );
        timings.see(&step("hs1", "gathering facts"), at(300));
        timings.see(&Event::Started { host: "hs2".into() }, at(400));
        timings.see(&step("hs1", "loading image a\nmore"), at(500));
        timings.see(&step("hs2", "gathering facts"), at(600));
        let progress = step("hs1", "loading image a: 12.0 MB sent, 4.0 MB/s");
        assert_eq!(
            timings.see(&progress, at(3500)),
            None,
            "progress ends no step"
        );
        let ended = timings.see(&step("hs1", "d: writing 3 file(s)"), at(4500));
        assert_eq!(
            ended,
            Some(StepTime {
                host: "hs1".into(),
                step: "loading image a".into(),
                took: Duration::from_secs(4),
            })
        );
        let finished = Event::Finished(HostResult {
            host: "hs1".into(),
            status: Status::Skipped,
            duration: Duration::ZERO,
        });
        let last = timings.see(&finished, at(5000)).unwrap();
        assert_eq!(
            (last.step.as_str(), last.took),
            ("d: writing 3 file(s)", Duration::from_millis(500))
        );
        let table = timings.slowest(2);
        let lines: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(lines[1], "hs1        4.0  loading image a");
        assert_eq!(lines[2], "hs1        0.5  d: writing 3 file(s)");
        assert_eq!(lines.len(), 3);
    }
}
