//! How big each Postgres on a host is: its memory and parallelism settings sized from the
//! host's memory and cores, each with the reason `plan` shows, and the refusal of a host
//! too small for the processes placed on it.
//!
//! Pure: the facts come in as a value. Without facts (`synprov render`, which connects
//! nowhere) the deployment's profile names the machine assumed. The rules follow the
//! guide's tuning pages (GUIDE-SPEC.md §6.4): shared buffers a quarter of the memory, the
//! cache the planner counts on three quarters, workers one per core.

use crate::facts::Facts;
use crate::inventory::{
    Deployment, Inventory, InventoryError, MemorySize, PostgresPins, PostgresProfile,
};
use crate::topology::Topology;

/// Memory counted for each Synapse process (main or worker): between 150 and 250 MiB
/// resident once started with the default caches, by Synapse's own documentation and
/// experience with small servers; a busy one grows beyond.
pub const SYNAPSE_PROCESS: MemorySize = MemorySize::from_mb(200);

/// Memory counted for each deployment's Postgres, Redis and Nginx together, beyond what
/// Postgres is sized to cache: their processes and Postgres' smallest buffers.
pub const SERVICES: MemorySize = MemorySize::from_mb(512);

/// A host's memory is counted in steps of this much, rounded down: the kernel of one
/// machine reports a few MB more or less after an upgrade, and that must not rewrite
/// `postgresql.conf` (and restart Postgres) on the next apply.
const MEMORY_STEP: MemorySize = MemorySize::from_mb(256);

/// Postgres' own default `shared_buffers`, the least synprov gives.
const LEAST_SHARED_BUFFERS: MemorySize = MemorySize::from_mb(128);

/// `work_mem` bounds: Postgres' default, and the tuning guide's finding that more rarely
/// helps Synapse's queries.
const WORK_MEM: (MemorySize, MemorySize) = (MemorySize::from_mb(4), MemorySize::from_mb(32));

/// `maintenance_work_mem` bounds: Postgres' default, and the guide's upper value.
const MAINTENANCE_WORK_MEM: (MemorySize, MemorySize) =
    (MemorySize::from_mb(64), MemorySize::from_mb(1024));

/// The least `max_wal_size` (the guide's `min_wal_size`, which it must not be below).
const LEAST_MAX_WAL_SIZE: MemorySize = MemorySize::from_mb(1024);

/// What Postgres is sized for: a host's memory and cores, measured or assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// Rounded down to [`MEMORY_STEP`].
    pub memory: MemorySize,
    pub cores: u32,
    /// The profile whose reference machine this is, when the host's facts are not known.
    pub assumed: Option<PostgresProfile>,
}

impl Machine {
    /// The host as its facts measure it; `None` when they lack its memory or cores.
    pub fn measured(facts: &Facts) -> Option<Machine> {
        let step = MEMORY_STEP.kb();
        (facts.memory_kb >= step && facts.cores > 0).then(|| Machine {
            memory: MemorySize::from_kb(facts.memory_kb / step * step),
            cores: facts.cores,
            assumed: None,
        })
    }

    /// The reference machine of `profile` (GUIDE-SPEC.md §6.2).
    pub fn assumed(profile: PostgresProfile) -> Machine {
        let (gb, cores) = match profile {
            PostgresProfile::Small => (8, 4),
            PostgresProfile::Large => (64, 16),
        };
        Machine {
            memory: MemorySize::from_mb(gb * 1024),
            cores,
            assumed: Some(profile),
        }
    }

    /// The host as measured when `facts` say, else as `profile` assumes.
    pub fn of(facts: Option<&Facts>, profile: PostgresProfile) -> Machine {
        facts
            .and_then(Machine::measured)
            .unwrap_or_else(|| Machine::assumed(profile))
    }

    fn memory_text(&self) -> String {
        match self.assumed {
            None => format!("{} RAM", self.memory),
            Some(profile) => format!("{} RAM assumed by profile {}", self.memory, profile.name()),
        }
    }

    fn cores_text(&self) -> String {
        let plural = if self.cores == 1 { "" } else { "s" };
        match self.assumed {
            None => format!("{} core{plural}", self.cores),
            Some(profile) => format!("{} cores assumed by profile {}", self.cores, profile.name()),
        }
    }
}

/// A setting's value and why it has it, as `plan` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub why: String,
}

impl<T> Setting<T> {
    /// The pinned value when the inventory gives one, else the sized one.
    fn pinned_or(pin: Option<T>, sized: impl FnOnce() -> (T, String)) -> Setting<T> {
        match pin {
            Some(value) => Setting {
                value,
                why: "pinned in the inventory".into(),
            },
            None => {
                let (value, why) = sized();
                Setting { value, why }
            }
        }
    }
}

