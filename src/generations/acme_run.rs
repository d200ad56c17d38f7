//! What the host's certificate renewal says of its last attempt (`acme/state/last-run`,
//! written by `render::acme`'s `lego.sh`): read as hostile text into typed values, since
//! anything on the host can write that file.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::host_data::StateFile;
use crate::inventory::values::check_dns_name;

/// The most of the record read: its six short lines fit many times over.
pub const MAX_RECORD_BYTES: usize = 4096;

/// The longest error kept, in characters: the CA's answer, cut as the script cuts it.
const MAX_ERROR: usize = 1000;

/// Under this many days left, `status` warns: a renewal due at a third of the lifetime has
/// failed for weeks by then.
pub const WARN_DAYS: i64 = 14;

/// The most names kept: an ACME order holds at most 100 (Let's Encrypt's limit).
const MAX_NAMES: usize = 100;

/// What the attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A new certificate was installed.
    Renewed,
    /// Nothing was due.
    Fresh,
    /// The CA or the client failed: `error` says why.
    Failed,
}

/// What Nginx serves after the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Served {
    /// A certificate the CA issued.
    Issued,
    /// The self-signed placeholder Nginx starts on: no certificate issued yet.
    Placeholder,
    /// Nothing readable.
    None,
}

/// The last attempt of the renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeRun {
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    /// The names asked for.
    pub names: Vec<String>,
    pub served: Served,
    /// The end of validity of the certificate Nginx serves.
    pub not_after: Option<DateTime<Utc>>,
    /// The CA's or the client's reason, one plain line; empty unless failed.
    pub error: String,
}

impl AcmeRun {
    /// Reads a record; `None` when it is not one (no time, or an unknown outcome).
    pub fn parse(text: &str) -> Option<AcmeRun> {
        let record = StateFile::new(text, MAX_RECORD_BYTES);
        let field = |key| record.field(key);
        let outcome = match field("outcome") {
            "renewed" => Outcome::Renewed,
            "fresh" => Outcome::Fresh,
            "failed" => Outcome::Failed,
            _ => return None,
        };
        let served = match field("certificate") {
            "issued" => Served::Issued,
            "placeholder" => Served::Placeholder,
            _ => Served::None,
        };
        let names = (field("names").split(' '))
            .filter(|name| check_dns_name(name.strip_prefix("*.").unwrap_or(name)).is_ok())
            .take(MAX_NAMES)
            .map(str::to_string)
            .collect();
        Some(AcmeRun {
            at: record.time("at")?,
            outcome,
            names,
            served,
            not_after: record.time("not_after"),
            error: record.text("error", MAX_ERROR),
        })
    }

    /// Days left until the served certificate expires at `now` (negative once expired);
    /// `None` unless an issued certificate is served.
    pub fn days_left(&self, now: DateTime<Utc>) -> Option<i64> {
        let not_after = self.not_after.filter(|_| self.served == Served::Issued)?;
        Some((not_after - now).num_days())
    }

