//! `.well-known` delegation: `https://example.org/.well-known/matrix/{server,client}` tell
//! other servers and clients that the homeserver of `example.org` lives at, say,
//! `matrix.example.org:443`. Served by the deployment's own Nginx, so nothing else is needed
//! when the server name's web traffic reaches it.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use synprov_plugin_sdk::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `host:port` of federation; the public_baseurl's host on 443 by default.
    server: Option<String>,
    /// The client base URL; the public_baseurl by default.
    base_url: Option<String>,
    /// More keys for the client file (`m.identity_server`, `org.matrix.msc...`).
    #[serde(default)]
    client_extra: Map<String, Value>,
}

/// The host of an `https://host[:port]/` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    (!authority.is_empty()).then_some(authority)
}

/// `body` as JSON text for an Nginx string: `$` written as the JSON escape `\u0024` (Nginx
/// has no escape for `$` and would read `$http_authorization` as a variable), then
/// backslashes and quotes escaped for Nginx's single-quoted string.
fn nginx_json(body: &Value) -> String {
    body.to_string()
        .replace('$', "\\u0024")
        .replace('\\', "\\\\")
        .replace('\'', "\\'")
}

/// A location answering `body` as JSON, readable by web clients of any origin.
fn json_location(path: &str, body: &Value) -> Location {
    let text = nginx_json(body);
    Location {
        path: format!("= {path}"),
        body: format!(
            "default_type application/json;\n\
             add_header Access-Control-Allow-Origin * always;\n\
             return 200 '{text}';"
        ),
    }
}

struct WellKnown;

impl Guest for WellKnown {
    fn describe() -> Metadata {
        metadata!("Matrix .well-known delegation served by the deployment's Nginx")
    }

    fn check_config(config: String) -> Result<(), String> {
        parse_config::<Config>(&config).map(|_| ())
    }

    fn contribute(input: Input) -> Result<Contribution, String> {
        let config: Config = parse_config(&input.config)?;
        let deployment = &input.deployment;
        let mut out = Contribution::default();
        if !deployment.main_host {
            return Ok(out);
        }
        let server = match config.server {
            Some(server) => server,
            None => {
                let host = url_host(&deployment.public_baseurl).ok_or_else(|| {
                    format!(
                        "cannot find the host in public_baseurl {:?}; set `server`",
                        deployment.public_baseurl
                    )
                })?;
                if host.contains(':') {
                    host.to_string()
                } else {
                    format!("{host}:443")
                }
            }
        };
        let mut client = config.client_extra;
        client.insert(
            "m.homeserver".into(),
            json!({ "base_url": config.base_url.unwrap_or_else(|| deployment.public_baseurl.clone()) }),
        );
        out.locations.push(json_location(
            "/.well-known/matrix/server",
            &json!({ "m.server": server }),
        ));
        out.locations.push(json_location(
            "/.well-known/matrix/client",
            &Value::Object(client),
        ));
        out.health_checks.push(HealthCheck::Http(HttpCheck {
            port: deployment.http_port,
            path: "/.well-known/matrix/server".into(),
            host_header: Some(deployment.server_name.clone()),
        }));
        Ok(out)
    }
}

export_plugin!(WellKnown);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_quotes_and_backslashes_cannot_reach_nginx_as_syntax() {
        let text = nginx_json(&json!({ "a": "$http_authorization 'x' \\ \"y\"" }));
        assert!(!text.contains('$'), "{text}");
        assert_eq!(
            text,
            r#"{"a":"\\u0024http_authorization \'x\' \\\\ \\"y\\""}"#
        );
    }
}