impl<T: std::fmt::Display> Setting<T> {
    fn line(&self, name: &str) -> String {
        format!("{name} {} ({})", self.value, self.why)
    }
}

/// The sized settings of one deployment's `postgresql.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSizing {
    pub shared_buffers: Setting<MemorySize>,
    pub effective_cache_size: Setting<MemorySize>,
    pub work_mem: Setting<MemorySize>,
    pub maintenance_work_mem: Setting<MemorySize>,
    pub max_worker_processes: Setting<u32>,
    pub max_parallel_workers: Setting<u32>,
    pub max_parallel_workers_per_gather: Setting<u32>,
    /// A quarter of the cores, at least one (the guide: ⅛ to ¼).
    pub max_parallel_maintenance_workers: u32,
    pub max_connections: Setting<u32>,
}

impl PostgresSizing {
    /// Sizes the Postgres of `deployment` on `machine`, whose memory it shares equally
    /// with the Postgres of the other deployments there (`sharing` of them in all).
    pub fn new(deployment: &Deployment, machine: Machine, sharing: u32) -> PostgresSizing {
        let pins: &PostgresPins = &deployment.postgres.pins;
        let sharing = sharing.max(1);
        let share = machine.memory.kb() / u64::from(sharing);
        let of_share = format!(
            "{} / {sharing} deployment{}",
            machine.memory_text(),
            if sharing == 1 { "" } else { "s" }
        );
        let mb = |kb: u64| MemorySize::from_mb(kb >> 10);
        let within = |kb: u64, (least, most): (MemorySize, MemorySize)| mb(kb).clamp(least, most);

        let max_connections = Setting::pinned_or(pins.max_connections, || {
            // Validation refused a budget beyond Postgres' ceiling, which is a u32.
            let budget = u32::try_from(deployment.connection_budget()).unwrap_or(u32::MAX);
            let why = format!(
                "{} Synapse processes × cp_max {} + {} for maintenance",
                deployment.process_count(),
                deployment.postgres.cp_max,
                crate::inventory::CONNECTION_HEADROOM
            );
            (budget, why)
        });
        let shared_buffers = Setting::pinned_or(pins.shared_buffers, || {
            let value = mb(share / 4).max(LEAST_SHARED_BUFFERS);
            (value, format!("25% of {of_share}"))
        });
        let effective_cache_size = Setting::pinned_or(pins.effective_cache_size, || {
            (mb(share / 4 * 3), format!("75% of {of_share}"))
        });
        let work_mem = Setting::pinned_or(pins.work_mem, || {
            // Each connection may sort or hash a few times at once: what the share leaves
            // besides the shared buffers, over three per connection.
            let left = share.saturating_sub(shared_buffers.value.kb());
            let per = left / (3 * u64::from(max_connections.value.max(1)));
            let why = format!(
                "{of_share} less shared_buffers, over 3 × {} connections, within {}-{}",
                max_connections.value, WORK_MEM.0, WORK_MEM.1
            );
            (within(per, WORK_MEM), why)
        });
        let maintenance_work_mem = Setting::pinned_or(pins.maintenance_work_mem, || {
            let (least, most) = MAINTENANCE_WORK_MEM;
            let why = format!("1/16 of {of_share}, within {least}-{most}");
            (within(share / 16, MAINTENANCE_WORK_MEM), why)
        });
        let cores = machine.cores.max(1);
        let per_core = || (cores, format!("one per core: {}", machine.cores_text()));
        let max_worker_processes = Setting::pinned_or(pins.max_worker_processes, per_core);
        let max_parallel_workers = Setting::pinned_or(pins.max_parallel_workers, per_core);
        let max_parallel_workers_per_gather =
            Setting::pinned_or(pins.max_parallel_workers_per_gather, || {
                let why = format!(
                    "a quarter of {} (none below 4: the Synapse processes need them)",
                    machine.cores_text()
                );
                (cores / 4, why)
            });
        PostgresSizing {
            shared_buffers,
            effective_cache_size,
            work_mem,
            maintenance_work_mem,
            max_worker_processes,
            max_parallel_workers,
            max_parallel_workers_per_gather,
            max_parallel_maintenance_workers: (cores / 4).max(1),
            max_connections,
        }
    }

    /// Twice the shared buffers, at least 1GB (the tuning guide's checkpoint rule).
    pub fn max_wal_size(&self) -> MemorySize {
        MemorySize::from_kb(2 * self.shared_buffers.value.kb()).max(LEAST_MAX_WAL_SIZE)
    }

