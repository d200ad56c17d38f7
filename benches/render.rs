//! Rendering speed: validate and render inventories of 1, 100 and 1000 deployments (each
//! with the guide's 13 processes, on its own host). Prints a table; asserts nothing.
//!
//!     cargo bench --bench render

use std::fmt::Write;
use std::path::Path;
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
}
