//! Rendering speed: validate and render inventories of 1, 100 and 1000 deployments (each
//! with the guide's 13 processes, on its own host), in memory; then the whole
//! `synprov render --out` of the same inventories, the binary writing every file to a
//! directory on disk. Prints two tables; asserts nothing.
//!
//!     cargo bench --bench render
//!     SYNPROV_BENCH_DIR=/var/tmp/x cargo bench --bench render   # write somewhere else
//!
//! The files go under the target directory (`CARGO_TARGET_TMPDIR`) unless
//! `SYNPROV_BENCH_DIR` names another: the device and filesystem are printed, and a tmpfs
//! is called out, since a render into memory says nothing of one onto a disk.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use synprov::inventory;
use synprov::plugins::Plugins;
use synprov::render::{self, Templates};
use synprov::secrets::MasterKey;

fn inventory_text(deployments: usize) -> String {
    let mut text = String::new();
    for i in 0..deployments {
        let _ = write!(
            text,
            "[hosts.h{i}]\naddress = \"10.0.{}.{}\"\n[deployments.d{i}]\nserver_name = \"hs{i}.example\"\nhost = \"h{i}\"\n\n",
            i / 250,
            i % 250 + 1
        );
    }
    text
}

/// The fastest of `runs` runs of `f`, and its last result.
fn fastest<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        last = Some(f());
        best = best.min(start.elapsed());
    }
    (best, last.expect("at least one run"))
}

/// The device and filesystem type that hold `dir`, as `df` names them.
fn filesystem(dir: &Path) -> (String, String) {
    let output = Command::new("df")
        .args(["--output=source,fstype"])
        .arg(dir)
        .output()
        .expect("df runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut words = text.lines().nth(1).unwrap_or("").split_whitespace();
    let source = words.next().unwrap_or("?").to_string();
    let fstype = words.next().unwrap_or("?").to_string();
    (source, fstype)
}

/// `synprov render INVENTORY --out OUT`, timed: `runs` times into a new directory under
/// `out` (the fastest and slowest), then again over the last of them, where nothing
/// changed. Nothing is removed between runs: on ext4 without a journal (this project's
/// machine), an inode freed in the last minutes is skipped, one by one, when the next is
/// allocated, so a render just after removing the last one times the removal.
fn render_out(inventory: &Path, out: &Path, runs: usize) -> [(Duration, Duration); 2] {
    let render = |into: &Path| {
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_synprov"))
            .arg("render")
            .arg(inventory)
            .arg("--out")
            .arg(into)
            .env(
                "SYNPROV_MASTER_KEY",
                "benchmark-master-key-0123456789abcdef",
            )
            .stdout(Stdio::null())
            .status()
            .expect("synprov runs");
        assert!(status.success(), "synprov render failed");
        start.elapsed()
    };
    let (mut fresh, mut over) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let into = out.join(format!("run-{run}"));
        // The writeback of the last render before the clock starts, not during this one.
        Command::new("sync").status().expect("sync runs");
        fresh.push(render(&into));
        over.push(render(&into));
    }
    let spread = |times: &[Duration]| {
        let best = times.iter().min().copied().unwrap_or_default();
        (best, times.iter().max().copied().unwrap_or_default())
    };
    [spread(&fresh), spread(&over)]
}

fn on_disk(sizes: &[(usize, usize)]) {
    let dir = std::env::var_os("SYNPROV_BENCH_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("render-bench"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("the benchmark's directory");
    let (source, fstype) = filesystem(&dir);
    println!();
    println!(
        "`synprov render --out` into {} ({fstype} on {source})",
        dir.display()
    );
    if ["tmpfs", "ramfs"].contains(&fstype.as_str()) {
        println!(
            "warning: {fstype} is memory, not a disk: set SYNPROV_BENCH_DIR to a directory on disk"
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average before: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("| deployments | files | into a new directory | again, nothing changed |");
    println!("|---:|---:|---:|---:|");
    for &(deployments, runs) in sizes {
        let inventory = dir.join(format!("bench-{deployments}.toml"));
        std::fs::write(&inventory, inventory_text(deployments)).expect("write the inventory");
        let out = dir.join(format!("out-{deployments}-{}", std::process::id()));
        let [fresh, over] = render_out(&inventory, &out, runs);
        let files = walk(&out.join("run-0"));
        let seconds = |(best, worst): (Duration, Duration)| {
            format!(
                "{:.2} s (slowest {:.2} s)",
                best.as_secs_f64(),
                worst.as_secs_f64()
            )
        };
        println!(
            "| {deployments} | {files} | {} | {} |",
            seconds(fresh),
            seconds(over)
        );
    }
    for &(deployments, _) in sizes {
        let out = dir.join(format!("out-{deployments}-{}", std::process::id()));
        std::fs::remove_dir_all(out).expect("remove a render");
    }
    println!();
    println!(
        "The renders were removed: on ext4 without a journal, wait five minutes before timing again."
    );
}

/// How many files there are under `dir`.
fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("a rendered directory")
        .map(|entry| entry.expect("an entry").path())
        .map(|path| if path.is_dir() { walk(&path) } else { 1 })
        .sum()
}

fn main() {
    let key = MasterKey::from_text("benchmark-master-key-0123456789abcdef").expect("long enough");
    let templates = Templates::load(None).expect("embedded templates");
    println!("| deployments | files | bytes | validate | render | per deployment |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (deployments, runs) in [(1, 50), (100, 5), (1000, 3)] {
        let text = inventory_text(deployments);
        let (validate, inventory) = fastest(runs, || {
            inventory::parse(Path::new("bench.toml"), text.clone()).expect("valid")
        });
        let (render, hosts) = fastest(runs, || {
            render::render(&inventory, &key, &templates, &Plugins::none(), None).expect("renders")
        });
        let files: Vec<_> = hosts
            .iter()
            .flat_map(|h| &h.deployments)
            .flat_map(|d| &d.files)
            .collect();
        let bytes: usize = files.iter().map(|f| f.contents.len()).sum();
        println!(
            "| {deployments} | {} | {:.1} MB | {:.1} ms | {:.1} ms | {:.2} ms |",
            files.len(),
            bytes as f64 / 1e6,
            validate.as_secs_f64() * 1e3,
            render.as_secs_f64() * 1e3,
            (validate + render).as_secs_f64() * 1e3 / deployments as f64
        );
    }
    on_disk(&[(1, 5), (100, 3), (1000, 3)]);
}