    /// Each sized setting with its value and reason, as `plan` shows them.
    pub fn lines(&self) -> Vec<String> {
        let memory = [
            ("shared_buffers", &self.shared_buffers),
            ("effective_cache_size", &self.effective_cache_size),
            ("work_mem", &self.work_mem),
            ("maintenance_work_mem", &self.maintenance_work_mem),
        ];
        let counts = [
            ("max_worker_processes", &self.max_worker_processes),
            ("max_parallel_workers", &self.max_parallel_workers),
            (
                "max_parallel_workers_per_gather",
                &self.max_parallel_workers_per_gather,
            ),
            ("max_connections", &self.max_connections),
        ];
        (memory.iter().map(|(name, setting)| setting.line(name)))
            .chain(counts.iter().map(|(name, setting)| setting.line(name)))
            .collect()
    }
}

/// How many deployments run their Postgres on `host` (their main host): they share its
/// memory equally.
pub fn postgres_on(inventory: &Inventory, host: &str) -> u32 {
    let count = (inventory.deployments.values())
        .filter(|d| d.host == host)
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Refuses `host` when its measured memory is less than what is placed on it needs:
/// [`SYNAPSE_PROCESS`] for each Synapse process there, [`SERVICES`] for each deployment
/// whose Postgres, Redis and Nginx run there. Facts without the memory refuse nothing.
pub fn check_memory(
    inventory: &Inventory,
    host: &str,
    facts: &Facts,
) -> Result<(), InventoryError> {
    if facts.memory_kb == 0 {
        return Ok(());
    }
    let processes: u64 = (inventory.deployments_on(host))
        .map(|d| Topology::resolve(d, &inventory.hosts).on_host(host).count() as u64)
        .sum();
    let services = u64::from(postgres_on(inventory, host));
    let need = MemorySize::from_kb(processes * SYNAPSE_PROCESS.kb() + services * SERVICES.kb());
    let have = MemorySize::from_mb(facts.memory_kb >> 10);
    if facts.memory_kb >= need.kb() {
        return Ok(());
    }
    Err(inventory.host_error(
        host,
        format!(
            "host `{host}` has {have} of memory, less than the {need} its deployments need: \
             {processes} Synapse process(es) × {SYNAPSE_PROCESS}, and {services} × {SERVICES} \
             for Postgres, Redis and Nginx"
        ),
        "too little memory",
        "give the host more memory, or fewer workers: lower `[deployments.NAME.workers]`, or \
         place some on another host with `[deployments.NAME.placement]`",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const HOST: &str = "[hosts.hs1]\naddress = \"10.0.0.1\"\n";

    fn inventory(deployments: &str) -> Inventory {
        crate::inventory::parse(Path::new("i.toml"), format!("{HOST}{deployments}")).unwrap()
    }

    fn deployment(name: &str, extra: &str) -> String {
        format!("[deployments.{name}]\nserver_name = \"{name}.example\"\nhost = \"hs1\"\n{extra}")
    }

    fn host(memory_gib: u64, cores: u32) -> Facts {
        crate::facts::parse(&format!("memory_kb={}\ncores={cores}\n", memory_gib << 20)).unwrap()
    }

    fn sized(inventory: &Inventory, name: &str, facts: Option<&Facts>) -> PostgresSizing {
        let d = &inventory.deployments[name];
        let machine = Machine::of(facts, d.postgres.profile);
        PostgresSizing::new(d, machine, postgres_on(inventory, "hs1"))
    }

    fn values(sizing: &PostgresSizing) -> Vec<String> {
        (sizing.lines().iter())
            .map(|l| l.split(" (").next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_small_host_gets_the_least_of_everything() {
        let inventory = inventory(&deployment("d", ""));
        let sizing = sized(&inventory, "d", Some(&host(1, 1)));
        assert_eq!(
            values(&sizing),
            [
                "shared_buffers 256MB",
                "effective_cache_size 768MB",
                "work_mem 4MB",
                "maintenance_work_mem 64MB",
                "max_worker_processes 1",
                "max_parallel_workers 1",
                "max_parallel_workers_per_gather 0",
                "max_connections 88",
            ]
        );
        assert_eq!(sizing.max_parallel_maintenance_workers, 1);
        assert_eq!(sizing.max_wal_size().to_string(), "1GB");
        assert_eq!(
            sizing.lines()[0],
            "shared_buffers 256MB (25% of 1GB RAM / 1 deployment)"
        );
        assert_eq!(
            sizing.lines()[7],
            "max_connections 88 (13 Synapse processes × cp_max 6 + 10 for maintenance)"
        );
    }

    #[test]
    fn a_large_host_gets_a_quarter_of_its_memory_and_a_worker_per_core() {
        let inventory = inventory(&deployment("d", ""));
        let sizing = sized(&inventory, "d", Some(&host(64, 16)));
        assert_eq!(
            values(&sizing),
            [
                "shared_buffers 16GB",
                "effective_cache_size 48GB",
                "work_mem 32MB",
                "maintenance_work_mem 1GB",
                "max_worker_processes 16",
                "max_parallel_workers 16",
                "max_parallel_workers_per_gather 4",
                "max_connections 88",
            ]
        );
        assert_eq!(sizing.max_parallel_maintenance_workers, 4);
        assert_eq!(sizing.max_wal_size().to_string(), "32GB");
        assert_eq!(
            sizing.lines()[4],
            "max_worker_processes 16 (one per core: 16 cores)"
        );
    }

    #[test]
    fn memory_is_counted_in_steps_so_a_few_megabytes_resize_nothing() {
        let inventory = inventory(&deployment("d", ""));
        let [a, b] = [4_028_416, 4_030_000].map(|kb| {
            let facts = crate::facts::parse(&format!("memory_kb={kb}\ncores=2\n")).unwrap();
            sized(&inventory, "d", Some(&facts))
        });
        assert_eq!(a, b);
        assert_eq!(
            a.lines()[0],
            "shared_buffers 960MB (25% of 3840MB RAM / 1 deployment)"
        );
    }

    #[test]
    fn pinned_settings_are_kept_and_the_others_sized_around_them() {
        let inventory = inventory(&deployment(
            "d",
            "[deployments.d.postgres]\nshared_buffers = \"2GB\"\nmax_connections = 200\n\
             max_parallel_workers_per_gather = 3\nwork_mem = \"48MB\"\n",
        ));
        let sizing = sized(&inventory, "d", Some(&host(16, 8)));
        assert_eq!(
            values(&sizing),
            [
                "shared_buffers 2GB",
                "effective_cache_size 12GB",
                "work_mem 48MB",
                "maintenance_work_mem 1GB",
                "max_worker_processes 8",
                "max_parallel_workers 8",
                "max_parallel_workers_per_gather 3",
                "max_connections 200",
            ]
        );
        assert_eq!(
            sizing.lines()[0],
            "shared_buffers 2GB (pinned in the inventory)"
        );
        assert_eq!(sizing.max_wal_size().to_string(), "4GB");
    }

    #[test]
    fn deployments_sharing_a_host_share_its_memory_but_not_its_cores() {
        let both = format!(
            "{}{}",
            deployment("a", ""),
            deployment("b", "[deployments.b.nginx]\nhttp_port = 8009\n")
        );
        let inventory = inventory(&both);
        let sizing = sized(&inventory, "b", Some(&host(16, 4)));
        assert_eq!(
            sizing.lines()[0],
            "shared_buffers 2GB (25% of 16GB RAM / 2 deployments)"
        );
        assert_eq!(sizing.effective_cache_size.value.to_string(), "6GB");
        assert_eq!(sizing.max_worker_processes.value, 4);
        assert_eq!(sized(&inventory, "a", Some(&host(16, 4))), sizing);
    }

    #[test]
    fn without_facts_the_profile_names_the_machine_assumed() {
        let inventory = inventory(&format!(
            "{}{}",
            deployment("s", ""),
            deployment(
                "l",
                "[deployments.l.postgres]\nprofile = \"large\"\n[deployments.l.nginx]\nhttp_port = 8009\n"
            )
        ));
        let small = sized(&inventory, "s", None);
        assert_eq!(
            small.lines()[0],
            "shared_buffers 1GB (25% of 8GB RAM assumed by profile small / 2 deployments)"
        );
        let large = sized(&inventory, "l", None);
        assert_eq!(
            large.lines()[4],
            "max_worker_processes 16 (one per core: 16 cores assumed by profile large)"
        );
        let no_memory = crate::facts::parse("cores=2\n").unwrap();
        assert_eq!(sized(&inventory, "s", Some(&no_memory)), small);
    }

    #[test]
    fn a_host_too_small_for_its_processes_is_refused_with_the_numbers() {
        let inventory = inventory(&deployment("d", ""));
        let error = check_memory(&inventory, "hs1", &host(2, 2)).unwrap_err();
        let message = error.to_string();
        let report = format!("{:?}", miette::Report::new(error));
        assert_eq!(
            message,
            "i.toml:1:1: host `hs1` has 2GB of memory, less than the 3112MB its \
                 deployments need: 13 Synapse process(es) × 200MB, and 1 × 512MB for \
                 Postgres, Redis and Nginx"
        );
        assert!(report.contains("too little memory"), "{report}");
        assert!(report.contains("[deployments.NAME.placement]"), "{report}");
        assert!(check_memory(&inventory, "hs1", &host(4, 2)).is_ok());
        assert!(check_memory(&inventory, "hs1", &crate::facts::parse("").unwrap()).is_ok());
    }
}
