//! A TURN server role: coturn beside the homeserver, so that VoIP calls work behind NAT.
//!
//! Synapse hands clients short-lived TURN credentials derived from a secret it shares with
//! coturn (`use-auth-secret`); the plugin derives that secret from the inventory's master
//! key, so it is stable across runs and never written in the inventory.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::json;
use synprov_plugin_sdk::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The name clients reach TURN at; the server name by default.
    host: Option<String>,
    #[serde(default = "default_port")]
    port: u16,
    /// The host's public address, when it is behind NAT: an IP address, nothing else (it
    /// is a line of turnserver.conf).
    external_ip: Option<IpAddr>,
    #[serde(default = "default_min_port")]
    min_port: u16,
    #[serde(default = "default_max_port")]
    max_port: u16,
    #[serde(default = "default_image")]
    image: String,
    /// The user coturn runs as in its image (nobody in coturn's own).
    #[serde(default = "default_uid")]
    uid: u32,
}

fn default_port() -> u16 {
    3478
}
fn default_min_port() -> u16 {
    49160
}
fn default_max_port() -> u16 {
    49200
}
fn default_uid() -> u32 {
    65534
}
fn default_image() -> String {
    "coturn/coturn:4.6".into()
}

impl Config {
    fn parse(text: &str) -> Result<Config, String> {
        let config: Config = parse_config(text)?;
        if config.port == 0 || config.min_port == 0 || config.min_port > config.max_port {
            return Err(format!(
                "invalid ports: port = {}, min_port = {}, max_port = {} (need 0 < min_port <= max_port)",
                config.port, config.min_port, config.max_port
            ));
        }
        if let Some(host) = &config.host {
            let plain = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !plain {
                return Err(format!(
                    "invalid host {host:?}: give a DNS name or an IP address"
                ));
            }
        }
        Ok(config)
    }
}

struct Turn;

impl Guest for Turn {
    fn describe() -> Metadata {
        metadata!("A TURN server (coturn) for VoIP calls, wired into homeserver.yaml")
    }

    fn check_config(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }

    fn contribute(input: Input) -> Result<Contribution, String> {
        let config = Config::parse(&input.config)?;
        let deployment = &input.deployment;
        let secret = derive_secret("turn_shared_secret");
        let host = config
            .host
            .unwrap_or_else(|| deployment.server_name.clone());
        let port = config.port;
        let mut out = Contribution::default();
        // Every Synapse process reads homeserver.yaml, on every host of the deployment.
        out.homeserver = yaml(&json!({
            "turn_uris": [
                format!("turn:{host}:{port}?transport=udp"),
                format!("turn:{host}:{port}?transport=tcp"),
            ],
            "turn_shared_secret": secret,
            "turn_user_lifetime": "1h",
            "turn_allow_guests": false,
        }));
        if !deployment.main_host {
            return Ok(out);
        }
        let mut conf = format!(
            "# coturn for {server}, rendered by the synprov turn plugin.\n\
             listening-port={port}\n\
             realm={server}\n\
             use-auth-secret\n\
             static-auth-secret={secret}\n\
             min-port={min}\nmax-port={max}\n\
             no-tls\nno-dtls\nno-cli\nfingerprint\n\
             log-file=stdout\n\
             # Relay only to the public internet (Synapse's TURN howto).\n\
             no-multicast-peers\n\
             denied-peer-ip=10.0.0.0-10.255.255.255\n\
             denied-peer-ip=172.16.0.0-172.31.255.255\n\
             denied-peer-ip=192.168.0.0-192.168.255.255\n\
             denied-peer-ip=127.0.0.0-127.255.255.255\n\
             user-quota=12\ntotal-quota=1200\n",
            server = deployment.server_name,
            min = config.min_port,
            max = config.max_port,
        );
        if let Some(ip) = config.external_ip {
            conf.push_str(&format!("external-ip={ip}\n"));
        }
        // coturn's images run it as nobody; the file holds the secret (0600).
        out.files.push(
            File::new("coturn/turnserver.conf", conf)
                .owned_by(config.uid, config.uid)
                .used_by("coturn"),
        );
        out.services.push(Service {
            name: "coturn".into(),
            definition: yaml(&json!({
                "image": config.image,
                "restart": "always",
                // TURN relays on a range of ports: publishing each through Docker's proxy
                // is slow, so coturn shares the host's network, as Synapse's docs advise.
                // The operator grants it: `allow = ["host-network"]`.
                "network_mode": "host",
                "command": ["-c", "/etc/coturn/turnserver.conf"],
                // The directory, not the file: synprov replaces files by renaming, and a
                // single-file mount would keep the old one. Relative to the plugin's own
                // directory, like its file paths.
                "volumes": ["./coturn:/etc/coturn:ro"],
                "user": format!("{0}:{0}", config.uid),
            })),
        });
        out.health_checks.push(HealthCheck::Tcp(port));
        Ok(out)
    }
}

export_plugin!(Turn);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ip_is_an_ip_address_and_nothing_more() {
        let config = Config::parse(r#"{"external_ip": "203.0.113.7"}"#).ok();
        assert_eq!(
            config.and_then(|c| c.external_ip),
            "203.0.113.7".parse().ok()
        );
        let smuggled = r#"{"external_ip": "203.0.113.7\nallowed-peer-ip=10.0.0.1"}"#;
        assert!(Config::parse(smuggled).is_err());
        assert!(Config::parse(r#"{"host": "turn.example\n"}"#).is_err());
    }
}
