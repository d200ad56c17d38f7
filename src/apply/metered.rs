//! Streams to a host whose progress is reported as they go: the bytes sent, out of how many
//! when that is known (a file; not a `docker save` stream, whose size shows only at its
//! end), and the rate, so that a long transfer shows it moves (on a terminal, the host's
//! line; in plain and JSON output, a step every few seconds).

use std::io::Read;
use std::time::{Duration, Instant};

/// How often a transfer's progress is reported.
const EVERY: Duration = Duration::from_secs(3);

/// A reader that counts what passes through it and says so every [`EVERY`].
pub struct Metered<'a, R> {
    inner: R,
    what: &'a str,
    sent: u64,
    total: Option<u64>,
    started: Instant,
    last: Instant,
    say: &'a dyn Fn(String),
}

impl<'a, R: Read> Metered<'a, R> {
    /// `what` names the transfer in the reports (`loading image synprov/synapse:1.163`).
    pub fn new(inner: R, what: &'a str, say: &'a dyn Fn(String)) -> Self {
        let now = Instant::now();
        Metered {
            inner,
            what,
            sent: 0,
            total: None,
            started: now,
            last: now,
            say,
        }
    }

    /// The same, for a transfer of `total` bytes.
    pub fn with_total(inner: R, what: &'a str, total: u64, say: &'a dyn Fn(String)) -> Self {
        Metered {
            total: Some(total),
            ..Metered::new(inner, what, say)
        }
    }
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        if self.last.elapsed() >= EVERY {
            self.last = Instant::now();
            let took = self.started.elapsed();
            (self.say)(progress(self.what, self.sent, self.total, took));
        }
        Ok(n)
    }
}

/// `bytes` in megabytes, as the reports show them: `590.2`.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// `WHAT: 120.0 MB sent, 40.0 MB/s`, or with a `total`, `WHAT: 40.0 of 76.0 MB sent (52%),
/// 25.0 MB/s`.
pub fn progress(what: &str, sent: u64, total: Option<u64>, took: Duration) -> String {
    let rate = sent as f64 / 1e6 / took.as_secs_f64().max(0.001);
    let sent_mb = megabytes(sent);
    match total.filter(|t| *t > 0) {
        Some(total) => format!(
            "{what}: {sent_mb} of {} MB sent ({}%), {rate:.1} MB/s",
            megabytes(total),
            sent.saturating_mul(100) / total
        ),
        None => format!("{what}: {sent_mb} MB sent, {rate:.1} MB/s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_says_the_bytes_sent_and_the_rate() {
        assert_eq!(
            progress("loading image a", 120_000_000, None, Duration::from_secs(3)),
            "loading image a: 120.0 MB sent, 40.0 MB/s"
        );
        assert_eq!(
            progress("x", 0, None, Duration::ZERO),
            "x: 0.0 MB sent, 0.0 MB/s"
        );
        assert_eq!(
            progress(
                "sending c",
                40_000_000,
                Some(76_000_000),
                Duration::from_secs(2)
            ),
            "sending c: 40.0 of 76.0 MB sent (52%), 20.0 MB/s"
        );
        assert_eq!(
            progress("y", 5, Some(0), Duration::from_secs(1)),
            "y: 0.0 MB sent, 0.0 MB/s",
            "an empty file is no total"
        );
    }

    #[test]
    fn every_byte_passes_through_and_is_counted() {
        let said = std::cell::RefCell::new(Vec::new());
        let say = |line: String| said.borrow_mut().push(line);
        let data = vec![7u8; 100_000];
        let mut metered = Metered::new(&data[..], "t", &say);
        let mut out = Vec::new();
        std::io::copy(&mut metered, &mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(metered.sent, 100_000);
        assert!(
            said.borrow().is_empty(),
            "nothing said within the first seconds"
        );
    }
}
