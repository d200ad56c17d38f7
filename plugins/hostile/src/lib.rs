//! One misbehaviour per feature; synprov must refuse each with its own clear error.

use synprov_plugin_sdk::*;

struct Hostile;

impl Guest for Hostile {
    fn describe() -> Metadata {
        metadata!("misbehaves on purpose, for synprov's sandbox tests")
    }

    fn check_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    #[allow(unreachable_code, unused_mut, unused_variables)]
    fn contribute(input: Input) -> Result<Contribution, String> {
        let mut out = Contribution::default();
        #[cfg(feature = "abuse")]
        return abuse::contribute(&input.config);
        #[cfg(feature = "infinite-loop")]
        loop {
            std::hint::black_box(&mut out);
        }
        #[cfg(feature = "memory-bomb")]
        {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&mut hoard);
            }
        }
        #[cfg(feature = "trap")]
        panic!("the plugin gave up");
        #[cfg(feature = "path-traversal")]
        out.files
            .push(File::new("../../etc/cron.d/evil", "* * * * * root id\n"));
        #[cfg(feature = "oversized-output")]
        out.files.push(File::new("big.txt", "x".repeat(8 << 20)));
        #[cfg(feature = "service-collision")]
        out.services.push(Service {
            name: "synapse".into(),
            definition: "image: evil:latest\n".into(),
        });
        #[cfg(feature = "wasi-read")]
        out.files.push(File::new(
            "passwd",
            std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
        ));
        Ok(out)
    }
}

#[cfg(feature = "abuse")]
mod abuse {
    use super::*;

    /// A service named `evil` running `image: evil` with `extra` added.
    fn service(extra: &str) -> Service {
        Service {
            name: "evil".into(),
            definition: format!("image: evil\n{extra}\n"),
        }
    }

    fn location(path: &str, body: &str) -> Location {
        Location {
            path: path.into(),
            body: body.into(),
        }
    }

    /// What the abuse named in the config returns.
    pub fn contribute(config: &str) -> Result<Contribution, String> {
        // The config is `{"abuse":"NAME"}`; a JSON parser would triple the component.
        let abuse = config.split('"').nth(3).unwrap_or_default();
        let mut out = Contribution::default();
        let capability = match abuse {
            "privileged" => Some("privileged: true"),
            "host-network" => Some("network_mode: host"),
            "host-pid" => Some("pid: host"),
            "host-ipc" => Some("ipc: host"),
            "cap-add" => Some("cap_add: [SYS_ADMIN]"),
            "devices" => Some("devices: ['/dev/sda:/dev/sda']"),
            "security-opt" => Some("security_opt: ['seccomp:unconfined']"),
            "userns" => Some("userns_mode: host"),
            "docker-socket" => Some("volumes: ['/var/run/docker.sock:/var/run/docker.sock']"),
            "root-mount" => Some("volumes: ['/:/host']"),
            "long-bind" => Some("volumes: [{type: bind, source: /etc, target: /host-etc}]"),
            "parent-mount" => Some("volumes: ['./..:/deployment']"),
            "low-port" => Some("ports: ['80:8080']"),
            "extends" => Some("extends: {file: /etc/compose.yml, service: x}"),
            "env-file" => Some("env_file: ../../.synapse.env"),
            "build" => Some("build: /"),
            "join-synapse" => Some("network_mode: 'service:synapse'"),
            "unknown-key" => Some("sysctls: {net.ipv4.ip_forward: 1}"),
            _ => None,
        };
        if let Some(extra) = capability {
            out.services.push(service(extra));
            return Ok(out);
        }
        match abuse {
            "alias-bomb" => {
                // Eight kilobytes of text, megabytes once the aliases are expanded.
                let aliases = vec!["*a"; 2000].join(",");
                out.services.push(service(&format!(
                    "x-a: &a \"{}\"\nx-b: [{aliases}]",
                    "a".repeat(2000)
                )));
            }
            "comment-braces" => out.locations.push(location(
                "= /hostile",
                "return 200 'ok'; # {\n}\nlocation /_synapse/admin/ { return 200 'open'; # }\n",
            )),
            "admin-shadow" => out.locations.push(location(
                "^~ /_synapse/admin/v1/",
                "return 200 'admin, unguarded';",
            )),
            "variable" => out.locations.push(location(
                "= /hostile",
                "return 200 '$http_authorization';",
            )),
            "compose-override" => {
                for name in ["compose.yaml", "docker-compose.override.yml"] {
                    out.files.push(File::new(
                        name,
                        "services:\n  synapse:\n    image: evil\n    privileged: true\n",
                    ));
                }
            }
            "secret-mode" => out.files.push(File {
                mode: Some(0o644),
                ..File::new("secret.conf", format!("key={}\n", derive_secret("key")))
            }),
            "nested" => {
                out.files.push(File::new("a/b", "under a\n"));
                out.files.push(File::new("a", "a file\n"));
            }
            other => return Err(format!("unknown abuse {other:?}")),
        }
        Ok(out)
    }
}

export_plugin!(Hostile);
