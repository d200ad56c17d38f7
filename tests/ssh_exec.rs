//! `logs` and `exec` over a real OpenSSH server on loopback: output streamed while the
//! remote command runs, exit statuses passed through, the
//! remote command stopped when synprov goes away; then the binary against a one-service
//! Compose stack in a real Docker, named from the generation the host recorded.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::sshd::Sshd;
use synprov::generations::{Origin, Record, scripts};
use synprov::ops::until_disconnected;
use synprov::shell::Command;
use synprov::transport::{ConnectOptions, Connection};

/// What a streamed command printed, with when each piece arrived.
#[derive(Default)]
struct Arrivals(Vec<(Instant, Vec<u8>)>);

impl Write for Arrivals {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push((Instant::now(), buf.to_vec()));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Arrivals {
    fn text(&self) -> String {
        String::from_utf8(self.0.iter().flat_map(|(_, b)| b.clone()).collect()).unwrap()
    }
}

/// An output whose reader has gone (`synprov logs | head -1` after the first line).
struct Closed;

impl Write for Closed {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A connection to `sshd`, in no step: no deadline bounds what it runs (`logs --follow`).
fn connect(sshd: &Sshd) -> Connection {
    let inventory = sshd.inventory(&sshd.path("deploy"), "client_key", "");
    let inventory = synprov::inventory::load(&inventory).unwrap();
    let options = ConnectOptions {
        known_hosts: sshd.path("known_hosts"),
        ..ConnectOptions::default()
    };
    Connection::open(&inventory.hosts["loop"], &options).unwrap()
}

/// A connection to this machine through the `local` transport.
fn local() -> Connection {
    let (_dir, path) = common::inventory(
        "[hosts.here]\ntransport = \"local\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"here\"\ndeploy_dir = \"/tmp/d\"\n",
    );
    let inventory = synprov::inventory::load(&path).unwrap();
    Connection::open(&inventory.hosts["here"], &ConnectOptions::default()).unwrap()
}

fn sh(dir: &Path, script: &str) -> synprov::shell::Script {
    until_disconnected(
        dir.to_str().unwrap(),
        Command::new("sh").arg("-c").arg(script),
    )
}

/// Output arrives while the command runs, stdout and stderr apart, and the exit status is
/// the command's.
fn streams_while_running(connection: &Connection, dir: &Path) {
    let script = sh(
        dir,
        "echo first; sleep 5; echo second >&2; echo third; pwd; exit 7",
    );
    let (mut out, mut err) = (Arrivals::default(), Arrivals::default());
    let start = Instant::now();
    let status = match connection.stream_script(&script, &mut out, &mut err) {
        Ok(status) => status,
        Err(error) => panic!("{error} (after {:?})", start.elapsed()),
    };
    assert_eq!(status, 7, "the exit status passes through");
    assert_eq!(out.text(), format!("first\nthird\n{}\n", dir.display()));
    assert_eq!(err.text(), "second\n");
    let first = out.0[0].0 - start;
    assert!(
        first < Duration::from_secs(4),
        "the first line came after {first:?}: not streamed"
    );
    assert!(start.elapsed() >= Duration::from_secs(5));
}

/// When synprov stops reading, the remote command is stopped and the call returns.
fn stops_when_synprov_goes(connection: &Connection, dir: &Path) {
    let pid_file = dir.join("sleeper.pid");
    let script = sh(
        dir,
        &format!(
            "echo $$ > {}; echo started; exec sleep 300",
            pid_file.display()
        ),
    );
    let start = Instant::now();
    let result = connection.stream_script(&script, &mut Closed, &mut std::io::sink());
    assert!(result.is_err(), "a closed output is an error");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "returned at once"
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{}", pid.trim())).exists() {
        assert!(
            Instant::now() < deadline,
            "the remote `sleep 300` (pid {}) outlived synprov",
            pid.trim()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ssh_streams_output_as_it_comes_and_passes_the_exit_status() {
    let sshd = Sshd::start();
    let dir = sshd.path("d;'$(id)");
    std::fs::create_dir(&dir).unwrap();
    streams_while_running(&connect(&sshd), &dir);
}

#[test]
fn ssh_stops_the_remote_command_when_synprov_stops_reading() {
    let sshd = Sshd::start();
    let dir = sshd.path("d");
    std::fs::create_dir(&dir).unwrap();
    stops_when_synprov_goes(&connect(&sshd), &dir);
}

#[test]
fn local_streams_and_stops_alike() {
    let dir = tempfile::tempdir().unwrap();
    let connection = local();
    streams_while_running(&connection, dir.path());
    stops_when_synprov_goes(&connection, dir.path());
}

/// A one-service stack in a real Docker, in place of the rendered one: its `synapse`
/// service prints four lines in three seconds, and writes them to its log file as Synapse
/// does (`logs/main/homeserver.log` on the host), then nothing (so that a `logs --follow`
/// left behind on the host would wait there forever). Taken down when dropped.
struct Stack {
    dir: PathBuf,
}

impl Stack {
    fn up(dir: &Path) -> Stack {
        common::require("docker", "apt-get install docker.io (and start dockerd)");
        common::compose();
        std::fs::write(
            dir.join("docker-compose.yml"),
            "services:\n  synapse:\n    image: synprov/debian-base:bookworm\n    init: true\n    \
             volumes:\n      - ./logs/main:/data/logs\n    command:\n      - sh\n      - -c\n      - |\n        \
             log() { echo \"$$1\"; echo \"$$(date -u '+%Y-%m-%d %H:%M:%S'),000 - synapse - 1 - INFO - - $$1\" >> /data/logs/homeserver.log; }\n        \
             log ready; for i in 1 2 3; do sleep 1; log tick; done; exec sleep infinity\n",
        )
        .unwrap();
        std::fs::write(
            dir.join(".env"),
            format!(
                "COMPOSE_PROJECT_NAME=synprov-ssh-exec-{}\n",
                std::process::id()
            ),
        )
        .unwrap();
        let stack = Stack {
            dir: dir.to_path_buf(),
        };
        let output = stack.compose(&["up", "-d"]);
        assert!(
            output.status.success(),
            "docker compose up failed (needs synprov/debian-base:bookworm: scripts/build-images.sh): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        stack
    }

    fn compose(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("docker")
            .args(["compose", "-f", "docker-compose.yml"])
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-t", "0"]);
    }
}

/// Records a generation of the rendered deployment in `deploy`, as an apply would.
fn record_generation(connection: &Connection, inventory: &Path, deploy: &Path) {
    let inventory = synprov::inventory::load(inventory).unwrap();
    let rendered = common::render_hosts(&inventory, Some("loop"));
    let files = &rendered[0].deployments[0];
    let origin = Origin::here("apply", None);
    let record = Record::of(files, &BTreeMap::new(), origin.clone());
    let json = serde_json::to_string(&record).unwrap();
    let paths: Vec<&str> = files.files.iter().map(|f| f.path.as_str()).collect();
    let script = scripts::save(
        deploy.to_str().unwrap(),
        &paths,
        &json,
        &[],
        2,
        &origin.entry(None, "ok"),
    );
    let output = connection.run_script(&script).unwrap();
    assert!(output.success(), "{}", output.tail(5));
}

/// The processes whose working directory is `dir`: what a `logs --follow` left running.
fn running_in(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (std::fs::read_link(path.join("cwd")).ok()? == dir)
                .then(|| std::fs::read_to_string(path.join("cmdline")).unwrap_or_default())
        })
        .collect()
}

#[test]
fn logs_and_exec_reach_the_recorded_services_of_a_real_stack_over_ssh() {
    let (sshd, deploy, inventory) = common::sshd::deployed();
    record_generation(&sshd.connect(&inventory), &inventory, &deploy);
    let _stack = Stack::up(&deploy);

    // exec: each word one argument, output streamed apart, the exit status passed on.
    let output = sshd.run(
        &[
            "exec",
            "--host",
            "loop",
            "main",
            "--",
            "sh",
            "-c",
            "printf '%s\\n' \"$1\"; echo err >&2; exit 3",
            "-",
            "a'b $(id) ;touch${IFS}/tmp/pwned",
        ],
        &inventory,
    );
    assert_eq!(output.status.code(), Some(3), "{}", common_stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "a'b $(id) ;touch${IFS}/tmp/pwned\n"
    );
    assert_eq!(common_stderr(&output), "err\n");

    // logs: the last lines of `main`, from its log file.
    std::thread::sleep(Duration::from_secs(4));
    let output = sshd.run(
        &["logs", "--host", "loop", "main", "--tail", "2"],
        &inventory,
    );
    assert!(output.status.success(), "{}", common_stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        (text.lines())
            .filter(|l| l.starts_with("main | 20") && l.ends_with(" - INFO - - tick"))
            .count(),
        2,
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");

    // A name the host did not record: refused, with the ones it did.
    let output = sshd.run(&["logs", "--host", "loop", "synapse"], &inventory);
    assert_eq!(output.status.code(), Some(1));
    let error = common_stderr(&output);
    assert!(
        error.contains("no process or service `synapse`")
            && error.contains("recorded these: client_sync1, db, federation_reader1, main, media1, nginx, redis, rooms1,"),
        "{error}"
    );
    // A --since that is no time: refused before connecting.
    let output = sshd.run(&["logs", "--host", "loop", "--since", "10m;id"], &inventory);
    assert_eq!(output.status.code(), Some(2));
    assert!(common_stderr(&output).contains("is neither a duration"));

    // --follow streams until Ctrl-C, then nothing is left running on the host, although
    // the container has gone quiet.
    let mut follow = sshd
        .command(
            &[
                "logs", "--host", "loop", "main", "--follow", "--since", "1m",
            ],
            &inventory,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (sent, lines) = std::sync::mpsc::channel();
    let stdout = std::io::BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stdout).map_while(Result::ok) {
            let _ = sent.send(line);
        }
    });
    for _ in 0..4 {
        let line = lines.recv_timeout(Duration::from_secs(30));
        if line.is_err() {
            let _ = follow.kill();
        }
        let line = line.expect("the four lines the container printed");
        assert!(
            line.starts_with("main | ") && (line.ends_with("- ready") || line.ends_with("- tick")),
            "{line}"
        );
    }
    // The container is quiet now: the follow waits on the host.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !running_in(&deploy).is_empty(),
        "the follow runs on the host"
    );
    // SAFETY: a signal to the child this test spawned.
    unsafe { libc::kill(follow.id() as libc::pid_t, libc::SIGINT) };
    let _ = follow.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running_in(&deploy).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left running on the host: {:?}",
            running_in(&deploy)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn common_stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
