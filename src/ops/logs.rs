//! `logs`: what the containers of a deployment printed, streamed as it arrives.

use std::io::Write;
use std::time::{Duration, SystemTime};

use super::{Deployed, OpsError, until_disconnected};
use crate::apply::compose::{self, LogsQuery};
use crate::facts::Compose;
use crate::sh;
use crate::shell::{Command, Script};
use crate::transport::Connection;

/// How far back `--since` goes: parsed here, so that only a number of seconds or a
/// timestamp synprov formatted reaches the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// `10m`, `1h 30m`: that long before now.
    Ago(Duration),
    /// `2026-12-01T10:00:00Z` (UTC), `2026-12-01 10:00:00`.
    At(SystemTime),
}

impl std::str::FromStr for Since {
    type Err = String;

    fn from_str(text: &str) -> Result<Since, String> {
        let duration = humantime::parse_duration(text);
        if let Ok(ago) = duration {
            return Ok(Since::Ago(ago));
        }
        humantime::parse_rfc3339_weak(text)
            .map(Since::At)
            .map_err(|_| {
                format!(
                    "`{}` is neither a duration (10m, 1h 30m, 2days) nor a UTC time \
                     (2026-12-01T10:00:00Z): {}",
                    crate::ui::printable(text),
                    duration.err().map(|e| e.to_string()).unwrap_or_default()
                )
            })
    }
}

impl Since {
    /// As Compose v2 reads `--since`: whole seconds ago (rounded up, so nothing asked for
    /// is left out), or an RFC 3339 time.
    pub fn compose_arg(&self) -> String {
        match self {
            Since::Ago(ago) => {
                let seconds = ago.as_secs() + u64::from(ago.subsec_nanos() > 0);
                format!("{seconds}s")
            }
            Since::At(at) => humantime::format_rfc3339_seconds(*at).to_string(),
        }
    }
}

/// What `synprov logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Process or service names (`main`, `rooms1`, `db`); none means every service.
    pub names: Vec<String>,
    pub since: Option<Since>,
    pub tail: Option<u32>,
    pub follow: bool,
}

