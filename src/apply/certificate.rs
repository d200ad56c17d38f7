//! An ACME deployment's certificate within an apply. Before the stack starts, Nginx gets a
//! certificate to start on: a self-signed placeholder where it has none, since the CA can
//! only validate through a running Nginx. Once the stack is verified, the renewal's own
//! service is started and waited for: the first certificate (or one for changed names) is
//! issued during the apply, by the same script and unit as every renewal after it, and the
//! CA's answer is the apply's. The scripts are `render::acme`'s.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use super::timers::Timer;
use crate::confine;
use crate::generations::AcmeRun;
use crate::generations::acme_run::{MAX_RECORD_BYTES, Outcome};
use crate::render::acme::{CERTIFICATE, KEY, LAST_RUN, RENEW_SCRIPT, TLS};
use crate::sh;
use crate::shell::{Command, Script};

/// The most of the journal read back after a failed start.
const JOURNAL_BYTES: usize = 8192;

/// Makes sure the deployment in `dir` has a certificate for Nginx to start on
/// (`renew.sh placeholder`: the CA is not asked); where it has one, no container is run.
pub fn placeholder_script(dir: &str) -> Script {
    let mut s = sh!("umask 077\n");
    s.push(confine::enter(dir));
    s.push(confine::file(RENEW_SCRIPT));
    s.push(sh!(
        "if {} && {} && [ -s {} ] && [ -s {} ]; then exit 0; fi\nsh {} placeholder 2>&1\n",
        confine::regular(&served(CERTIFICATE)),
        confine::regular(&served(KEY)),
        served(CERTIFICATE),
        served(KEY),
        RENEW_SCRIPT
    ));
    s
}

/// A file of what Nginx serves, relative to the deploy directory.
fn served(file: &str) -> String {
    format!("{TLS}/{file}")
}

/// Starts the renewal's service of the deployment in `dir` and waits for it (a oneshot:
/// `systemctl start` returns when it ended). Prints `start=EPOCH` and `status=N`, the record
/// of the attempt (`record=` lines of base64, its first 4 KiB) and, when the service failed,
/// the end of what it logged since (`journal=` lines of base64).
pub fn issue_script(dir: &str, timer: &Timer) -> Script {
    let mut s = sh!(
        "umask 077\nstart=$(date +%s)\n{} >/dev/null 2>&1\nstatus=$?\n\
         echo \"start=$start\"\necho \"status=$status\"\n",
        Command::new("systemctl")
            .arg("start")
            .arg("--")
            .arg(timer.service())
    );
    s.push(confine::enter(dir));
    s.push(sh!(
        "{} && head -c {} {} | base64 | sed 's/^/record=/'\n\
         if [ \"$status\" != 0 ]; then {} --since \"@$start\" 2>&1 | tail -c {} \
         | base64 | sed 's/^/journal=/'; fi\nexit 0\n",
        confine::regular(LAST_RUN),
        MAX_RECORD_BYTES.to_string(),
        LAST_RUN,
        Command::new("journalctl")
            .arg("--no-pager")
            .arg("--output")
            .arg("cat")
            .arg("--unit")
            .arg(timer.service()),
        JOURNAL_BYTES.to_string()
    ));
    s
}

/// What the renewal's service did, as [`issue_script`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issue {
    /// It ended well: the attempt's record, when it wrote one.
    Done(Option<AcmeRun>),
    /// It failed: the CA's reason from the attempt's record, or the end of the journal
    /// when the service failed before asking (one plain line).
    Failed(String),
}

