//! The scripts that write a deployment's files on a host, fetch their current contents,
//! and roll them back. Pure: each is a string built from values, run by the transport.
//!
//! The write script is one shell function called on its last line: a script cut short in
//! transit defines nothing and runs nothing. Inside, every file is first staged beside its
//! target (`.NAME.synprov-new`), synced, then renamed over it, so each file is either old
//! or new, never partial. The versions it replaces are kept in `.synprov/previous` for
//! `synprov rollback`.

use std::collections::BTreeMap;
use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::facts::{MANIFEST, PENDING};
use crate::plan::{Change, DeploymentPlan};
use crate::render::DeploymentFiles;
use crate::shell::quote;

const PREVIOUS: &str = ".synprov/previous";
const END: &str = "SYNPROV_EOF";

fn staged(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.{name}.synprov-new"),
        None => format!(".{path}.synprov-new"),
    }
}

fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(dir, _)| dir)
}

/// Base64 in 76-column lines, for a heredoc.
fn base64_lines(data: &[u8]) -> String {
    let encoded = STANDARD.encode(data);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 + 1);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

/// Writes the changed files of `plan`, keeps the replaced versions, updates the manifest.
/// With `mark_pending`, it first records that the stack must be brought up on them
/// ([`PENDING`]), so that an apply interrupted before that is finished by the next one.
pub fn write_script(files: &DeploymentFiles, plan: &DeploymentPlan, mark_pending: bool) -> String {
    let mut s = String::from("trap '' HUP PIPE\nsynprov_write() {\nset -e\n");
    let _ = writeln!(
        s,
        "mkdir -p {dir} && cd {dir}",
        dir = quote(&files.deploy_dir)
    );
    s.push_str("mkdir -p .synprov && chmod 700 .synprov\n");
    for dir in &files.dirs {
        let _ = write!(
            s,
            "mkdir -p {p} && chmod {:o} {p}",
            dir.mode,
            p = quote(&dir.path)
        );
        if let Some((uid, gid)) = dir.owner {
            let _ = write!(s, " && chown {uid}:{gid} {}", quote(&dir.path));
        }
        s.push('\n');
    }
    let by_path: BTreeMap<&str, _> = files.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let writes: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.change != Change::Delete)
        .filter_map(|c| by_path.get(c.path.as_str()))
        .collect();
    for file in &writes {
        let target = quote(&staged(&file.path));
        if let Some(dir) = parent(&file.path) {
            let _ = writeln!(s, "mkdir -p {}", quote(dir));
        }
        let _ = write!(
            s,
            "base64 -d > {target} <<'{END}'\n{}{END}\nchmod {:o} {target}\n",
            base64_lines(file.contents.as_bytes()),
            file.mode
        );
        if let Some((uid, gid)) = file.owner {
            let _ = writeln!(s, "chown {uid}:{gid} {target}");
        }
    }
    if mark_pending {
        let mut lines = vec!["up".to_string()];
        lines.extend(plan.restart.iter().cloned());
        let _ = writeln!(
            s,
            "printf '%s\\n' {} > {PENDING}.new && mv -f {PENDING}.new {PENDING}",
            lines.iter().map(|l| quote(l)).collect::<Vec<_>>().join(" ")
        );
    }
    s.push_str("sync\n");
    // The versions about to be replaced or removed, and the manifest, become the rollback.
    let _ = writeln!(
        s,
        "rm -rf {PREVIOUS}.new && mkdir -p {PREVIOUS}.new && : > {PREVIOUS}.new/.created"
    );
    let _ = writeln!(
        s,
        "[ -f {MANIFEST} ] && cp -p {MANIFEST} {PREVIOUS}.new/.manifest"
    );
    for change in &plan.changes {
        let path = quote(&change.path);
        match change.change {
            Change::Create => {
                let _ = writeln!(s, "echo {path} >> {PREVIOUS}.new/.created");
            }
            Change::Update | Change::Delete => {
                let _ = writeln!(
                    s,
                    "mkdir -p \"$(dirname {PREVIOUS}.new/{path})\" && cp -p {path} {PREVIOUS}.new/{path}"
                );
            }
        }
    }
    let _ = writeln!(s, "rm -rf {PREVIOUS} && mv {PREVIOUS}.new {PREVIOUS}");
    for change in &plan.changes {
        let path = quote(&change.path);
        match change.change {
            Change::Delete => {
                let _ = writeln!(s, "rm -f {path}");
            }
            _ => {
                let _ = writeln!(s, "mv -f {} {path}", quote(&staged(&change.path)));
            }
        }
    }
    let manifest: Vec<String> = files.files.iter().map(|f| f.path.clone()).collect();
    let _ = write!(
        s,
        "cat > {MANIFEST}.new <<'{END}'\n{}\n{END}\nmv -f {MANIFEST}.new {MANIFEST}\nsync\necho synprov-written\n}}\nsynprov_write\n",
        manifest.join("\n")
    );
    s
}

