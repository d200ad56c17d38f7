//! `synprov check`: validate an inventory and show what would be deployed where.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

use synprov::inventory::{
    CertificateSource, Deployment, Federation, Inventory, TlsSettings, Transport, WorkerKind,
};
use synprov::topology::Topology;

pub fn run(path: &Path) -> miette::Result<ExitCode> {
    let inventory = super::load_inventory(path)?;
    print!("{}", synprov::ui::printable(&summary(&inventory)));
    Ok(ExitCode::SUCCESS)
}

/// What the inventory deploys, host by host. Holds no secret.
pub fn summary(inventory: &Inventory) -> String {
    let processes: usize = inventory
        .deployments
        .values()
        .map(|d| 1 + d.workers.values().sum::<u32>() as usize)
        .sum();
    let mut out = format!(
        "{}: valid. {} host(s), {} deployment(s), {} Synapse process(es).\n",
        inventory.path.display(),
        inventory.hosts.len(),
        inventory.deployments.len(),
        processes
    );
    for host in inventory.hosts.values() {
        let how = match host.transport {
            Transport::Local => "local".to_string(),
            Transport::Ssh => format!(
                "ssh {}@{}:{}{}",
                host.user,
                host.address,
                host.port,
                if host.become_root { " (sudo)" } else { "" }
            ),
        };
        let _ = writeln!(out, "\nhost {} ({how})", host.name);
        let mut any = false;
        for deployment in inventory.deployments_on(&host.name) {
            any = true;
            let topology = Topology::resolve(deployment, &inventory.hosts);
            let role = if deployment.host == host.name {
                "main, postgres, redis, nginx"
            } else {
                "workers"
            };
            let _ = writeln!(
                out,
                "  deployment {} ({}) in {}: {role}",
                deployment.name, deployment.server_name, deployment.deploy_dir
            );
            if deployment.host == host.name {
                let _ = writeln!(
                    out,
                    "    {:<18} {}",
                    "main",
                    topology.main().health_endpoint().describe()
                );
                if let Some(tls) = &deployment.tls {
                    let _ = writeln!(out, "    {:<18} {}", "nginx", https(deployment, tls));
                }
            }
            for kind in WorkerKind::ALL {
                let names: Vec<String> = topology
                    .workers(kind)
                    .filter(|p| p.host == host.name)
                    .map(|p| p.name.clone())
                    .collect();
                if !names.is_empty() {
                    let _ = writeln!(out, "    {:<18} {}", kind.stem(), names.join(" "));
                }
            }
        }
        if !any {
            let _ = writeln!(out, "  (no deployment)");
        }
    }
    out
}

/// Where Nginx serves HTTPS and federation, and until when its certificate is valid.
fn https(deployment: &Deployment, tls: &TlsSettings) -> String {
    let federation = match tls.federation {
        Federation::Port => format!("federation on {}", tls.federation_port),
        Federation::WellKnown => "federation delegated by /.well-known/matrix/server".into(),
    };
    let certificate = match &tls.certificate {
        CertificateSource::Files(pair) => format!("certificate valid until {}", pair.not_after),
        CertificateSource::Acme(acme) => format!(
            "certificate for {} from {}, renewed on the host",
            acme.names.join(" "),
            acme.directory
        ),
    };
    format!(
        "HTTPS on {}, {federation}, HTTP on {} redirected; {certificate}",
        tls.https_port, deployment.nginx.http_port
    )
}
