//! The guard that keeps every host script inside its deploy directory: no write, read,
//! chmod, chown, append, delete or `mkdir` of synprov's follows a symbolic link out of it.
//!
//! The containers' users write in their data directories (logs, media, sockets, Redis',
//! Postgres') and in files they own; a compromised container must not be able to turn the
//! next run of synprov, as root, into an act outside its own data. So synprov's own
//! directories (the deploy directory, `.synprov` and everything in it, the parents of every
//! managed file) are the user's running the script (root) and writable by nobody else, and
//! a script checks that, component by component from the deploy directory down, before it
//! acts on a path there: no component a link, each directory owned by that user and not
//! writable by group or others. As only that user can change such a directory, nothing can
//! be swapped between the check and the act. In a directory a container writes in, synprov
//! acts on the directory itself only (never through it), after checking that it is a
//! directory and no link; `rm -rf` and `rm -f` never follow a link they remove.
//!
//! Each script starts with [`enter`] (or [`enter_if_present`]), which defines the guard's
//! shell functions, changes into the physical deploy directory and checks it; then
//! [`dir`], [`file`], [`data_dir`] and [`regular`] check the paths it is about to act on.
//! A refusal names the path and why on standard error and ends the script with
//! [`REFUSED`].

use crate::sh;
use crate::shell::Script;

/// The exit status of a script that refused a path.
pub const REFUSED: i32 = 77;

