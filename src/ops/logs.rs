//! `logs`: what the containers of a deployment printed, streamed as it arrives.

use std::io::Write;
use std::time::{Duration, SystemTime};

use super::{Deployed, OpsError, until_disconnected};
use crate::apply::compose::{self, LogsQuery};
use crate::facts::Compose;
use crate::shell::Script;
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

/// The script that prints the logs `request` asks for, from the deployment as the host
/// recorded it: each name must be one it recorded.
pub fn script(host: &str, deployed: &Deployed, request: &Request) -> Result<Script, OpsError> {
    let deployment = &deployed.name;
    let services = request
        .names
        .iter()
        .map(|name| {
            deployed
                .services
                .service(name)
                .map(String::from)
                .map_err(|valid| OpsError::UnknownName {
                    host: host.to_string(),
                    deployment: deployment.clone(),
                    name: crate::ui::printable(name).into_owned(),
                    valid,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if request.since.is_some() && matches!(deployed.compose, Compose::V1(_)) {
        return Err(OpsError::SinceOnComposeV1 {
            host: host.to_string(),
        });
    }
    let query = LogsQuery {
        tail: request.tail,
        since: request.since.map(|s| s.compose_arg()),
        follow: request.follow,
    };
    Ok(until_disconnected(
        &deployed.dir,
        compose::logs(&deployed.compose, &query, &services),
    ))
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
            services: Services::from_names(&[
                ("main", "synapse"),
                ("client_sync1", "client-sync1"),
            ]),
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
    fn the_script_names_the_recorded_services_and_quotes_the_dir() {
        let request = Request {
            names: vec!["client_sync1".into(), "main".into()],
            since: Some(Since::Ago(Duration::from_secs(600))),
            tail: Some(5),
            follow: true,
        };
        let script = script("h", &deployed(Compose::V2(String::new())), &request).unwrap();
        assert_eq!(
            script.text(),
            "umask 077\nsynprov_run() {\ncd -- '/opt/x;touch${IFS}/tmp/pwned;'\\''' || exit 1\n\
             docker compose -f docker-compose.yml logs --no-color --tail 5 --since 600s --follow \
             -- client-sync1 synapse &\ncommand=$!\n\
             { cat >/dev/null; kill \"$command\"; } <&3 >/dev/null 2>&1 &\nwatcher=$!\n\
             wait \"$command\"\nstatus=$?\nkill \"$watcher\" 2>/dev/null\nexit \"$status\"\n}\n\
             synprov_run 3<&0 </dev/null\n"
        );
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
                if name == "synapse" && valid == "client_sync1, main"),
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
        let v1 = script("h", &deployed(Compose::V1(String::new())), &request).unwrap();
        assert!(
            v1.text()
                .contains("\ndocker-compose -f docker-compose.yml logs --no-color --tail 3 -- &\n")
        );
    }
}