/// Prints the current contents of `paths` in `dir`, base64, each after a `=== path` line.
pub fn fetch_script(dir: &str, paths: &[&str]) -> String {
    let mut s = format!("cd {} || exit 0\n", quote(dir));
    for path in paths {
        let _ = writeln!(
            s,
            "[ -f {p} ] && {{ echo {}; base64 {p}; }}",
            quote(&format!("=== {path}")),
            p = quote(path)
        );
    }
    s.push_str("exit 0\n");
    s
}

/// Reads `fetch_script`'s output.
pub fn parse_fetch(output: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let finish = |entry: Option<(String, String)>, out: &mut BTreeMap<String, String>| {
        if let Some((path, data)) = entry {
            let bytes = STANDARD.decode(data.as_bytes()).unwrap_or_default();
            out.insert(path, String::from_utf8_lossy(&bytes).into_owned());
        }
    };
    for line in output.lines() {
        if let Some(path) = line.strip_prefix("=== ") {
            finish(current.take(), &mut out);
            current = Some((path.to_string(), String::new()));
        } else if let Some((_, data)) = current.as_mut() {
            data.push_str(line.trim());
        }
    }
    finish(current, &mut out);
    out
}

/// Puts back the files the last apply replaced and removes those it created. Fails when
/// there is nothing to roll back.
pub fn rollback_script(dir: &str) -> String {
    format!(
        "trap '' HUP PIPE\nsynprov_rollback() {{\nset -e\ncd {dir}\n[ -d {PREVIOUS} ] || {{ echo 'nothing to roll back: no previous apply changed files here' >&2; exit 3; }}\n\
while IFS= read -r f; do [ -n \"$f\" ] && rm -f \"$f\"; done < {PREVIOUS}/.created\n\
(cd {PREVIOUS} && find . -type f ! -name .created ! -name .manifest -print) | while IFS= read -r f; do mkdir -p \"$(dirname \"$f\")\" && cp -p {PREVIOUS}/\"$f\" \"$f.synprov-new\" && mv -f \"$f.synprov-new\" \"$f\"; done\n\
if [ -f {PREVIOUS}/.manifest ]; then cp -p {PREVIOUS}/.manifest {MANIFEST}; fi\n\
rm -rf {PREVIOUS}\nsync\necho synprov-rolled-back\n}}\nsynprov_rollback\n",
        dir = quote(dir)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_files_sit_beside_their_target() {
        assert_eq!(
            staged("synapse/homeserver.yaml"),
            "synapse/.homeserver.yaml.synprov-new"
        );
        assert_eq!(
            staged("docker-compose.yml"),
            ".docker-compose.yml.synprov-new"
        );
    }

    #[test]
    fn fetched_contents_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "one\ntwo\n").unwrap();
        let script = fetch_script(dir.path().to_str().unwrap(), &["a", "missing"]);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        let fetched = parse_fetch(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(fetched.len(), 1);
        assert_eq!(fetched["a"], "one\ntwo\n");
    }
}