/// Reads [`issue_script`]'s output. A record older than the start is not this attempt's.
pub fn parse_issue(output: &str) -> Issue {
    let (mut record, mut journal) = (String::new(), String::new());
    let (mut start, mut status) = (None, None);
    for line in output.lines() {
        match line.split_once('=') {
            Some(("start", v)) => start = v.trim().parse::<i64>().ok(),
            Some(("status", v)) => status = v.trim().parse::<i32>().ok(),
            Some(("record", v)) => record.push_str(v.trim()),
            Some(("journal", v)) => journal.push_str(v.trim()),
            _ => {}
        }
    }
    let decode = |text: &str| {
        String::from_utf8_lossy(&STANDARD.decode(text).unwrap_or_default()).into_owned()
    };
    let start = start.and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    let run =
        AcmeRun::parse(&decode(&record)).filter(|run| start.is_some_and(|start| run.at >= start));
    match (status, run) {
        (Some(0), run) => Issue::Done(run),
        (_, Some(run)) if run.outcome == Outcome::Failed && !run.error.is_empty() => {
            Issue::Failed(run.error)
        }
        _ => {
            let journal = decode(&journal);
            let last = journal
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("the renewal's service failed and logged nothing");
            Issue::Failed(
                crate::text::one_line(last.trim())
                    .chars()
                    .take(1000)
                    .collect(),
            )
        }
    }
}

