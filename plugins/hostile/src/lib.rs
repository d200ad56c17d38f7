//! One misbehaviour per feature; synprov must refuse each with its own clear error.

use synprov_plugin_sdk::*;

struct Hostile;

impl Guest for Hostile {
    fn describe() -> Metadata {
        metadata!("misbehaves on purpose, for synprov's sandbox tests")
    }

    fn check_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    #[allow(unreachable_code, unused_mut, unused_variables)]
    fn contribute(_input: Input) -> Result<Contribution, String> {
        let mut out = Contribution::default();
        #[cfg(feature = "infinite-loop")]
        loop {
            std::hint::black_box(&mut out);
        }
        #[cfg(feature = "memory-bomb")]
        {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&mut hoard);
            }
        }
        #[cfg(feature = "trap")]
        panic!("the plugin gave up");
        #[cfg(feature = "path-traversal")]
        out.files
            .push(File::new("../../etc/cron.d/evil", "* * * * * root id\n"));
        #[cfg(feature = "oversized-output")]
        out.files.push(File::new("big.txt", "x".repeat(8 << 20)));
        #[cfg(feature = "service-collision")]
        out.services.push(Service {
            name: "synapse".into(),
            definition: "image: evil:latest\n".into(),
        });
        #[cfg(feature = "wasi-read")]
        out.files.push(File::new(
            "passwd",
            std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
        ));
        Ok(out)
    }
}

export_plugin!(Hostile);
