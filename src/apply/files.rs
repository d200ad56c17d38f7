//! The scripts that write a deployment's files on a host and fetch their current contents.
//! Pure: each is a [`Script`] built from values, run by the transport.
//!
//! The write script is one shell function called on its last line: a script cut short in
//! transit defines nothing and runs nothing. Inside, every file is first staged beside its
//! target (`.NAME.synprov-new`), synced, then renamed over it, so each file is either old
//! or new, never partial. What it replaces stays in the deployment's generations
//! ([`crate::generations`]), from which `synprov rollback` puts it back. Every path is
//! checked by [`crate::confine`]'s guard before anything is renamed or removed: a link, or
//! a directory others may write in, among synprov's own directories ends the script there.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::confine;
use crate::facts::{MANIFEST, PENDING};
use crate::plan::{Change, DeploymentPlan};
use crate::render::DeploymentFiles;
use crate::sh;
use crate::shell::{Mode, Script, make_dirs, print_nul_terminated, with_base64_input};

fn staged(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.{name}.synprov-new"),
        None => format!(".{path}.synprov-new"),
    }
}

/// Every directory above `path` (relative), outermost first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(at, _)| &path[..at])
        .filter(|dir| !dir.is_empty() && !dir.ends_with('/'))
}

/// Writes `paths` to a file (`redirect`), NUL-terminated: never as lines of a
/// here-document, which a path could end.
fn write_paths(paths: &[&str], redirect: Script) -> Script {
    let mut s = print_nul_terminated(paths);
    s.push(redirect);
    s
}

/// Writes the changed files of `plan`, keeps the replaced versions, updates the manifest.
/// With `mark_pending`, it first records that the stack must be brought up on them
/// ([`PENDING`]), so that an apply interrupted before that is finished by the next one.
///
/// Under `umask 077`, every file and directory is created private and then given its final
/// mode, which is never narrower: a file holding a secret (mode 0600) is never readable by
/// others, not even for an instant. The deploy directory and the directories synprov
/// creates on the way get 0755, as before (the containers and the SSH user reach into
/// them); the directories the deployment declares get their own mode from the start.
pub fn write_script(files: &DeploymentFiles, plan: &DeploymentPlan, mark_pending: bool) -> Script {
    let mut s = sh!("trap '' HUP PIPE\nsynprov_write() {\nset -e\numask 077\n");
    s.push(make_dirs(&files.deploy_dir, Mode(0o755)));
    s.push(confine::enter(&files.deploy_dir));
    s.push(confine::dir(".synprov"));
    s.push(sh!("mkdir -p .synprov && chmod 700 .synprov\n"));
    // Each directory after the one above it: declared ones with their mode, the others
    // (parents of files) with 0755.
    let declared: BTreeMap<&str, _> = files.dirs.iter().map(|d| (d.path.as_str(), d)).collect();
    let by_path: BTreeMap<&str, _> = files.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let writes: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.change != Change::Delete)
        .filter_map(|c| by_path.get(c.path.as_str()))
        .collect();
    let mut dirs: BTreeSet<&str> = declared.keys().flat_map(|d| ancestors(d)).collect();
    dirs.extend(declared.keys());
    dirs.extend(writes.iter().flat_map(|f| ancestors(&f.path)));
    for dir in dirs {
        match declared.get(dir) {
            Some(d) => {
                s.push(confine::data_dir(&d.path));
                s.push(sh!(
                    "mkdir -p -m {} -- {} && chmod {} -- {}",
                    Mode(d.mode),
                    d.path,
                    Mode(d.mode),
                    d.path
                ));
                if let Some((uid, gid)) = d.owner {
                    s.push(sh!(" && chown {} -- {}", format!("{uid}:{gid}"), d.path));
                }
                s.push(sh!("\n"));
            }
            None => {
                s.push(confine::dir(dir));
                s.push(sh!("mkdir -p -m 755 -- {}\n", dir));
            }
        }
    }
    for file in &writes {
        let target = staged(&file.path);
        // A leftover staged file would keep its old, maybe wider, mode: start afresh.
        s.push(confine::file(&file.path));
        s.push(sh!("rm -f -- {}\n", target));
        s.push(with_base64_input(
            sh!("base64 -d > {}", target),
            file.contents.as_bytes(),
        ));
        s.push(sh!("chmod {} -- {}\n", Mode(file.mode), target));
        if let Some((uid, gid)) = file.owner {
            s.push(sh!("chown {} -- {}\n", format!("{uid}:{gid}"), target));
        }
    }
    // Checked before anything is renamed or removed: a refusal leaves the deployment's
    // files as they were (staged files aside).
    for change in plan.changes.iter().filter(|c| c.change == Change::Delete) {
        s.push(confine::file(&change.path));
    }
    if mark_pending {
        // The services to reload are marked as ones to recreate: an apply cut short before
        // the reload is finished by a recreation, which reads the new files too.
        let mut lines = vec!["up"];
        lines.extend(plan.restart.iter().chain(&plan.reload).map(String::as_str));
        s.push(write_paths(
            &lines,
            sh!(" > {}.new && mv -f {}.new {}\n", PENDING, PENDING, PENDING),
        ));
    }
    s.push(sh!("sync\n"));
    for change in &plan.changes {
        match change.change {
            Change::Delete => s.push(sh!("rm -f -- {}\n", change.path)),
            _ => s.push(sh!("mv -f -- {} {}\n", staged(&change.path), change.path)),
        }
    }
    let manifest: Vec<&str> = files.files.iter().map(|f| f.path.as_str()).collect();
    s.push(write_paths(
        &manifest,
        sh!(
            " > {}.new && mv -f {}.new {}\n",
            MANIFEST,
            MANIFEST,
            MANIFEST
        ),
    ));
    s.push(sh!("sync\necho synprov-written\n}\nsynprov_write\n"));
    s
}