/// What to do about the CA's `reason`: the usual causes of a refusal, by the ACME error
/// type or the client's words in it. `unit` is the renewal's systemd unit.
pub fn fix(reason: &str, unit: &str) -> String {
    let has = |words: &[&str]| words.iter().any(|w| reason.contains(w));
    if has(&["rateLimited", "too many"]) {
        "the CA limits how often it issues: wait for the time it names; try changes against `directory = \"staging\"` first".into()
    } else if has(&[
        "NXDOMAIN",
        ":dns",
        "DNS problem",
        "no such host",
        "could not resolve",
        "no valid A records",
    ]) {
        "every name needs a DNS record (A or AAAA) pointing at this host: add it, or correct `names` in `[deployments.NAME.tls.acme]`".into()
    } else if has(&["caa", "rejectedIdentifier"]) {
        "the CA will not issue for that name (its policy or a CAA record): use a name it accepts, or allow the CA in the CAA record".into()
    } else if has(&[
        ":connection",
        "onnection refused",
        "Timeout",
        "timeout",
        ":unauthorized",
    ]) {
        "the CA must fetch http://NAME/.well-known/acme-challenge/ from port 80 of this host: check that each name points here and port 80 is open (or use DNS-01: `dns_provider`)".into()
    } else {
        format!("`journalctl -u {unit}` on the host has the client's whole output")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_and_the_issue_run_the_rendered_renewal_inside_the_guard() {
        let enter = confine::enter("/opt/synapse/hs").text().to_string();
        assert_eq!(
            placeholder_script("/opt/synapse/hs").text(),
            format!(
                "umask 077\n{enter}synprov_path f acme/renew.sh 'regular file'\n\
                 if synprov_regular tls/certificate.pem && synprov_regular tls/key.pem \
                 && [ -s tls/certificate.pem ] && [ -s tls/key.pem ]; then exit 0; fi\n\
                 sh acme/renew.sh placeholder 2>&1\n"
            )
        );
        assert_eq!(
            issue_script("/opt/synapse/hs", &Timer::acme("hs")).text(),
            format!(
                "umask 077\nstart=$(date +%s)\nsystemctl start -- synprov-acme-hs.service >/dev/null 2>&1\n\
                 status=$?\necho \"start=$start\"\necho \"status=$status\"\n{enter}\
                 synprov_regular acme/state/last-run && head -c 4096 acme/state/last-run \
                 | base64 | sed 's/^/record=/'\n\
                 if [ \"$status\" != 0 ]; then journalctl --no-pager --output cat --unit \
                 synprov-acme-hs.service --since \"@$start\" 2>&1 | tail -c 8192 \
                 | base64 | sed 's/^/journal=/'; fi\nexit 0\n"
            )
        );
    }

    #[test]
    fn the_placeholder_is_made_only_where_nginx_has_no_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = |p: &str| dir.path().join(p);
        std::fs::create_dir_all(path("acme")).unwrap();
        std::fs::create_dir_all(path("tls")).unwrap();
        // A stand-in for the rendered script: it notes that it ran.
        std::fs::write(path("acme/renew.sh"), "echo \"$1\" >> ran\n").unwrap();
        let script = placeholder_script(dir.path().to_str().unwrap());
        let run = || {
            let out = crate::confine::tests::run(&script, dir.path(), None);
            assert!(out.status.success(), "{out:?}");
            std::fs::read_to_string(path("ran")).unwrap_or_default()
        };
        std::fs::write(path("tls/certificate.pem"), "cert").unwrap();
        assert_eq!(run(), "placeholder\n", "no key: the placeholder is made");
        std::fs::write(path("tls/key.pem"), "key").unwrap();
        assert_eq!(run(), "placeholder\n", "both there: nothing runs");
    }

    fn output(start: i64, status: i32, record: &str, journal: &str) -> String {
        let lines = |key: &str, text: &str| {
            STANDARD
                .encode(text)
                .as_bytes()
                .chunks(76)
                .map(|c| format!("{key}={}\n", String::from_utf8_lossy(c)))
                .collect::<String>()
        };
        format!(
            "start={start}\nstatus={status}\n{}{}",
            lines("record", record),
            lines("journal", journal)
        )
    }

    const REFUSED: &str = "at=2026-12-07T06:00:05Z\noutcome=failed\nnames=bad.example\n\
                           certificate=issued\nnot_after=\n\
                           error=acme: error: 400 :: urn:ietf:params:acme:error:dns :: NXDOMAIN looking up A for bad.example\n";

    #[test]
    fn a_refusal_is_the_ca_s_reason_from_this_attempt_s_record() {
        // 2026-12-07T06:00:00Z
        let start = 1_796_623_200;
        assert_eq!(
            parse_issue(&output(start, 1, REFUSED, "lego: exit 1\n")),
            Issue::Failed(
                "acme: error: 400 :: urn:ietf:params:acme:error:dns :: NXDOMAIN looking up A for bad.example"
                    .into()
            )
        );
        assert_eq!(
            parse_issue(&output(start + 60, 1, REFUSED, "docker: no such image\n\n")),
            Issue::Failed("docker: no such image".into()),
            "an older record is not this attempt's: the journal says why"
        );
        assert_eq!(
            parse_issue(&output(start, 1, "", "")),
            Issue::Failed("the renewal's service failed and logged nothing".into())
        );
        let Issue::Done(Some(run)) = parse_issue(&output(
            start,
            0,
            &REFUSED
                .replace("failed", "renewed")
                .replace("error=acme", "error="),
            "",
        )) else {
            panic!("done")
        };
        assert_eq!(run.outcome, Outcome::Renewed);
        assert_eq!(
            parse_issue(&output(start, 1, "", "\u{1b}]0;x\u{7}evil\n")),
            Issue::Failed("\\x1b]0;x\\x07evil".into()),
            "the host's words are escaped"
        );
    }

    #[test]
    fn the_fix_follows_the_reason() {
        assert!(fix("urn:ietf:params:acme:error:dns :: NXDOMAIN", "u").contains("DNS record"));
        assert!(
            fix(
                "urn:ietf:params:acme:error:connection :: Get \"http://nowhere.e2e.test:80/x\": could not resolve URL",
                "u"
            )
            .contains("DNS record"),
            "Pebble's words for a name without a record"
        );
        assert!(fix("429 :: urn:ietf:params:acme:error:rateLimited", "u").contains("staging"));
        assert!(
            fix(
                "urn:ietf:params:acme:error:connection :: Connection refused",
                "u"
            )
            .contains("port 80")
        );
        assert!(fix("urn:ietf:params:acme:error:caa", "u").contains("CAA"));
        assert_eq!(
            fix("odd", "u"),
            "`journalctl -u u` on the host has the client's whole output"
        );
    }
}