/// The guard's shell functions. Paths are relative to the working directory, the deploy
/// directory, which `synprov_here` checks first; `synprov_ok` remembers the directories
/// already checked (as `//./a//./a/b//`: no checked path holds `//`), so a script of many
/// files examines each directory once.
fn functions() -> Script {
    sh!(r#"synprov_refuse() {
printf 'synprov: refusing to act on %s: %s. synprov acts only where no one but %s can put a link: find out how it got there, then remove it or make the directory %s'\''s alone (chown, chmod go-w)\n' "$1" "$2" "$(id -un)" "$(id -un)" >&2
exit 77
}
synprov_owned() {
synprov_s=$(stat -c '%u %a' -- "$1") || synprov_refuse "$2" 'it cannot be examined'
[ "${synprov_s%% *}" = "$synprov_uid" ] || synprov_refuse "$2" "it is a directory of uid ${synprov_s%% *}"
[ $((0${synprov_s#* } & 022)) -eq 0 ] || synprov_refuse "$2" "others may write in it (mode ${synprov_s#* })"
}
synprov_here() {
synprov_root=$(pwd -P) && synprov_uid=$(id -u) || exit 77
synprov_ok=//
synprov_owned . "$synprov_root"
}
synprov_dir() {
case /$1/ in */../*) synprov_refuse "$synprov_root/$1" 'it goes up with ..' ;; esac
synprov_p=.
synprov_ifs=$IFS
IFS=/
set -f
for synprov_c in $1; do
IFS=$synprov_ifs
case $synprov_c in ''|.) continue ;; esac
synprov_p=$synprov_p/$synprov_c
case $synprov_ok in *"//$synprov_p//"*) continue ;; esac
if [ -L "$synprov_p" ]; then synprov_refuse "$synprov_root/${synprov_p#./}" 'it is a symbolic link'; fi
[ -e "$synprov_p" ] || break
[ -d "$synprov_p" ] || synprov_refuse "$synprov_root/${synprov_p#./}" 'it is not a directory'
synprov_owned "$synprov_p" "$synprov_root/${synprov_p#./}"
synprov_ok=$synprov_ok$synprov_p//
done
IFS=$synprov_ifs
set +f
}
synprov_path() {
case /$2/ in *//*|*/./*|*/../*) synprov_refuse "$2" 'it is not a plain path inside the deploy directory' ;; esac
case $2 in */*) synprov_dir "${2%/*}" ;; esac
if [ -L "./$2" ]; then synprov_refuse "$synprov_root/$2" 'it is a symbolic link'; fi
if [ -e "./$2" ] && [ ! "-$1" "./$2" ]; then synprov_refuse "$synprov_root/$2" "it is not a $3"; fi
}
synprov_regular() {
synprov_path f "$1" 'regular file'
[ -f "./$1" ]
}
"#)
}

/// The guard's functions, then the physical deploy directory `dir` entered and checked;
/// a directory that cannot be entered ends the script (status 1).
pub fn enter(dir: &str) -> Script {
    let mut s = functions();
    s.push(sh!("cd -P -- {} || exit 1\nsynprov_here\n", dir));
    s
}

/// As [`enter`], but a deploy directory that does not exist ends the script quietly
/// (status 0): for the scripts that only read, or only note what is there.
pub fn enter_if_present(dir: &str) -> Script {
    let mut s = functions();
    s.push(sh!(
        "cd -P -- {} 2>/dev/null || exit 0\nsynprov_here\n",
        dir
    ));
    s
}

/// Checks the directory `path` (relative to the deploy directory) and each above it, as
/// far as they exist: none a link, each the user's alone. What does not exist yet is
/// created by the script, in a directory no one else can write in.
pub fn dir(path: &str) -> Script {
    sh!("synprov_dir {}\n", path)
}

/// Checks the directories above the file `path` as [`dir`] does, and that `path` is no
/// link and, when it exists, a regular file: a file to write (staged beside it, renamed
/// over it), append to, or remove.
pub fn file(path: &str) -> Script {
    sh!("synprov_path f {} 'regular file'\n", path)
}

/// Checks the directories above `path` as [`dir`] does, and that `path`, a directory a
/// container writes in, is no link and, when it exists, a directory: synprov then acts on
/// it (`chmod`, `chown`, `rm -rf`), never through it.
pub fn data_dir(path: &str) -> Script {
    sh!("synprov_path d {} directory\n", path)
}

/// A condition, true when `path` is a regular file to read (checked as [`file`] does); a
/// missing file is false, a link refused.
pub fn regular(path: &str) -> Script {
    sh!("synprov_regular {}", path)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::path::{Path, PathBuf};

    use super::*;

    /// Runs `script` as the transport does (`sh -s`, the script on standard input) in `cwd`,
    /// with `path` first on PATH when given.
    pub(crate) fn run(script: &Script, cwd: &Path, path: Option<&Path>) -> std::process::Output {
        use std::io::Write;
        let mut command = std::process::Command::new("sh");
        command
            .arg("-s")
            .current_dir(cwd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(dir) = path {
            let old = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![dir.to_path_buf()];
            paths.extend(std::env::split_paths(&old));
            command.env("PATH", std::env::join_paths(paths).unwrap());
        }
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// A directory beside the deploy directory that no script may touch: its entries with
    /// their contents, modes, owners and times, to compare before and after.
    pub(crate) struct Canary {
        pub dir: PathBuf,
        before: BTreeMap<PathBuf, String>,
    }

    pub(crate) const CANARY_TEXT: &str = "canary contents, never to be read\n";

    impl Canary {
        pub(crate) fn beside(base: &Path) -> Canary {
            let dir = base.join("canary");
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::write(dir.join("file"), CANARY_TEXT).unwrap();
            std::fs::write(dir.join("sub/file"), CANARY_TEXT).unwrap();
            std::fs::set_permissions(dir.join("file"), std::fs::Permissions::from_mode(0o640))
                .unwrap();
            let before = Canary::snapshot(&dir);
            Canary { dir, before }
        }

        fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
            let mut out = BTreeMap::new();
            let mut stack = vec![dir.to_path_buf()];
            while let Some(path) = stack.pop() {
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let contents = if meta.is_file() {
                    std::fs::read_to_string(&path).unwrap()
                } else {
                    String::new()
                };
                out.insert(
                    path.clone(),
                    format!(
                        "{:o} {}:{} {} {}",
                        meta.mode(),
                        meta.uid(),
                        meta.gid(),
                        meta.mtime_nsec(),
                        contents
                    ),
                );
                if meta.is_dir() {
                    stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                }
            }
            out
        }

        pub(crate) fn assert_untouched(&self) {
            assert_eq!(
                Canary::snapshot(&self.dir),
                self.before,
                "the canary changed"
            );
        }
    }

    fn plant(link: &Path, target: &Path) {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(target, link).unwrap();
    }

    fn checks(checks: &[Script]) -> Script {
        let mut s = enter("d");
        for check in checks {
            s.push(check.clone());
        }
        s.push(sh!("echo passed\n"));
        s
    }

    /// A deploy directory `d` with `synapse/` in it, and a canary beside it.
    fn deployment() -> (tempfile::TempDir, PathBuf, Canary) {
        let base = tempfile::tempdir().unwrap();
        let d = base.path().join("d");
        std::fs::create_dir_all(d.join("synapse")).unwrap();
        std::fs::create_dir_all(d.join(".synprov")).unwrap();
        std::fs::write(d.join("synapse/homeserver.yaml"), "x").unwrap();
        let canary = Canary::beside(base.path());
        (base, d, canary)
    }

    fn refusal(out: &std::process::Output) -> String {
        assert_eq!(out.status.code(), Some(REFUSED), "not refused");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("passed"));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[test]
    fn the_guard_builders_quote_their_paths() {
        assert_eq!(dir("a b/$(x)").text(), "synprov_dir 'a b/$(x)'\n");
        assert_eq!(file("-rf").text(), "synprov_path f -rf 'regular file'\n");
        assert_eq!(
            data_dir("logs/main").text(),
            "synprov_path d logs/main directory\n"
        );
        assert_eq!(regular("a'b").text(), "synprov_regular 'a'\\''b'");
        assert!(
            enter("/opt/it's")
                .text()
                .ends_with("}\ncd -P -- '/opt/it'\\''s' || exit 1\nsynprov_here\n")
        );
        assert!(
            enter_if_present("/opt/s")
                .text()
                .ends_with("}\ncd -P -- /opt/s 2>/dev/null || exit 0\nsynprov_here\n")
        );
    }

    #[test]
    fn plain_paths_of_the_deployment_pass() {
        let (base, _d, canary) = deployment();
        let out = run(
            &checks(&[
                dir(".synprov/generations/1"),
                file("synapse/homeserver.yaml"),
                file("synapse/workers/new.yaml"),
                file("-rf"),
                data_dir("logs/main"),
                sh!("{} && echo regular\n", regular("synapse/homeserver.yaml")),
                sh!("{} || echo missing\n", regular("synapse/none")),
            ]),
            base.path(),
            None,
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "regular\nmissing\npassed\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        canary.assert_untouched();
    }

    #[test]
    fn a_link_anywhere_on_the_way_is_refused_and_named() {
        for (link, check) in [
            (".synprov", dir(".synprov/generations")),
            (".synprov", file(".synprov/lock")),
            (".synprov/audit.log", file(".synprov/audit.log")),
            ("synapse/homeserver.yaml", file("synapse/homeserver.yaml")),
            (
                "synapse/homeserver.yaml",
                sh!("{} || :\n", regular("synapse/homeserver.yaml")),
            ),
            ("synapse/workers", file("synapse/workers/main.yaml")),
            ("logs", data_dir("logs/main")),
            ("logs/main", data_dir("logs/main")),
        ] {
            let (base, d, canary) = deployment();
            let _ = std::fs::remove_file(d.join(link));
            let _ = std::fs::remove_dir_all(d.join(link));
            plant(&d.join(link), &canary.dir.join("file"));
            let said = refusal(&run(&checks(&[check]), base.path(), None));
            let named = std::fs::canonicalize(&d).unwrap().join(link);
            assert!(
                said.contains(&format!(
                    "refusing to act on {}: it is a symbolic link",
                    named.display()
                )),
                "{link}: {said}"
            );
            canary.assert_untouched();
        }
    }

    #[test]
    fn a_directory_others_may_write_in_or_own_is_refused() {
        let (base, d, _canary) = deployment();
        std::fs::set_permissions(d.join("synapse"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let said = refusal(&run(
            &checks(&[file("synapse/homeserver.yaml")]),
            base.path(),
            None,
        ));
        assert!(said.contains("others may write in it (mode 777)"), "{said}");

        let (base, d, _canary) = deployment();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o775)).unwrap();
        let said = refusal(&run(&checks(&[]), base.path(), None));
        assert!(said.contains("others may write in it (mode 775)"), "{said}");

        // A data directory is the container's: acted on, never through.
        let (base, d, _canary) = deployment();
        std::fs::create_dir_all(d.join("media")).unwrap();
        std::fs::set_permissions(d.join("media"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let out = run(&checks(&[data_dir("media")]), base.path(), None);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "passed\n");
        let said = refusal(&run(&checks(&[file("media/x")]), base.path(), None));
        assert!(said.contains("/media: others may write in it"), "{said}");
    }

    #[test]
    fn paths_that_leave_the_deploy_directory_are_refused() {
        for path in ["/etc/passwd", "a/../../x", "../x", "a//b", "./a", ""] {
            let (base, _d, canary) = deployment();
            let said = refusal(&run(&checks(&[file(path)]), base.path(), None));
            assert!(
                said.contains("not a plain path inside the deploy directory"),
                "{path:?}: {said}"
            );
            canary.assert_untouched();
        }
        let (base, _d, _canary) = deployment();
        let said = refusal(&run(&checks(&[dir("a/../..")]), base.path(), None));
        assert!(said.contains("it goes up with .."), "{said}");
    }

    #[test]
    fn a_deploy_directory_reached_through_a_link_is_checked_where_it_is() {
        let (base, d, _canary) = deployment();
        symlink(&d, base.path().join("via")).unwrap();
        let mut s = enter("via");
        s.push(file("synapse/homeserver.yaml"));
        s.push(sh!("pwd\n"));
        let out = run(&s, base.path(), None);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            std::fs::canonicalize(&d).unwrap().to_str().unwrap()
        );
    }
}