/// One deployment directory and the files of it to fetch.
pub struct Fetch<'a> {
    pub dir: &'a str,
    pub paths: Vec<&'a str>,
}

/// The largest file whose contents are fetched for a diff: past it, the host sends its size
/// alone and the plan shows the file as changed with its size, without a diff. A file
/// synprov renders is far smaller; a bigger one on a host is not read into memory whole.
pub const MAX_DIFF_BYTES: u64 = 1 << 20;

/// The largest copy of a file a rollback reads back from a generation: the largest a
/// rendered file can be (an inventory's `homeserver` table is at most
/// [`crate::inventory::MAX_INVENTORY_BYTES`]).
pub const MAX_COPY_BYTES: u64 = crate::inventory::MAX_INVENTORY_BYTES;

/// A file as [`fetch_script`] read it from a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Text(String),
    /// Larger than the fetch's limit: only its size was sent.
    TooLarge {
        bytes: u64,
    },
}

impl Fetched {
    /// The contents, when they were sent.
    pub fn text(&self) -> Option<&str> {
        match self {
            Fetched::Text(text) => Some(text),
            Fetched::TooLarge { .. } => None,
        }
    }
}

/// Prints the current contents of the files of `fetches`, for the diff: a `### N` line
/// before the files of the `N`th, then for each file present a `=== ` line with its path
/// and its contents, both base64 (so that no path or contents can pass for a marker). A
/// file over `limit` bytes is not sent: a `size N` line stands for it (never a line of
/// base64, which holds no space), and however it grows meanwhile, no more than `limit` + 1
/// of its bytes are read. Only regular files are read, never through a link
/// ([`crate::confine`]): a refusal ends the script with the guard's status, 77.
pub fn fetch_script(fetches: &[Fetch], limit: u64) -> Script {
    let mut s = sh!(
        "synprov_fetch() {\nn=$(($(wc -c < \"$1\")))\nif [ \"$n\" -gt {} ]; then echo \"size $n\"; else head -c {} < \"$1\" | base64; fi\n}\n",
        limit.to_string(),
        (limit + 1).to_string()
    );
    for (index, fetch) in fetches.iter().enumerate() {
        s.push(sh!("echo {}\n(\n", format!("### {index}")));
        s.push(confine::enter_if_present(fetch.dir));
        for path in &fetch.paths {
            s.push(sh!(
                "{} && { echo {}; synprov_fetch {}; }\n",
                confine::regular(path),
                format!("=== {}", STANDARD.encode(path)),
                path
            ));
        }
        s.push(sh!(") || [ $? -ne 77 ] || exit 77\n"));
    }
    s.push(sh!("exit 0\n"));
    s
}

