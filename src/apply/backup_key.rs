//! The SSH key of a deployment's SFTP backup repository. The key is made on the host
//! (by `ssh-keygen` in restic's image, which has OpenSSH for SFTP), stays there (0600, in
//! `.synprov/backup/ssh`, root's) and is never printed nor sent anywhere but its public
//! half. On a repository host of the inventory, the public key is authorised for that
//! host's user over synprov's own connection to it (`restrict`: no shell forwarding, no
//! pty), and restic's known_hosts gets the key synprov itself checked when it connected
//! (against the controller's known_hosts). For a server outside the inventory, known_hosts
//! gets the inventory's `host_key`, and the server's operator authorises the key, which
//! apply shows.

use super::{ApplyError, Report, step, step_within};
use crate::confine;
use crate::inventory::values::HostKey;
use crate::render::backup::{Remote, SSH_DIR};
use crate::sh;
use crate::shell::{Command, Script};
use crate::transport::known_hosts::{host_pattern, keys_for};
use crate::transport::{Connection, OutputLimit};

/// The private key in [`SSH_DIR`]; its public half is beside it (`.pub`).
const KEY: &str = "id_ed25519";

/// What the key script prints first when the key and known_hosts were there already.
const READY: &str = "ready";

/// A public key line is far below this.
const MAX_PUBLIC_KEY: usize = 4096;

/// Makes the key on the host (when it has none yet), authorises it on the repository's
/// host when the inventory has it, and writes restic's known_hosts. The repository's host
/// is reached only when there is something to do there: a key or known_hosts just made, or
/// the backup's files changed (`files_changed`: a new repository, perhaps). Returns the
/// public key.
pub fn see_to(
    connection: &Connection,
    deployment: &str,
    dir: &str,
    remote: &Remote,
    files_changed: bool,
    report: Report,
) -> Result<HostKey, ApplyError> {
    let name = connection.host_name();
    let said = step_within(
        connection,
        "making the backup key",
        &make_key_script(dir, deployment, name, &remote.image),
        OutputLimit::stdout(MAX_PUBLIC_KEY),
    )?;
    let public = public_key(&said).ok_or_else(|| ApplyError::Step {
        host: name.to_string(),
        step: "making the backup key".into(),
        tail: "the host's public key is not an SSH public key".into(),
    })?;
    if said.lines().next() == Some(READY) && !files_changed {
        return Ok(public);
    }
    let known: Vec<String> = match (&remote.host, &remote.host_key) {
        (Some(host), _) => {
            let other = Connection::open(host, connection.options())?;
            let line = format!("restrict {} synprov-backup-{deployment}@{name}", &*public);
            step(
                &other,
                "authorising the backup key",
                &authorise_script(&line, &remote.path),
            )
            .map_err(|e| match e {
                // Run as the login user, on the repository's host: named as such.
                ApplyError::Step { step, tail, .. } => ApplyError::Step {
                    host: host.name.clone(),
                    step: format!("{step} of {name}"),
                    tail,
                },
                other => other,
            })?;
            report(
                name,
                &format!(
                    "{deployment}: backup key authorised for {}@{}",
                    host.user, host.name
                ),
            );
            let text =
                std::fs::read_to_string(&connection.options().known_hosts).unwrap_or_default();
            keys_for(&text, &host.address, host.port)
                .iter()
                .map(|key| {
                    use base64::Engine;
                    let blob = base64::engine::general_purpose::STANDARD.encode(&key.blob);
                    format!("{} {blob}", key.key_type)
                })
                .collect()
        }
        (None, Some(key)) => {
            report(
                name,
                &format!(
                    "{deployment}: the backup logs in to {} with the key {}: authorise it there",
                    remote.address, &*public
                ),
            );
            vec![key.to_string()]
        }
        (None, None) => Vec::new(),
    };
    step(
        connection,
        "writing the backup's known_hosts",
        &known_hosts_script(dir, &host_pattern(&remote.address, remote.port), &known),
    )?;
    Ok(public)
}

/// Reads the public key the host printed: its type and key, checked as a host key is.
fn public_key(said: &str) -> Option<HostKey> {
    let line = said.lines().rev().find(|l| !l.trim().is_empty())?;
    let mut words = line.split_ascii_whitespace();
    HostKey::parse(&format!("{} {}", words.next()?, words.next()?)).ok()
}

/// Makes the key pair in [`SSH_DIR`] unless it is there, then prints the public key.
fn make_key_script(dir: &str, deployment: &str, host: &str, image: &str) -> Script {
    let keygen = Command::new("docker")
        .arg("run")
        .arg("--rm")
        .arg("--network")
        .arg("none")
        .arg("-v")
        .arg(format!("{dir}/{SSH_DIR}:/ssh"))
        .arg("--entrypoint")
        .arg("ssh-keygen")
        .arg(image)
        .arg("-q")
        .arg("-t")
        .arg("ed25519")
        .arg("-N")
        .arg("")
        .arg("-C")
        .arg(format!("synprov-backup-{deployment}@{host}"))
        .arg("-f")
        .arg(format!("/ssh/{KEY}"));
    let key = format!("{SSH_DIR}/{KEY}");
    let public = format!("{key}.pub");
    let known = format!("{SSH_DIR}/known_hosts");
    let mut s = sh!("umask 077\n");
    s.push(confine::enter(dir));
    s.push(confine::dir(SSH_DIR));
    s.push(confine::file(&key));
    s.push(confine::file(&public));
    s.push(confine::file(&known));
    s.push(sh!(
        "if [ -f {} ] && [ -f {} ] && [ -f {} ]; then echo {}; fi\n",
        key.as_str(),
        public.as_str(),
        known.as_str(),
        READY
    ));
    s.push(sh!(
        "mkdir -p -m 700 -- .synprov/backup {} || exit 1\n\
         if [ ! -f {} ] || [ ! -f {} ]; then\n\
         \x20   rm -f -- {} {}\n\
         \x20   {} >&2 || exit 1\n\
         fi\n\
         head -c 4096 -- {}\n",
        SSH_DIR,
        key.as_str(),
        public.as_str(),
        key.as_str(),
        public.as_str(),
        keygen,
        public.as_str()
    ));
    s
}