    /// `certificate: NAMES, valid until TIME (N days left); last attempt TIME: OUTCOME`.
    pub fn summary(&self, now: DateTime<Utc>) -> String {
        let served = match (self.served, self.not_after, self.days_left(now)) {
            (Served::Issued, Some(not_after), Some(days)) => format!(
                "valid until {} ({days} days left)",
                not_after.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            (Served::Placeholder, ..) => "none issued yet (a self-signed placeholder)".into(),
            _ => "none readable".into(),
        };
        let outcome = match self.outcome {
            Outcome::Renewed => "a new certificate installed",
            Outcome::Fresh => "not due",
            Outcome::Failed => "failed",
        };
        format!(
            "certificate: {}, {served}; last attempt {}: {outcome}",
            self.names.join(" "),
            self.at.format("%Y-%m-%d %H:%M UTC")
        )
    }

    /// What `status` names as wrong: a failed attempt with its reason, no certificate
    /// issued, or fewer than [`WARN_DAYS`] left. `unit` is the renewal's systemd unit.
    pub fn problems(&self, unit: &str, now: DateTime<Utc>) -> Vec<String> {
        let mut problems = Vec::new();
        if self.outcome == Outcome::Failed {
            problems.push(format!(
                "the certificate renewal at {} failed: {} (`journalctl -u {unit}` on the host tells more)",
                self.at.format("%Y-%m-%d %H:%M UTC"),
                self.error
            ));
        }
        match self.days_left(now) {
            None => problems.push(
                "no certificate issued: Nginx serves a self-signed placeholder that no client trusts"
                    .into(),
            ),
            Some(days) if days < WARN_DAYS => problems.push(format!(
                "the certificate expires in {days} days: `systemctl start {unit}.service` on the host renews it now"
            )),
            Some(_) => {}
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "at=2026-12-07T06:00:00Z\noutcome=renewed\nnames=example.org matrix.example.org\n\
                       certificate=issued\nnot_after=2027-03-07T05:00:00Z\nerror=\n";

    #[test]
    fn a_record_of_the_renewal_reads_as_an_attempt() {
        let run = AcmeRun::parse(RUN).unwrap();
        assert_eq!(run.outcome, Outcome::Renewed);
        assert_eq!(run.served, Served::Issued);
        assert_eq!(run.names, ["example.org", "matrix.example.org"]);
        assert_eq!(
            run.not_after.unwrap().to_rfc3339(),
            "2027-03-07T05:00:00+00:00"
        );
        let now = DateTime::parse_from_rfc3339("2027-02-25T05:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(run.days_left(now), Some(10));
    }

    #[test]
    fn a_placeholder_has_no_days_left_and_a_failure_keeps_its_reason_as_plain_text() {
        let run = AcmeRun::parse(
            "at=2026-12-07T06:00:00Z\noutcome=failed\nnames=matrix.example.org\n\
             certificate=placeholder\nnot_after=2026-12-14T06:00:00Z\n\
             error=acme: error: 400 :: urn:ietf:params:acme:error:dns \u{1b}[31m\u{7}NXDOMAIN\n",
        )
        .unwrap();
        assert_eq!(run.outcome, Outcome::Failed);
        assert_eq!(run.days_left(Utc::now()), None, "never shown as valid");
        assert_eq!(
            run.error,
            "acme: error: 400 :: urn:ietf:params:acme:error:dns [31mNXDOMAIN"
        );
    }

    #[test]
    fn status_shows_the_expiry_and_warns_under_two_weeks_or_on_a_failure() {
        let run = AcmeRun::parse(RUN).unwrap();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        assert_eq!(
            run.summary(at("2026-12-08T05:00:00Z")),
            "certificate: example.org matrix.example.org, valid until 2027-03-07 05:00:00 UTC \
             (89 days left); last attempt 2026-12-07 06:00 UTC: a new certificate installed"
        );
        assert!(run.problems("u", at("2027-02-20T05:00:00Z")).is_empty());
        assert_eq!(
            run.problems("u", at("2027-02-22T05:00:00Z")),
            [
                "the certificate expires in 13 days: `systemctl start u.service` on the host renews it now"
            ]
        );
        let failed = AcmeRun::parse(
            &RUN.replace("outcome=renewed", "outcome=failed")
                .replace("error=", "error=acme: error: 429 :: rateLimited"),
        )
        .unwrap();
        assert_eq!(
            failed.problems("u", at("2026-12-08T05:00:00Z")),
            [
                "the certificate renewal at 2026-12-07 06:00 UTC failed: acme: error: 429 :: rateLimited (`journalctl -u u` on the host tells more)"
            ]
        );
        let placeholder = AcmeRun::parse(&RUN.replace("=issued", "=placeholder")).unwrap();
        assert!(placeholder.summary(Utc::now()).contains("none issued yet"));
        assert_eq!(placeholder.problems("u", Utc::now()).len(), 1);
    }

    #[test]
    fn what_is_not_a_record_is_none_and_hostile_names_are_dropped() {
        assert_eq!(AcmeRun::parse(""), None);
        assert_eq!(
            AcmeRun::parse("at=2026-12-07T06:00:00Z\noutcome=maybe\n"),
            None
        );
        assert_eq!(AcmeRun::parse("at=yesterday\noutcome=fresh\n"), None);
        let run = AcmeRun::parse(
            "at=2026-12-07T06:00:00Z\noutcome=fresh\nnames=ok.example $(reboot) ../x\n",
        )
        .unwrap();
        assert_eq!(run.names, ["ok.example"]);
        assert_eq!(run.served, Served::None);
        let long = format!("{RUN}{}", "x".repeat(1 << 20));
        assert!(AcmeRun::parse(&long).is_some(), "read within its bound");
    }
}
