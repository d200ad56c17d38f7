//! Writes its input to `echo/input.txt`: the host's facts (or that there were none) and the
//! deployment as the plugin sees it.

use synprov_plugin_sdk::*;

struct Echo;

impl Guest for Echo {
    fn describe() -> Metadata {
        metadata!("writes what synprov told it, for synprov's tests")
    }

    fn check_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn contribute(input: Input) -> Result<Contribution, String> {
        let facts = match &input.facts {
            Some(f) => format!(
                "os={} arch={} docker={}",
                f.os,
                f.arch,
                f.docker.as_deref().unwrap_or("none")
            ),
            None => "no facts".to_string(),
        };
        let d = &input.deployment;
        let workers: Vec<String> = d
            .workers
            .iter()
            .map(|w| format!("{}@{}", w.name, w.host))
            .collect();
        let text = format!(
            "facts: {facts}\nserver_name: {}\nhost: {} main_host: {}\ndeploy_dir: {}\nworkers: {}\nconfig: {}\n",
            d.server_name,
            d.host,
            d.main_host,
            d.deploy_dir,
            workers.join(" "),
            input.config
        );
        let mut out = Contribution::default();
        out.files.push(File::new("echo/input.txt", text));
        Ok(out)
    }
}

export_plugin!(Echo);