/// Run as the repository host's login user (restic logs in as it): the key line in its
/// `authorized_keys`, once, and the repository's directory made.
fn authorise_script(line: &str, path: &str) -> Script {
    sh!(
        "umask 077\nset -e\n\
         mkdir -p -- \"$HOME/.ssh\"\n\
         line={}\n\
         if ! grep -qxF -- \"$line\" \"$HOME/.ssh/authorized_keys\" 2>/dev/null; then\n\
         \x20   printf '%s\\n' \"$line\" >> \"$HOME/.ssh/authorized_keys\"\n\
         fi\n\
         mkdir -p -- {} || { echo \"$(id -un) cannot make the repository's directory\" >&2; exit 1; }\n",
        line,
        path
    )
}

/// restic's known_hosts: the repository server's keys under the name restic's ssh uses.
fn known_hosts_script(dir: &str, pattern: &str, keys: &[String]) -> Script {
    let path = format!("{SSH_DIR}/known_hosts");
    let text: String = keys.iter().map(|k| format!("{pattern} {k}\n")).collect();
    let mut s = sh!("umask 077\n");
    s.push(confine::enter(dir));
    s.push(confine::file(&path));
    s.push(sh!(
        "printf %s {} > {} && mv -f -- {} {}\n",
        text,
        format!("{path}.new"),
        format!("{path}.new"),
        path
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_LINE: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF8pSLiigXVDjCu0wJpAUHLAGBExEk8hYHnSmkVrV/W7";

    #[test]
    fn the_public_key_is_read_as_hostile_text() {
        assert_eq!(
            public_key(&format!("{KEY_LINE} synprov-backup-hs@a\n")).map(|k| k.to_string()),
            Some(KEY_LINE.to_string())
        );
        assert_eq!(public_key("ssh-ed25519 $(reboot) x\n"), None);
        assert_eq!(
            public_key("command=\"sh\" ssh-ed25519 AAAA\n"),
            None,
            "options are never taken from the host"
        );
        assert_eq!(public_key(""), None);
    }

    #[test]
    fn the_key_is_authorised_once_restricted_and_quoted() {
        let line = format!("restrict {KEY_LINE} synprov-backup-hs@a");
        assert_eq!(
            authorise_script(&line, "/srv/restic/hs").text(),
            format!(
                "umask 077\nset -e\nmkdir -p -- \"$HOME/.ssh\"\nline='{line}'\n\
                 if ! grep -qxF -- \"$line\" \"$HOME/.ssh/authorized_keys\" 2>/dev/null; then\n\
                 \x20   printf '%s\\n' \"$line\" >> \"$HOME/.ssh/authorized_keys\"\nfi\n\
                 mkdir -p -- /srv/restic/hs || {{ echo \"$(id -un) cannot make the repository's directory\" >&2; exit 1; }}\n"
            )
        );
    }

    #[test]
    fn known_hosts_names_the_address_restic_connects_to() {
        let script = known_hosts_script(
            "/opt/synapse/hs",
            &host_pattern("10.0.0.3", 2200),
            &[KEY_LINE.to_string()],
        );
        assert!(
            script.text().ends_with(&format!(
                "printf %s '[10.0.0.3]:2200 {KEY_LINE}\n' > .synprov/backup/ssh/known_hosts.new \
                 && mv -f -- .synprov/backup/ssh/known_hosts.new .synprov/backup/ssh/known_hosts\n"
            )),
            "{}",
            script.text()
        );
    }

    #[test]
    fn the_key_is_made_in_restic_image_without_network_and_only_once() {
        let text = make_key_script("/opt/synapse/hs", "hs", "a", "synprov/restic:0.14")
            .text()
            .to_string();
        assert!(
            text.ends_with(
                "if [ -f .synprov/backup/ssh/id_ed25519 ] && [ -f .synprov/backup/ssh/id_ed25519.pub ] \
                 && [ -f .synprov/backup/ssh/known_hosts ]; then echo ready; fi\n\
                 mkdir -p -m 700 -- .synprov/backup .synprov/backup/ssh || exit 1\n\
                 if [ ! -f .synprov/backup/ssh/id_ed25519 ] || [ ! -f .synprov/backup/ssh/id_ed25519.pub ]; then\n\
                 \x20   rm -f -- .synprov/backup/ssh/id_ed25519 .synprov/backup/ssh/id_ed25519.pub\n\
                 \x20   docker run --rm --network none -v /opt/synapse/hs/.synprov/backup/ssh:/ssh \
                 --entrypoint ssh-keygen synprov/restic:0.14 -q -t ed25519 -N '' -C synprov-backup-hs@a \
                 -f /ssh/id_ed25519 >&2 || exit 1\nfi\nhead -c 4096 -- .synprov/backup/ssh/id_ed25519.pub\n"
            ),
            "{text}"
        );
    }
}
