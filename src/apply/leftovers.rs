//! What a removed worker leaves on its host beside the files synprov wrote for it: its log
//! directory, its sockets and the `.sock.lock` files Twisted keeps beside them. Compose
//! removes the container (`--remove-orphans`) and the write script the worker's config;
//! without this the rest would pile up with each worker ever removed, and a stale lock
//! would confuse a worker added later under the same name.

use std::collections::BTreeSet;

use crate::confine;
use crate::plan::RemovedWorker;
use crate::sh;
use crate::shell::{Command, Script};

/// Removes the leftovers of `workers` in the deploy directory `dir` (after Compose has
/// removed their containers). Missing ones are no error. The directories they are in
/// (`logs`, `sockets`) are checked first ([`crate::confine`]): `rm -rf` then removes a
/// link a container planted in them, never what it points to.
pub fn script(dir: &str, workers: &[RemovedWorker]) -> Script {
    let leftovers: Vec<String> = workers.iter().flat_map(RemovedWorker::leftovers).collect();
    let parents: BTreeSet<&str> = (leftovers.iter())
        .filter_map(|path| Some(path.rsplit_once('/')?.0))
        .collect();
    let mut s = sh!("set -e\numask 077\n");
    s.push(confine::enter(dir));
    for parent in parents {
        s.push(confine::data_dir(parent));
    }
    let rm = (leftovers.into_iter()).fold(Command::new("rm").arg("-rf").arg("--"), Command::arg);
    s.push(sh!("{}\n", rm));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_workers_logs_sockets_and_locks_go_quoted_whatever_the_values() {
        let workers = [RemovedWorker {
            service: "rooms6".into(),
            name: "rooms6".into(),
        }];
        assert_eq!(
            script("/opt/s", &workers).text(),
            [
                "set -e\numask 077\n",
                confine::enter("/opt/s").text(),
                "synprov_path d logs directory\nsynprov_path d sockets directory\n\
             rm -rf -- logs/rooms6 sockets/synapse_inbound_rooms6.sock.lock sockets/synapse_inbound_rooms6.sock \
             sockets/synapse_replication_rooms6.sock.lock sockets/synapse_replication_rooms6.sock\n"
            ]
            .concat()
        );
        // Names are plain words when parsed from a compose file; the script does not rely
        // on it.
        let hostile = [RemovedWorker {
            service: "x".into(),
            name: "a b;$(id)'".into(),
        }];
        assert_eq!(
            script("/opt/x;touch${IFS}/tmp/pwned;'", &hostile).text(),
            [
                "set -e\numask 077\n",
                confine::enter("/opt/x;touch${IFS}/tmp/pwned;'").text(),
                "synprov_path d logs directory\nsynprov_path d sockets directory\n\
             rm -rf -- 'logs/a b;$(id)'\\''' 'sockets/synapse_inbound_a b;$(id)'\\''.sock.lock' \
             'sockets/synapse_inbound_a b;$(id)'\\''.sock' 'sockets/synapse_replication_a b;$(id)'\\''.sock.lock' \
             'sockets/synapse_replication_a b;$(id)'\\''.sock'\n"
            ]
            .concat()
        );
    }
}
