//! Pebble, Let's Encrypt's ACME test server, on this machine for the hosts of a test bed:
//! its directory served over HTTPS with a certificate of the test's own CA (for the
//! address the hosts reach it at), its validation authority resolving names through
//! pebble-challtestsrv, a DNS server of fixed records that resolves no other name.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::TestCa;

/// The ports Pebble and its DNS server listen on, on every address of this machine.
const ACME_PORT: u16 = 14000;
const MANAGEMENT_PORT: u16 = 15000;
const DNS_PORT: u16 = 8053;
const DNS_MANAGEMENT_PORT: u16 = 8055;

pub struct Pebble {
    pebble: Child,
    dns: Child,
    /// The CA that signs Pebble's own HTTPS certificate: what a host's ACME client trusts
    /// the directory with (`ca_bundle`).
    pub https_ca: String,
    /// The directory URL, at `address`.
    pub directory: String,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Starts Pebble for clients that reach it at `address` (this machine's address on the
    /// bed's network), its state and logs in `dir`, every name of `records` resolving to
    /// its IPv4 address and no other name resolving at all. Validation is immediate
    /// (`PEBBLE_VA_NOSLEEP`) and every nonce is accepted (`PEBBLE_WFE_NONCEREJECT=0`).
    pub fn start(dir: &Path, address: &str, records: &[(&str, &str)]) -> Pebble {
        let pebble_bin = super::require("pebble", "apt-get install pebble");
        let dns_bin = super::require("pebble-challtestsrv", "apt-get install pebble");
        let ca = TestCa::new("synprov test: Pebble's HTTPS");
        let (cert, key) = ca.issue(&[&format!("IP:{address}"), "IP:127.0.0.1", "localhost"]);
        std::fs::write(dir.join("pebble-cert.pem"), cert).unwrap();
        std::fs::write(dir.join("pebble-key.pem"), key).unwrap();
        std::fs::write(
            dir.join("pebble.json"),
            serde_json::json!({
                "pebble": {
                    "listenAddress": format!("0.0.0.0:{ACME_PORT}"),
                    "managementListenAddress": format!("127.0.0.1:{MANAGEMENT_PORT}"),
                    "certificate": dir.join("pebble-cert.pem"),
                    "privateKey": dir.join("pebble-key.pem"),
                    "httpPort": 80,
                    "tlsPort": 443,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": false
                }
            })
            .to_string(),
        )
        .unwrap();
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.join(name)).unwrap());
        let dns = Command::new(dns_bin)
            .args(["-defaultIPv4", "", "-defaultIPv6", ""])
            .args(["-dns01", &format!(":{DNS_PORT}")])
            .args(["-management", &format!("127.0.0.1:{DNS_MANAGEMENT_PORT}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .unwrap();
        let pebble = Command::new(pebble_bin)
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{DNS_PORT}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap();
        let started = Pebble {
            pebble,
            dns,
            https_ca: ca.pem(),
            directory: format!("https://{address}:{ACME_PORT}/dir"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, ip) in records {
            loop {
                let added = ureq::post(&format!("http://127.0.0.1:{DNS_MANAGEMENT_PORT}/add-a"))
                    .send_json(serde_json::json!({ "host": name, "addresses": [ip] }));
                if added.is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "pebble-challtestsrv does not answer: {added:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        while started
            .get(&format!("https://127.0.0.1:{ACME_PORT}/dir"))
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "Pebble does not answer: {}",
                std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        started
    }

    /// The root that issues Pebble's certificates (made anew at each start): what a
    /// client of the deployment trusts.
    pub fn issuing_root(&self) -> String {
        self.get(&format!("https://127.0.0.1:{MANAGEMENT_PORT}/roots/0"))
            .expect("Pebble's management port gives its root")
    }

    fn get(&self, url: &str) -> Result<String, String> {
        super::tls::https_agent(&self.https_ca)
            .get(url)
            .call()
            .map_err(|e| e.to_string())?
            .into_string()
            .map_err(|e| e.to_string())
    }
}
