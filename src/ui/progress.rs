//! The live display of a rollout: a line per host with its current step and elapsed time,
//! and the batch progress (indicatif) on a terminal; plain lines otherwise or with
//! NO_COLOR; one JSON object per line with `--json`. It only reads the engine's events.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::timings::{StepTime, Timings};
use super::{printable, printable_report};
use crate::rollout::{Event, HostResult, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Plain,
    Json,
}

impl Mode {
    pub fn choose(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if super::color() && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// One event as a JSON line, with the time it is shown at (RFC 3339, UTC, milliseconds).
pub fn json_line(event: &Event) -> String {
    let mut value = match event {
        Event::Batch {
            index,
            count,
            hosts,
        } => json!({ "event": "batch", "index": index, "count": count, "hosts": hosts }),
        Event::Started { host } => json!({ "event": "started", "host": host }),
        Event::Step { host, message } => {
            json!({ "event": "step", "host": host, "message": message })
        }
        Event::Output { host, text } => json!({ "event": "plan", "host": host, "text": text }),
        Event::Finished(result) => {
            let (status, changes, unchanged, error) = match &result.status {
                Status::Done { changes, unchanged } => ("ok", *changes, *unchanged, None),
                Status::Failed(message) => ("failed", 0, 0, Some(message.as_str())),
                Status::Interrupted { .. } => ("interrupted", 0, 0, None),
                Status::Skipped => ("skipped", 0, 0, None),
            };
            let after = match &result.status {
                Status::Interrupted { after } => Some(after.as_str()),
                _ => None,
            };
            json!({ "event": "finished", "host": result.host, "status": status, "changes": changes, "unchanged": unchanged, "error": error, "after": after, "seconds": result.duration.as_secs_f64() })
        }
        Event::Stopped {
            failed,
            allowed,
            skipped,
        } => {
            json!({ "event": "stopped", "failed": failed, "allowed": allowed, "skipped": skipped })
        }
        Event::Interrupted { count } => json!({ "event": "interrupted", "count": count }),
    };
    value["time"] = json!(now());
    crate::text::json_line(&value)
}

/// A step that finished, as a JSON line.
pub fn step_done_line(done: &StepTime) -> String {
    crate::text::json_line(
        &json!({ "event": "step_done", "host": done.host, "step": done.step, "seconds": done.took.as_secs_f64(), "time": now() }),
    )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Shows events until the engine drops its sender, and returns how long each step took.
/// Host names, steps and errors come from the inventory, plugins and hosts: they are
/// printed through [`printable`].
pub fn show(events: Receiver<Event>, mode: Mode) -> Timings {
    let mut timings = Timings::default();
    let events = events.into_iter().inspect(|event| {
        let done = timings.see(event, Instant::now());
        if let (Mode::Json, Some(done)) = (mode, done) {
            println!("{}", step_done_line(&done));
        }
    });
    match mode {
        Mode::Json => {
            for event in events {
                println!("{}", json_line(&event));
            }
        }
        Mode::Plain => {
            for event in events {
                match event {
                    Event::Batch {
                        index,
                        count,
                        hosts,
                    } => println!("batch {index}/{count}: {}", printable(&hosts.join(", "))),
                    Event::Started { host } => println!("[{}] started", printable(&host)),
                    Event::Step { host, message } => {
                        println!("[{}] {}", printable(&host), printable(&message));
                    }
                    Event::Output { text, .. } => print!("{}", printable_report(&text)),
                    Event::Finished(result) => {
                        println!("[{}] {}", printable(&result.host), summary(&result));
                    }
                    Event::Stopped {
                        failed,
                        allowed,
                        skipped,
                    } => println!(
                        "stopping: {failed} host(s) failed, {allowed} allowed; not started: {}",
                        printable(&skipped.join(", "))
                    ),
                    Event::Interrupted { count } => println!("{}", interrupted(count)),
                }
            }
        }
        Mode::Live => live(events),
    }
    timings
}

fn live(events: impl Iterator<Item = Event>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {msg}")
        .expect("valid template");
    let batch = multi.add(ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} hosts").expect("valid template"),
    ));
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    for event in events {
        match event {
            Event::Batch {
                index,
                count,
                hosts,
            } => {
                batch.set_length(batch.length().unwrap_or(0) + hosts.len() as u64);
                batch.set_message(format!("batch {index}/{count}"));
            }
            Event::Started { host } => {
                let bar = multi.add(
                    ProgressBar::new_spinner()
                        .with_style(style.clone())
                        .with_prefix(printable(&host).into_owned()),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.insert(host, bar);
            }
            Event::Step { host, message } => {
                if let Some(bar) = bars.get(&host) {
                    let first = message.lines().next().unwrap_or_default();
                    bar.set_message(printable(first).into_owned());
                }
                if message.contains('\n') || message.starts_with("UNHEALTHY") {
                    let _ =
                        multi.println(format!("[{}] {}", printable(&host), printable(&message)));
                }
            }
            Event::Output { text, .. } => {
                let _ = multi.println(printable_report(text.trim_end()));
            }
            Event::Finished(result) => {
                batch.inc(1);
                if let Some(bar) = bars.get(&result.host) {
                    bar.finish_with_message(summary(&result));
                }
            }
            Event::Stopped {
                failed,
                allowed,
                skipped,
            } => {
                let _ = multi.println(format!(
                    "stopping: {failed} host(s) failed, {allowed} allowed; not started: {}",
                    printable(&skipped.join(", "))
                ));
            }
            Event::Interrupted { count } => {
                let _ = multi.println(interrupted(count));
            }
        }
    }
    batch.finish();
}

/// What an interrupt does, said when it comes.
fn interrupted(count: u8) -> &'static str {
    match count {
        1 => {
            "interrupted: no new host or step starts; the steps in flight finish and release their locks (interrupt again to abort them)"
        }
        2 => {
            "interrupted again: aborting the steps in flight, releasing their locks (once more exits at once)"
        }
        _ => "interrupted a third time: exiting",
    }
}

fn summary(result: &HostResult) -> String {
    match &result.status {
        Status::Done { changes: 0, .. } => "ok, no changes".into(),
        Status::Done { changes, .. } => format!("ok, {changes} change(s)"),
        Status::Failed(message) => {
            let first = message.lines().next().unwrap_or_default();
            format!("FAILED: {}", printable_report(first))
        }
        Status::Interrupted { after } => format!("INTERRUPTED after: {}", printable(after)),
        Status::Skipped => "skipped".into(),
    }
}

/// The table printed at the end: host, changed, unchanged, failed, duration, and why a host
/// failed.
pub fn recap(results: &[HostResult]) -> String {
    let hosts: Vec<_> = results.iter().map(|r| printable(&r.host)).collect();
    let width = hosts.iter().map(|h| h.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "\n{:<width$}  {:>7}  {:>9}  {:>7}  {:>8}\n",
        "host", "changed", "unchanged", "failed", "duration"
    );
    for (r, host) in results.iter().zip(&hosts) {
        let (changed, unchanged, failed, why) = match &r.status {
            Status::Done { changes, unchanged } => (
                changes.to_string(),
                unchanged.to_string(),
                "-",
                String::new(),
            ),
            Status::Failed(message) => (
                "-".into(),
                "-".into(),
                "yes",
                printable_report(
                    message
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim_start_matches(['×', ' ']),
                )
                .into_owned(),
            ),
            Status::Interrupted { after } => (
                "-".into(),
                "-".into(),
                "interrupted",
                format!(
                    "after: {}; the next apply finishes it",
                    printable(after.lines().next().unwrap_or_default())
                ),
            ),
            Status::Skipped => (
                "-".into(),
                "-".into(),
                "skipped",
                "not started: the rollout stopped".into(),
            ),
        };
        let line = format!(
            "{host:<width$}  {changed:>7}  {unchanged:>9}  {failed:>7}  {:>7.1}s  {why}",
            r.duration.as_secs_f64()
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_one_json_object_per_line() {
        let line = json_line(&Event::Finished(HostResult {
            host: "h1".into(),
            status: Status::Failed("down\nmore".into()),
            duration: Duration::from_millis(1500),
        }));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["status"], "failed");
        assert_eq!(value["error"], "down\nmore");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn the_recap_names_each_host_and_why_it_failed() {
        let table = recap(&[
            HostResult {
                host: "a".into(),
                status: Status::Done {
                    changes: 3,
                    unchanged: 28,
                },
                duration: Duration::from_secs(2),
            },
            HostResult {
                host: "bb".into(),
                status: Status::Failed("unreachable".into()),
                duration: Duration::from_secs(1),
            },
        ]);
        let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines[1], "a           3         28        -      2.0s");
        assert_eq!(
            lines[2],
            "bb          -          -      yes      1.0s  unreachable"
        );
    }

    #[test]
    fn the_recap_and_summaries_show_hostile_text_escaped() {
        let result = HostResult {
            host: "h\x1b[2J".into(),
            status: Status::Failed("\x1b[31m×\x1b[0m cannot \x1b[2Jconnect\rok\nmore".into()),
            duration: Duration::from_secs(1),
        };
        let table = recap(std::slice::from_ref(&result));
        assert!(
            !table.contains("\x1b[2J") && !table.contains('\r'),
            "{table:?}"
        );
        assert!(
            table.contains("h\\x1b[2J") && table.contains("cannot \\x1b[2Jconnect\\x0dok"),
            "{table}"
        );
        let line = summary(&result);
        assert_eq!(
            line,
            "FAILED: \x1b[31m×\x1b[0m cannot \\x1b[2Jconnect\\x0dok"
        );
    }
}
