//! The `local` transport runs the same steps on this machine: an apply writes the files, a
//! second finds nothing to change, and plan agrees.

mod common;

use common::{files, inventory, synprov};

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
    assert!(out.contains("32 file(s) unchanged"), "{out}");
}