/// Reads `fetch_script`'s output: the contents by path, by index of the fetch; a file the
/// host sent more than `limit` bytes of, or only a size, is [`Fetched::TooLarge`]. Anything
/// else in it (a host's noise, broken base64) is skipped.
pub fn parse_fetch(output: &str, limit: u64) -> BTreeMap<usize, BTreeMap<String, Fetched>> {
    let mut out: BTreeMap<usize, BTreeMap<String, Fetched>> = BTreeMap::new();
    let mut section: Option<usize> = None;
    let mut current: Option<(String, String, Option<u64>)> = None;
    let mut finish = |section: Option<usize>, entry: Option<(String, String, Option<u64>)>| {
        let (Some(index), Some((path, data, size))) = (section, entry) else {
            return;
        };
        let fetched = match size {
            Some(bytes) => Fetched::TooLarge { bytes },
            None => match STANDARD.decode(data.as_bytes()) {
                Ok(bytes) if bytes.len() as u64 > limit => Fetched::TooLarge {
                    bytes: bytes.len() as u64,
                },
                Ok(bytes) => Fetched::Text(String::from_utf8_lossy(&bytes).into_owned()),
                Err(_) => return,
            },
        };
        out.entry(index).or_default().insert(path, fetched);
    };
    for line in output.lines() {
        if let Some(index) = line.strip_prefix("### ") {
            finish(section, current.take());
            section = index.trim().parse().ok();
        } else if let Some(path) = line.strip_prefix("=== ") {
            finish(section, current.take());
            current = STANDARD.decode(path.trim()).ok().map(|p| {
                (
                    String::from_utf8_lossy(&p).into_owned(),
                    String::new(),
                    None,
                )
            });
        } else if let Some((_, data, size)) = current.as_mut() {
            match line.strip_prefix("size ") {
                Some(bytes) => *size = bytes.trim().parse().ok().filter(|&n| n > limit),
                None => data.push_str(line.trim()),
            }
        }
    }
    finish(section, current);
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::confine::tests::run;
    use crate::render::{RenderedDir, RenderedFile};

    fn file(path: &str, contents: &str, mode: u32) -> RenderedFile {
        RenderedFile::for_test(path, contents, mode)
    }

    fn deployment(dir: &str, files: Vec<RenderedFile>, dirs: Vec<RenderedDir>) -> DeploymentFiles {
        DeploymentFiles::for_test(dir, files, dirs)
    }

    /// [`run`], which must succeed.
    fn run_ok(script: &Script, cwd: &Path, path: Option<&Path>) {
        let out = run(script, cwd, path);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

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
    fn the_write_script_quotes_every_value_and_writes_under_umask_077() {
        let mut secret = file("a;b", "k", 0o600);
        secret.owner = Some((1000, 1000));
        let files = deployment(
            "/opt/it's",
            vec![secret, file("sub/$(x)", "c", 0o644)],
            vec![RenderedDir {
                path: "logs/-n".into(),
                mode: 0o750,
                owner: Some((1000, 1000)),
            }],
        );
        let plan = DeploymentPlan::for_test(
            "/opt/it's",
            &[
                ("a;b", Change::Create),
                ("sub/$(x)", Change::Update),
                ("old'", Change::Delete),
            ],
            &["s v"],
        );
        assert_eq!(
            write_script(&files, &plan, true).text(),
            [
                "trap '' HUP PIPE\nsynprov_write() {\nset -e\numask 077\n\
                 mkdir -p -m 755 -- /opt '/opt/it'\\''s'\n",
                confine::enter("/opt/it's").text(),
                "synprov_dir .synprov\nmkdir -p .synprov && chmod 700 .synprov\n\
                 synprov_dir logs\nmkdir -p -m 755 -- logs\n\
                 synprov_path d logs/-n directory\n\
                 mkdir -p -m 750 -- logs/-n && chmod 750 -- logs/-n && chown 1000:1000 -- logs/-n\n\
                 synprov_dir sub\nmkdir -p -m 755 -- sub\n\
                 synprov_path f 'a;b' 'regular file'\n\
                 rm -f -- '.a;b.synprov-new'\n\
                 base64 -d > '.a;b.synprov-new' <<'SYNPROV_EOF'\naw==\nSYNPROV_EOF\n\
                 chmod 600 -- '.a;b.synprov-new'\n\
                 chown 1000:1000 -- '.a;b.synprov-new'\n\
                 synprov_path f 'sub/$(x)' 'regular file'\n\
                 rm -f -- 'sub/.$(x).synprov-new'\n\
                 base64 -d > 'sub/.$(x).synprov-new' <<'SYNPROV_EOF'\nYw==\nSYNPROV_EOF\n\
                 chmod 644 -- 'sub/.$(x).synprov-new'\n\
                 synprov_path f 'old'\\''' 'regular file'\n\
                 printf '%s\\0' up 's v' > .synprov/pending.new && mv -f .synprov/pending.new .synprov/pending\n\
                 sync\n\
                 mv -f -- '.a;b.synprov-new' 'a;b'\n\
                 mv -f -- 'sub/.$(x).synprov-new' 'sub/$(x)'\n\
                 rm -f -- 'old'\\'''\n\
                 printf '%s\\0' 'a;b' 'sub/$(x)' > .synprov/manifest.new && mv -f .synprov/manifest.new .synprov/manifest\n\
                 sync\necho synprov-written\n}\nsynprov_write\n"
            ]
            .concat()
        );
    }

    /// Paths no plugin may give today (render refuses them), but the scripts must not
    /// depend on that: the heredoc delimiter, a line break, command substitutions, quotes,
    /// a leading dash.
    const HOSTILE: [&str; 6] = [
        "SYNPROV_EOF",
        "a\nb",
        "$(touch x)",
        "-rf",
        "sub/`touch y`",
        "p'q",
    ];

    #[test]
    fn hostile_paths_are_written_listed_and_rolled_back_exactly_and_run_nothing() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("d'ir;$(touch M)\n -x");
        let dir_text = dir.to_str().unwrap();
        let first: Vec<RenderedFile> = HOSTILE
            .iter()
            .map(|p| file(p, &format!("first {p}\n"), 0o644))
            .collect();
        let files = deployment(dir_text, first.clone(), Vec::new());
        let creates: Vec<(&str, Change)> = HOSTILE.iter().map(|p| (*p, Change::Create)).collect();
        run_ok(
            &write_script(
                &files,
                &DeploymentPlan::for_test(dir_text, &creates, &[]),
                true,
            ),
            base.path(),
            None,
        );
        let listed: Vec<u8> = HOSTILE
            .iter()
            .flat_map(|p| [p.as_bytes(), b"\0"].concat())
            .collect();
        assert_eq!(std::fs::read(dir.join(MANIFEST)).unwrap(), listed);
        for path in HOSTILE {
            assert_eq!(
                std::fs::read_to_string(dir.join(path)).unwrap(),
                format!("first {path}\n")
            );
        }
        let nothing_ran = || {
            let names: Vec<_> = std::fs::read_dir(base.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                names,
                [dir.file_name().unwrap()],
                "only the deploy directory"
            );
            for marker in ["x", "y", "M", "sub/x", "sub/y"] {
                assert!(!dir.join(marker).exists(), "{marker} was created");
            }
        };
        nothing_ran();

        // A second apply changes one file and removes another, still running nothing.
        let mut second = first.clone();
        second[2].contents = "second\n".into();
        second.remove(1);
        let files = deployment(dir_text, second, Vec::new());
        let changes = [(HOSTILE[2], Change::Update), (HOSTILE[1], Change::Delete)];
        run_ok(
            &write_script(
                &files,
                &DeploymentPlan::for_test(dir_text, &changes, &[]),
                true,
            ),
            base.path(),
            None,
        );
        assert!(!dir.join(HOSTILE[1]).exists());
        assert_eq!(
            std::fs::read_to_string(dir.join(HOSTILE[2])).unwrap(),
            "second\n"
        );

        let listed: Vec<u8> = HOSTILE
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .flat_map(|(_, p)| [p.as_bytes(), b"\0"].concat())
            .collect();
        assert_eq!(std::fs::read(dir.join(MANIFEST)).unwrap(), listed);
        nothing_ran();
    }

    #[test]
    fn a_secret_file_is_never_readable_by_others_not_even_before_its_chmod() {
        let base = tempfile::tempdir().unwrap();
        // A `chmod` that first records the mode of each file it is about to change.
        let bin = base.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join("chmod"))
            .find(|p| p.is_file())
            .unwrap();
        let log = base.path().join("modes");
        std::fs::write(
            bin.join("chmod"),
            format!(
                "#!/bin/sh\nfor a; do [ -f \"$a\" ] && stat -c '%a %n' -- \"$a\" >> '{}'; done\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(bin.join("chmod"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let dir = base.path().join("d");
        let dir_text = dir.to_str().unwrap();
        // A world-readable staged file left by an interrupted run.
        std::fs::create_dir_all(dir.join("synapse")).unwrap();
        let leftover = dir.join("synapse/.key.synprov-new");
        std::fs::write(&leftover, "old").unwrap();
        std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).unwrap();
        let files = deployment(
            dir_text,
            vec![
                file("synapse/key", "secret", 0o600),
                file("new/public", "p", 0o644),
            ],
            vec![RenderedDir {
                path: "media".into(),
                mode: 0o750,
                owner: None,
            }],
        );
        let changes = [
            ("synapse/key", Change::Create),
            ("new/public", Change::Create),
        ];
        run_ok(
            &write_script(
                &files,
                &DeploymentPlan::for_test(dir_text, &changes, &[]),
                false,
            ),
            base.path(),
            Some(&bin),
        );
        let modes = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            modes
                .lines()
                .filter(|l| l.ends_with(".key.synprov-new"))
                .collect::<Vec<_>>(),
            ["600 synapse/.key.synprov-new"],
            "{modes}"
        );
        assert_eq!(mode(&dir.join("synapse/key")), 0o600);
        assert_eq!(mode(&dir.join("new/public")), 0o644);
        assert_eq!(mode(&dir.join("new")), 0o755);
        assert_eq!(mode(&dir.join("media")), 0o750);
        assert_eq!(mode(&dir.join(".synprov")), 0o700);
        assert_eq!(mode(&dir.join(MANIFEST)), 0o600);
    }

    /// A link where the write script would act (a managed file, the directory of one, a
    /// directory a container writes in, `.synprov`) is refused before any file is renamed
    /// or removed, and the canary beside the deploy directory stays as it was; the fetch
    /// for the diff refuses it too, printing nothing of what it points to.
    #[test]
    fn links_in_the_deployment_are_refused_by_the_write_and_the_fetch_never_followed() {
        use crate::confine::tests::{CANARY_TEXT, Canary};
        for link in [
            "synapse/homeserver.yaml",
            "synapse",
            "logs/main",
            ".synprov",
        ] {
            let base = tempfile::tempdir().unwrap();
            let canary = Canary::beside(base.path());
            let dir = base.path().join("d");
            let dir_text = dir.to_str().unwrap();
            let files = deployment(
                dir_text,
                vec![
                    file("a.yaml", "new a\n", 0o644),
                    file("synapse/homeserver.yaml", "new\n", 0o600),
                ],
                vec![RenderedDir {
                    path: "logs/main".into(),
                    mode: 0o750,
                    owner: None,
                }],
            );
            std::fs::create_dir_all(dir.join("synapse")).unwrap();
            std::fs::create_dir_all(dir.join("logs")).unwrap();
            std::fs::create_dir_all(dir.join(".synprov")).unwrap();
            std::fs::write(dir.join("a.yaml"), "old a\n").unwrap();
            std::fs::write(dir.join("old.yaml"), "old\n").unwrap();
            let planted = dir.join(link);
            let _ = std::fs::remove_dir_all(&planted);
            let _ = std::fs::remove_file(&planted);
            let target = if link.contains('/') && link != "logs/main" {
                canary.dir.join("file")
            } else {
                canary.dir.clone()
            };
            std::os::unix::fs::symlink(&target, &planted).unwrap();
            let plan = DeploymentPlan::for_test(
                dir_text,
                &[
                    ("a.yaml", Change::Update),
                    ("synapse/homeserver.yaml", Change::Update),
                    ("old.yaml", Change::Delete),
                ],
                &[],
            );
            let out = run(&write_script(&files, &plan, true), base.path(), None);
            let said = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(crate::confine::REFUSED),
                "{link}: {said}"
            );
            let named = std::fs::canonicalize(&dir).unwrap().join(link);
            assert!(
                said.contains(&format!("{}: it is a symbolic link", named.display())),
                "{link}: {said}"
            );
            assert_eq!(
                std::fs::read_to_string(dir.join("a.yaml")).unwrap(),
                "old a\n"
            );
            assert!(dir.join("old.yaml").exists(), "{link}: a file was removed");
            canary.assert_untouched();

            let fetch = Fetch {
                dir: dir_text,
                paths: vec!["a.yaml", "synapse/homeserver.yaml"],
            };
            let out = run(&fetch_script(&[fetch], MAX_DIFF_BYTES), base.path(), None);
            if link.starts_with("synapse") {
                assert_eq!(out.status.code(), Some(crate::confine::REFUSED), "{link}");
            } else {
                assert!(out.status.success(), "{link}: the fetch does not go there");
            }
            let printed = parse_fetch(&String::from_utf8_lossy(&out.stdout), MAX_DIFF_BYTES);
            assert!(
                !format!("{printed:?}").contains(CANARY_TEXT.trim()),
                "{link}: {printed:?}"
            );
            canary.assert_untouched();
        }
    }

    #[test]
    fn the_fetch_script_quotes_paths_and_frames_them_in_base64() {
        let fetches = [Fetch {
            dir: "/opt/it's",
            paths: vec!["a\n=== b", "-x"],
        }];
        assert_eq!(
            fetch_script(&fetches, 100).text(),
            [
                "synprov_fetch() {\nn=$(($(wc -c < \"$1\")))\n\
                 if [ \"$n\" -gt 100 ]; then echo \"size $n\"; else head -c 101 < \"$1\" | base64; fi\n}\n\
                 echo '### 0'\n(\n",
                confine::enter_if_present("/opt/it's").text(),
                "synprov_regular 'a\n=== b' && { echo '=== YQo9PT0gYg=='; synprov_fetch 'a\n=== b'; }\n\
                 synprov_regular -x && { echo '=== LXg='; synprov_fetch -x; }\n\
                 ) || [ $? -ne 77 ] || exit 77\nexit 0\n"
            ]
            .concat()
        );
    }

    #[test]
    fn fetched_contents_round_trip_whatever_the_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "one\ntwo\n").unwrap();
        std::fs::write(dir.path().join("b\n### 1\n=== x"), "three").unwrap();
        let d = dir.path().to_str().unwrap();
        let fetches = [
            Fetch {
                dir: d,
                paths: vec!["a", "missing"],
            },
            Fetch {
                dir: "/nonexistent",
                paths: vec!["a"],
            },
            Fetch {
                dir: d,
                paths: vec!["b\n### 1\n=== x"],
            },
        ];
        let out = run(&fetch_script(&fetches, 100), dir.path(), None);
        let fetched = parse_fetch(&String::from_utf8_lossy(&out.stdout), 100);
        assert_eq!(fetched.len(), 2, "{fetched:?}");
        assert_eq!(fetched[&0].len(), 1);
        assert_eq!(fetched[&0]["a"], Fetched::Text("one\ntwo\n".into()));
        assert_eq!(
            fetched[&2]["b\n### 1\n=== x"],
            Fetched::Text("three".into())
        );
    }

    #[test]
    fn a_file_over_the_limit_is_sent_as_its_size_never_whole() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 1000;
        std::fs::write(dir.path().join("at"), "a".repeat(limit)).unwrap();
        std::fs::write(dir.path().join("over"), "b".repeat(limit + 1)).unwrap();
        std::fs::write(dir.path().join("big"), "c".repeat(4 << 20)).unwrap();
        let fetches = [Fetch {
            dir: dir.path().to_str().unwrap(),
            paths: vec!["at", "over", "big"],
        }];
        let out = run(&fetch_script(&fetches, limit as u64), dir.path(), None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The file at the limit is sent, base64 (4/3 of it and line breaks); the others not.
        assert!(
            out.stdout.len() < 2 * limit,
            "{} bytes printed",
            out.stdout.len()
        );
        let fetched = parse_fetch(&String::from_utf8_lossy(&out.stdout), limit as u64);
        assert_eq!(fetched[&0]["at"], Fetched::Text("a".repeat(limit)));
        assert_eq!(fetched[&0]["over"], Fetched::TooLarge { bytes: 1001 });
        assert_eq!(fetched[&0]["big"], Fetched::TooLarge { bytes: 4 << 20 });
    }

    #[test]
    fn a_host_that_sends_more_than_the_limit_or_a_small_size_is_not_believed() {
        let text = STANDARD.encode("x".repeat(11));
        let hostile = format!("### 0\n=== YQ==\n{text}\n=== Yg==\nsize 3\n=== Yw==\nsize 12\n");
        let fetched = parse_fetch(&hostile, 10);
        assert_eq!(fetched[&0]["a"], Fetched::TooLarge { bytes: 11 });
        assert_eq!(fetched[&0]["b"], Fetched::Text(String::new()));
        assert_eq!(fetched[&0]["c"], Fetched::TooLarge { bytes: 12 });
    }

    #[test]
    fn fetch_output_that_is_not_well_formed_is_skipped_without_panicking() {
        let long = "A".repeat(1 << 20);
        let hostile = format!(
            "=== YQ==\nYWJj\n### x\n=== !!!\nabc\n### 0\n=== YQ==\n@@@\n\
             ### 99999999999999999999\n=== Yg==\n{long}\n### 1\n=== Yw==\nYWJj\n"
        );
        let fetched = parse_fetch(&hostile, MAX_DIFF_BYTES);
        assert_eq!(fetched.len(), 1, "{:?}", fetched.keys());
        assert_eq!(fetched[&1]["c"], Fetched::Text("abc".into()));
    }
}
