//! The host lock over a real OpenSSH server on loopback: a run that finds it held names the
//! run holding it, `unlock` refuses while a run holds it and removes the record a dead run
//! left, and a holder that wrote no readable record is an unknown one.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::sshd::Sshd;
use synprov::transport::{Holder, LOCK_FILE, LockRecord, Locking};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that the command succeeded and printed `text`.
fn succeeded_saying(output: &Output, text: &str) {
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}{}", stderr(output));
    assert!(out.contains(text), "{text:?} not in:\n{out}");
}

/// Asserts that the command failed (exit status 1) saying `text` on stderr.
fn failed_saying(output: &Output, text: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    assert!(
        stderr(output).contains(text),
        "{text:?} not in:\n{}",
        stderr(output)
    );
}

/// Waits until the process `pid` is gone.
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "process {pid} did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_held_lock_names_its_holder_and_only_the_record_of_a_dead_holder_is_unlocked() {
    let sshd = Sshd::start();
    let deploy = sshd.path("deploy");
    let inventory = sshd.inventory(&deploy, "client_key", "");
    let connection = sshd.connect(&inventory);
    let holder = Holder {
        user: "alice".into(),
        controller: "laptop".into(),
        pid: 4242,
        command: "synprov apply".into(),
        since: chrono::Utc::now(),
    };
    let Locking::Taken(lock) = connection.lock(deploy.to_str().unwrap(), &holder).unwrap() else {
        panic!("the lock is free");
    };
    let record = std::fs::read_to_string(deploy.join(LOCK_FILE)).unwrap();
    let record = LockRecord::parse(&record).expect("one JSON line");
    assert_eq!(record.holder, holder);
    // `locked` is printed just before `exec cat`: the recorded process becomes `cat`.
    let comm = format!("/proc/{}/comm", record.host_pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&comm).unwrap() != "cat\n" {
        assert!(
            Instant::now() < deadline,
            "the recorded pid is not the lock's `cat`"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let named = format!(
        "loop: {} is locked by alice@laptop (pid 4242) since {}, running `synprov apply`",
        deploy.display(),
        holder.since.format("%H:%M UTC")
    );

    let started = Instant::now();
    let apply = sshd.run(&["apply", "--files-only"], &inventory);
    failed_saying(&apply, &named);
    failed_saying(
        &apply,
        &format!(
            "pid 4242 on laptop, or pid {} on loop, which holds the lock",
            record.host_pid
        ),
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it does not wait for the lock"
    );
    assert!(!deploy.join("synapse").exists(), "nothing written");

    let refused = sshd.run(&["unlock", "--host", "loop"], &inventory);
    failed_saying(&refused, &named);
    assert!(deploy.join(LOCK_FILE).exists(), "a held lock is left alone");

    // The holder dies on the host without a word (as in a crash): the flock goes with it,
    // its record stays.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &record.host_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_gone(record.host_pid);
    drop(lock);
    let unlock = sshd.run(
        &["unlock", "--host", "loop", "--deployment", "d"],
        &inventory,
    );
    succeeded_saying(
        &unlock,
        &format!(
            "[loop] d: no run held the lock: removed {}/.synprov/lock, left by alice@laptop (pid 4242)",
            deploy.display()
        ),
    );
    assert!(!deploy.join(LOCK_FILE).exists());
    let audit = std::fs::read_to_string(deploy.join(".synprov/audit.log")).unwrap();
    let last = audit.lines().last().unwrap();
    assert!(
        last.contains("\tunlock\t-\tok: removed the lock of alice@laptop (pid 4242)"),
        "{audit}"
    );

    let again = sshd.run(&["unlock", "--host", "loop"], &inventory);
    succeeded_saying(
        &again,
        &format!("d: no lock in {}: nothing to do", deploy.display()),
    );

    let apply = sshd.run(&["apply", "--files-only"], &inventory);
    assert!(apply.status.success(), "{}", stderr(&apply));
    assert!(deploy.join("synapse/homeserver.yaml").exists());
}

/// A lock held by a process that did not write a record synprov reads (here `flock` itself,
/// over a file of garbage) stops a run all the same, and is named as an unknown holder.
#[test]
fn a_lock_with_a_garbage_record_is_held_by_an_unknown_holder() {
    let sshd = Sshd::start();
    let deploy = sshd.path("deploy");
    let inventory = sshd.inventory(&deploy, "client_key", "");
    let lock_file = deploy.join(LOCK_FILE);
    std::fs::create_dir_all(lock_file.parent().unwrap()).unwrap();
    std::fs::write(&lock_file, "{\"holder\": \u{1b}[2J garbage\n\u{0}\u{ff}").unwrap();
    // It waits for the lock, which the loop below takes for an instant while it looks.
    let mut holding = std::process::Command::new(common::require("flock", "util-linux"))
        .arg(&lock_file)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::process::Command::new("flock")
        .args(["-n", lock_file.to_str().unwrap(), "true"])
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "flock did not take the lock");
        std::thread::sleep(Duration::from_millis(20));
    }

    let apply = sshd.run(&["apply", "--files-only"], &inventory);
    let named = format!("loop: {} is locked by an unknown holder", deploy.display());
    failed_saying(&apply, &named);
    assert!(!stderr(&apply).contains('\u{1b}'), "{}", stderr(&apply));
    failed_saying(&sshd.run(&["unlock", "--host", "loop"], &inventory), &named);

    drop(holding.stdin.take());
    assert!(holding.wait().unwrap().success());
    succeeded_saying(
        &sshd.run(&["unlock", "--host", "loop"], &inventory),
        "left by an unknown holder",
    );
}