/// Prints the log file of one Synapse process, `logs/NAME/*.log` on the host (after the
/// files it rotated before, oldest first), each line after `NAME | `. Arguments: the
/// process (a plain word), the time to start from (`YYYY-MM-DD HH:MM:SS`, UTC as Synapse
/// writes it in its containers; empty for all), the last lines to show (empty for all),
/// and `follow` to go on with the lines written after. The console of a Synapse container
/// has its warnings only: this file has every line (INFO included), and reading it costs
/// no second copy.
///
/// The process's directory is its container's to write in: a link there must not make
/// root print another file. So every read is `dd iflag=nofollow` (the kernel refuses to
/// open a link: nothing to race) and `nonblock` (a FIFO planted there cannot hang it), and
/// following is a loop of such reads from the offset reached (from 0 again when the file
/// shrank: rotated), where `tail -F` would open whatever the name points to.
fn file_log() -> Script {
    sh!(r#"synprov_read() {
if [ -n "${3-}" ]; then dd if="$1" iflag=nofollow,nonblock,skip_bytes,count_bytes skip="$2" count="$3" bs=64k status=none
else dd if="$1" iflag=nofollow,nonblock,skip_bytes skip="$2" bs=64k status=none; fi
}
synprov_follow() {
at=$2
while :; do
size=$(stat -c %s -- "$1" 2>/dev/null) || size=0
[ "$size" -ge "$at" ] || at=0
if [ "$size" -gt "$at" ]; then synprov_read "$1" "$at" "$((size - at))"; at=$size; fi
sleep 1
done
}
synprov_file_log() {
set -- "$1" "$2" "$3" "$4" logs/"$1"/*.log
if [ ! -f "$5" ] || [ -L "$5" ]; then echo "$1: no log file in logs/$1" >&2; return 1; fi
size=$(stat -c %s -- "$5")
lines=$(synprov_read "$5" 0 "$size" | wc -l)
at=$(synprov_read "$5" 0 "$size" | head -n "$lines" | wc -c)
{ for old in "$5".*; do if [ -f "$old" ]; then synprov_read "$old" 0; fi; done; synprov_read "$5" 0 "$at"; } |
awk -v from="$2" 'shown || from == "" || (/^[0-9]/ && substr($0, 1, 19) >= from) { shown = 1; print }' |
if [ -n "$3" ]; then tail -n "$3"; else cat; fi | sed "s/^/$1 | /"
if [ "$4" = follow ]; then synprov_follow "$5" "$at" | $unbuffered "s/^/$1 | /"; fi
}
if sed -u q </dev/null >/dev/null 2>&1; then unbuffered='sed -u'; else unbuffered=sed; fi
"#)
}

/// A process name that can stand in a `sed` expression and a path: letters, digits, `_`
/// and `-`, as synprov names them (the host's record is not trusted to).
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The script that prints the logs `request` asks for, from the deployment as the host
/// recorded it: each name must be one it recorded. A Synapse process's come from its log
/// file ([`file_log`]), the other services' from Compose; with `follow`, all at once.
pub fn script(host: &str, deployed: &Deployed, request: &Request) -> Result<Script, OpsError> {
    Ok(until_disconnected(
        &deployed.dir,
        Command::new("sh")
            .arg("-c")
            .arg(body(host, deployed, request)?.text())
            .arg("synprov-logs"),
    ))
}

/// What [`script`] runs in the deployment's directory.
fn body(host: &str, deployed: &Deployed, request: &Request) -> Result<Script, OpsError> {
    let deployment = &deployed.name;
    let names: Vec<&str> = if request.names.is_empty() {
        deployed.services.names().collect()
    } else {
        request.names.iter().map(String::as_str).collect()
    };
    let mut processes = Vec::new();
    let mut services = Vec::new();
    for name in names {
        let service = deployed
            .services
            .service(name)
            .map_err(|valid| OpsError::UnknownName {
                host: host.to_string(),
                deployment: deployment.clone(),
                name: crate::ui::printable(name).into_owned(),
                valid,
            })?;
        if deployed.services.is_synapse(name) && plain(name) {
            processes.push(name);
        } else {
            services.push(service.to_string());
        }
    }
    if request.since.is_some() && !services.is_empty() && matches!(deployed.compose, Compose::V1(_))
    {
        return Err(OpsError::SinceOnComposeV1 {
            host: host.to_string(),
        });
    }
    let mut body = file_log();
    body.push(match request.since {
        None => sh!("from=\n"),
        Some(Since::Ago(ago)) => sh!(
            "ago={}\nfrom=$(date -u -d \"@$(( $(date +%s) - ago ))\" '+%Y-%m-%d %H:%M:%S')\n",
            ago.as_secs().to_string()
        ),
        Some(Since::At(at)) => sh!("from={}\n", log_time(at)),
    });
    let (tail, follow) = (
        request.tail.map(|n| n.to_string()).unwrap_or_default(),
        if request.follow { "follow" } else { "" },
    );
    let then = || {
        if request.follow {
            sh!(" &\n")
        } else {
            sh!(" || status=1\n")
        }
    };
    body.push(sh!("status=0\n"));
    for process in processes {
        body.push(sh!(
            "synprov_file_log {} \"$from\" {} {}",
            process,
            tail,
            follow
        ));
        body.push(then());
    }
    if !services.is_empty() {
        let query = LogsQuery {
            tail: request.tail,
            since: request.since.map(|s| s.compose_arg()),
            follow: request.follow,
        };
        body.push(sh!(
            "{}",
            compose::logs(&deployed.compose, &query, &services)
        ));
        body.push(then());
    }
    body.push(sh!("wait\nexit \"$status\"\n"));
    Ok(body)
}

/// `at` as Synapse's log lines start: `YYYY-MM-DD HH:MM:SS`, UTC.
fn log_time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_string()
}

/// Streams the logs of the deployment `name` in `dir` to `out` and `err` until they end
/// (with `follow`, until the containers stop or synprov does); returns Compose's exit
/// status.
pub fn logs(
    connection: &Connection,
    (name, dir): (&str, &str),
    request: &Request,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, OpsError> {
    let deployed = super::deployed(connection, name, dir)?;
    let script = script(connection.host_name(), &deployed, request)?;
    Ok(connection.stream_script(&script, out, err)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Services;

    fn deployed(compose: Compose) -> Deployed {
        Deployed {
            name: "d".into(),
            dir: "/opt/x;touch${IFS}/tmp/pwned;'".into(),
            compose,
            services: Services::from_names(
                &[("main", "synapse"), ("client_sync1", "client-sync1")],
                &["db"],
            ),
        }
    }

    #[test]
    fn since_takes_durations_and_utc_times_and_refuses_anything_else() {
        assert_eq!("10m".parse::<Since>().unwrap().compose_arg(), "600s");
        assert_eq!("1h 30m".parse::<Since>().unwrap().compose_arg(), "5400s");
        assert_eq!("1500ms".parse::<Since>().unwrap().compose_arg(), "2s");
        assert_eq!(
            "2026-12-01T10:00:00Z"
                .parse::<Since>()
                .unwrap()
                .compose_arg(),
            "2026-12-01T10:00:00Z"
        );
        let error = "10m;touch /tmp/pwned".parse::<Since>().unwrap_err();
        assert!(
            error.starts_with("`10m;touch /tmp/pwned` is neither a duration"),
            "{error}"
        );
        assert!("yesterday".parse::<Since>().is_err());
        assert!("".parse::<Since>().is_err());
    }

    #[test]
    fn synapse_processes_are_read_from_their_files_and_other_services_from_compose() {
        let request = Request {
            names: vec!["client_sync1".into(), "main".into(), "db".into()],
            since: Some(Since::Ago(Duration::from_secs(600))),
            tail: Some(5),
            follow: true,
        };
        let deployed = deployed(Compose::V2(String::new()));
        let following = body("h", &deployed, &request).unwrap();
        let calls = "ago=600\nfrom=$(date -u -d \"@$(( $(date +%s) - ago ))\" '+%Y-%m-%d %H:%M:%S')\n\
             status=0\nsynprov_file_log client_sync1 \"$from\" 5 follow &\n\
             synprov_file_log main \"$from\" 5 follow &\n\
             docker compose -f docker-compose.yml logs --no-color --tail 5 --since 600s --follow -- db &\n\
             wait\nexit \"$status\"\n";
        assert!(following.text().ends_with(calls), "{}", following.text());
        let script = script("h", &deployed, &request).unwrap();
        assert!(
            script.text().starts_with(&format!(
                "umask 077\nsynprov_run() {{\ncd -- '/opt/x;touch${{IFS}}/tmp/pwned;'\\''' || exit 1\n\
                 sh -c {} synprov-logs &\ncommand=$!\n",
                crate::shell::quote(following.text())
            )),
            "{}",
            script.text()
        );

        let all = Request {
            since: Some("2026-12-01T10:00:00Z".parse().unwrap()),
            ..Request::default()
        };
        let all = body("h", &deployed, &all).unwrap();
        assert!(
            all.text().ends_with(
                "from='2026-12-01 10:00:00'\nstatus=0\n\
                 synprov_file_log client_sync1 \"$from\" '' '' || status=1\n\
                 synprov_file_log main \"$from\" '' '' || status=1\n\
                 docker compose -f docker-compose.yml logs --no-color --since 2026-12-01T10:00:00Z -- db || status=1\n\
                 wait\nexit \"$status\"\n"
            ),
            "{}",
            all.text()
        );
    }

    #[test]
    fn a_log_file_is_shown_whole_with_its_rotated_files_from_a_time_and_to_its_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs/main");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(
            logs.join("homeserver.log.2026-11-30"),
            "2026-11-30 23:59:00,001 - synapse - 1 - INFO - - yesterday\n",
        )
        .unwrap();
        std::fs::write(
            logs.join("homeserver.log"),
            "2026-12-01 09:59:59,999 - synapse - 1 - INFO - - before\n\
             2026-12-01 10:00:00,000 - synapse - 2 - ERROR - - failed\n\
             Traceback (most recent call last):\n\
             2026-12-01 10:00:01,000 - synapse - 3 - INFO - - after\n",
        )
        .unwrap();
        let deployed = Deployed {
            services: Services::from_names(&[("main", "synapse")], &[]),
            ..deployed(Compose::V2(String::new()))
        };
        let run = |request: &Request| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(body("h", &deployed, request).unwrap().text())
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let whole = run(&Request::default());
        assert!(
            whole
                .starts_with("main | 2026-11-30 23:59:00,001 - synapse - 1 - INFO - - yesterday\n")
                && whole.lines().count() == 5
                && whole.lines().all(|l| l.starts_with("main | ")),
            "{whole}"
        );
        let since = Request {
            since: Some("2026-12-01T10:00:00Z".parse().unwrap()),
            ..Request::default()
        };
        assert_eq!(
            run(&since),
            "main | 2026-12-01 10:00:00,000 - synapse - 2 - ERROR - - failed\n\
             main | Traceback (most recent call last):\n\
             main | 2026-12-01 10:00:01,000 - synapse - 3 - INFO - - after\n"
        );
        let last = Request {
            tail: Some(1),
            ..Request::default()
        };
        assert_eq!(
            run(&last),
            "main | 2026-12-01 10:00:01,000 - synapse - 3 - INFO - - after\n"
        );

        // The container's user plants links to a canary: a rotated file, then the log
        // itself. Nothing of the canary is printed, and a link at the log is refused.
        let canary = crate::confine::tests::Canary::beside(dir.path());
        let text = crate::confine::tests::CANARY_TEXT.trim();
        std::os::unix::fs::symlink(canary.dir.join("file"), logs.join("homeserver.log.0")).unwrap();
        let shown = run(&Request::default());
        assert!(
            !shown.contains(text) && shown.lines().count() == 5,
            "{shown}"
        );
        std::fs::rename(logs.join("homeserver.log"), logs.join("homeserver.log.1")).unwrap();
        std::os::unix::fs::symlink(canary.dir.join("file"), logs.join("homeserver.log")).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(body("h", &deployed, &Request::default()).unwrap().text())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(!String::from_utf8_lossy(&out.stdout).contains(text));
        canary.assert_untouched();
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_valid_ones_and_since_on_compose_v1() {
        let request = Request {
            names: vec!["synapse".into()],
            ..Request::default()
        };
        let error = script("h", &deployed(Compose::V2(String::new())), &request).unwrap_err();
        assert!(
            matches!(&error, OpsError::UnknownName { name, valid, .. }
                if name == "synapse" && valid == "client_sync1, db, main"),
            "{error:?}"
        );
        let request = Request {
            since: Some(Since::Ago(Duration::from_secs(1))),
            ..Request::default()
        };
        let error = script("h", &deployed(Compose::V1(String::new())), &request).unwrap_err();
        assert!(
            matches!(error, OpsError::SinceOnComposeV1 { .. }),
            "{error:?}"
        );
        let request = Request {
            tail: Some(3),
            ..Request::default()
        };
        let v1 = body("h", &deployed(Compose::V1(String::new())), &request).unwrap();
        assert!(
            v1.text().contains(
                "\ndocker-compose -f docker-compose.yml logs --no-color --tail 3 -- db || status=1\n"
            ),
            "{}",
            v1.text()
        );
        let processes_only = Request {
            names: vec!["main".into()],
            since: Some(Since::Ago(Duration::from_secs(1))),
            ..Request::default()
        };
        assert!(
            body("h", &deployed(Compose::V1(String::new())), &processes_only).is_ok(),
            "Synapse's files have times whatever the Compose"
        );
    }
}
