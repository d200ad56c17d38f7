//! The `local` transport runs the same steps on this machine: an apply writes the files, a
//! second finds nothing to change, and plan agrees.

mod common;

use std::path::Path;

use common::{files, inventory, synprov};
use synprov::generations::Origin;
use synprov::transport::Locking;

#[test]
fn a_local_apply_writes_the_files_and_a_second_changes_nothing() {
    let deploy = tempfile::tempdir().unwrap();
    let (dir, path) = inventory(&format!(
        "[hosts.here]\ntransport = \"local\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"here\"\ndeploy_dir = \"{}\"\n",
        deploy.path().join("d").display()
    ));
    let apply = synprov(dir.path())
        .args(["apply", "--files-only"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    let written = files(&deploy.path().join("d"));
    assert!(
        written
            .iter()
            .any(|f| f.ends_with("synapse/homeserver.yaml"))
    );
    assert!(written.iter().any(|f| f.ends_with(".synprov/manifest")));

    let again = synprov(dir.path())
        .args(["apply", "--files-only"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 change(s) applied"));
    let plan = synprov(dir.path()).arg("plan").arg(&path).output().unwrap();
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(out.contains("33 file(s) unchanged"), "{out}");
}

/// The deploy directory reaches the lock as data: quotes, `;`, `$(...)` and a line break in
/// it run nothing, and the lock file is created at that exact path.
#[test]
fn a_hostile_deploy_dir_is_locked_at_its_exact_path_and_runs_nothing() {
    let base = tempfile::tempdir().unwrap();
    let (_dir, path) = inventory(
        "[hosts.here]\ntransport = \"local\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"here\"\ndeploy_dir = \"/opt/d\"\n",
    );
    let loaded = synprov::inventory::load(&path).unwrap();
    let connection = synprov::transport::Connection::open(
        &loaded.hosts["here"],
        &synprov::transport::ConnectOptions::default(),
    )
    .unwrap();
    let holder = Origin::here("apply", None).holder();
    let marker = base.path().join("pwned");
    let m = marker.display();
    for hostile in [
        format!("x;touch${{IFS}}{m};"),
        format!("x'; touch {m}; '"),
        format!("x$(touch {m})`touch {m}`"),
        format!("x\ntouch {m}\n"),
        format!("x\"; touch {m}; \""),
    ] {
        let dir = base.path().join("sub").join(&hostile);
        let dir = dir.to_str().unwrap();
        let lock = connection.lock(dir, &holder).unwrap();
        assert!(matches!(lock, Locking::Taken(_)), "{hostile:?}");
        assert!(
            Path::new(dir).join(".synprov/lock").is_file(),
            "{hostile:?}"
        );
        assert!(!marker.exists(), "{hostile:?} ran a command");
        // Held: a second lock of the same directory fails at once, naming the holder.
        assert!(
            matches!(connection.lock(dir, &holder).unwrap(), Locking::Busy(Some(r)) if r.holder == holder),
            "{hostile:?}"
        );
        drop(lock);
        assert!(matches!(
            connection.lock(dir, &holder).unwrap(),
            Locking::Taken(_)
        ));
    }
}
