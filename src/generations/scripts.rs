//! The host side of generations: record one, list them, append to the audit log, put
//! recorded image tags back. Each is a [`Script`] built from values, run by the transport,
//! and reads or writes only through [`crate::confine`]'s guard: a link among the
//! generations, the audit log or the copied files is refused and named, never followed.

use super::acme_run::MAX_RECORD_BYTES;
use super::backup_run::MAX_STATE_BYTES;
use super::{AUDIT_LOG, AuditEntry, GENERATIONS};
use crate::confine;
use crate::facts::PENDING;
use crate::render::acme::LAST_RUN;
use crate::render::backup::drill::VERIFY_LAST;
use crate::render::backup::{LAST, LAST_GOOD};
use crate::sh;
use crate::shell::{Script, with_base64_input};

/// Where a generation is built before it is renamed into place.
const NEW: &str = ".synprov/generations/.new";

/// Records the next generation of the deployment in `dir` (under its lock, after the stack
/// was verified healthy): copies `paths` as they are now, writes `record` and the image IDs
/// of `images` as the host has them, renames the whole into place, clears the pending mark,
/// keeps the newest `keep` generations and appends `entry` to the audit log. Prints
/// `generation=N`.
pub fn save(
    dir: &str,
    paths: &[&str],
    record_json: &str,
    images: &[String],
    keep: u32,
    entry: &AuditEntry,
) -> Script {
    let mut s = sh!("set -e\numask 077\n");
    s.push(confine::enter(dir));
    s.push(confine::dir(GENERATIONS));
    s.push(confine::file(AUDIT_LOG));
    s.push(sh!(
        "mkdir -p -m 700 {}\n\
         n=$(ls {} | grep -Ex '[0-9]+' | sort -n | tail -n 1)\nn=$((${n:-0} + 1))\n\
         rm -rf {}\nmkdir -p {}\n",
        GENERATIONS,
        GENERATIONS,
        NEW,
        format!("{NEW}/files")
    ));
    for path in paths {
        let copy = format!("{NEW}/files/{path}");
        s.push(confine::file(path));
        if let Some((parent, _)) = copy.rsplit_once('/') {
            s.push(sh!("mkdir -p -- {} && ", parent));
        }
        s.push(sh!("cp -p -- {} {}\n", path, copy));
    }
    s.push(with_base64_input(
        sh!("base64 -d > {}", format!("{NEW}/record.json")),
        record_json.as_bytes(),
    ));
    for image in images {
        s.push(sh!(
            "id=$(docker image inspect --format '{{.Id}}' -- {}) && printf '%s %s\\n' \"$id\" {} >> {}\n",
            image,
            image,
            format!("{NEW}/images")
        ));
    }
    let (prefix, result) = entry.prefix_and_result();
    s.push(sh!(
        "sync\ngens={}\nmv -- {} \"$gens/$n\"\nrm -f {}\n\
         ls \"$gens\" | grep -Ex '[0-9]+' | sort -n | head -n -{} | while read -r old; do rm -rf -- \"$gens/$old\"; done\n\
         printf '%s\\tgeneration %s\\t%s\\n' {} \"$n\" {} >> {}\necho \"generation=$n\"\n",
        GENERATIONS,
        NEW,
        PENDING,
        keep.to_string(),
        prefix,
        result,
        AUDIT_LOG
    ));
    s
}

/// Prints the generations of the deployment in `dir`, oldest first (`generation=N`, then
/// `record=` and `images=` lines of base64, and `dump=yes` when it has a Postgres dump),
/// `pending=yes` when the last apply did not finish, the backup's state files
/// (`backup_last=`, `backup_good=` and, of the restore drill, `verify_last=` lines of
/// base64, their first 4 KiB), the ACME renewal's last attempt (`acme_last=`, its first
/// 4 KiB), then the audit
/// log's last 1000 lines (`audit=` lines of base64). Prints nothing for a directory that
/// does not exist.
pub fn list(dir: &str) -> Script {
    let mut s = sh!("umask 077\n");
    s.push(confine::enter_if_present(dir));
    s.push(sh!(
        "gens={}\ndump={}\nsynprov_dir \"$gens\"\n\
         for n in $(ls \"$gens\" 2>/dev/null | grep -Ex '[0-9]+' | sort -n); do\n\
         g=\"$gens/$n\"\nsynprov_dir \"$g\"\necho \"generation=$n\"\n\
         synprov_regular \"$g/record.json\" && base64 < \"$g/record.json\" | sed 's/^/record=/'\n\
         synprov_regular \"$g/images\" && base64 < \"$g/images\" | sed 's/^/images=/'\n\
         synprov_regular \"$g/$dump\" && echo dump=yes\ndone\n{} && echo pending=yes\n\
         {} && head -c {} {} | base64 | sed 's/^/backup_last=/'\n\
         {} && head -c {} {} | base64 | sed 's/^/backup_good=/'\n\
         {} && head -c {} {} | base64 | sed 's/^/verify_last=/'\n\
         {} && head -c {} {} | base64 | sed 's/^/acme_last=/'\n\
         {} && tail -n 1000 {} | base64 | sed 's/^/audit=/'\nexit 0\n",
        GENERATIONS,
        super::DUMP,
        confine::regular(PENDING),
        confine::regular(LAST),
        MAX_STATE_BYTES.to_string(),
        LAST,
        confine::regular(LAST_GOOD),
        MAX_STATE_BYTES.to_string(),
        LAST_GOOD,
        confine::regular(VERIFY_LAST),
        MAX_STATE_BYTES.to_string(),
        VERIFY_LAST,
        confine::regular(LAST_RUN),
        MAX_RECORD_BYTES.to_string(),
        LAST_RUN,
        confine::regular(AUDIT_LOG),
        AUDIT_LOG
    ));
    s
}

/// Appends `entry` to the audit log of the deployment in `dir`, when that directory exists.
pub fn audit(dir: &str, entry: &AuditEntry) -> Script {
    let mut s = sh!("umask 077\n");
    s.push(confine::enter_if_present(dir));
    s.push(confine::file(AUDIT_LOG));
    s.push(sh!(
        "mkdir -p -m 700 .synprov\nprintf '%s\\n' {} >> {}\n",
        entry.line(),
        AUDIT_LOG
    ));
    s
}

/// Tags each recorded image ID with its reference again where the reference now names
/// another image (a later apply loaded a new one under the same tag). Fails, naming it,
/// when an image is no longer on the host.
pub fn retag(images: &[(&str, &str)]) -> Script {
    let mut s = sh!("set -e\n");
    for (reference, id) in images {
        s.push(sh!(
            "if [ \"$(docker image inspect --format '{{.Id}}' -- {} 2>/dev/null)\" != {} ]; then\n\
             docker image inspect -- {} >/dev/null 2>&1 || { echo {}; exit 3; }\n\
             docker tag {} {}\nfi\n",
            *reference,
            *id,
            *id,
            format!("image {id} ({reference}) is no longer on the host"),
            *id,
            *reference
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            at: "2026-12-01T12:00:00Z".into(),
            who: "alice@laptop".into(),
            command: "apply".into(),
            generation: None,
            result: "ok".into(),
        }
    }

    #[test]
    fn a_generation_is_built_aside_then_renamed_into_place_and_old_ones_pruned() {
        let script = save(
            "/opt/it's",
            &["synapse/homeserver.yaml", "docker-compose.yml"],
            "{}",
            &["synprov/synapse:1.163".to_string()],
            10,
            &entry(),
        );
        assert_eq!(
            script.text(),
            [
                "set -e\numask 077\n",
                confine::enter("/opt/it's").text(),
                "synprov_dir .synprov/generations\n\
             synprov_path f .synprov/audit.log 'regular file'\n\
             mkdir -p -m 700 .synprov/generations\n\
             n=$(ls .synprov/generations | grep -Ex '[0-9]+' | sort -n | tail -n 1)\nn=$((${n:-0} + 1))\n\
             rm -rf .synprov/generations/.new\nmkdir -p .synprov/generations/.new/files\n\
             synprov_path f synapse/homeserver.yaml 'regular file'\n\
             mkdir -p -- .synprov/generations/.new/files/synapse && cp -p -- synapse/homeserver.yaml .synprov/generations/.new/files/synapse/homeserver.yaml\n\
             synprov_path f docker-compose.yml 'regular file'\n\
             mkdir -p -- .synprov/generations/.new/files && cp -p -- docker-compose.yml .synprov/generations/.new/files/docker-compose.yml\n\
             base64 -d > .synprov/generations/.new/record.json <<'SYNPROV_EOF'\ne30=\nSYNPROV_EOF\n\
             id=$(docker image inspect --format '{{.Id}}' -- synprov/synapse:1.163) && printf '%s %s\\n' \"$id\" synprov/synapse:1.163 >> .synprov/generations/.new/images\n\
             sync\ngens=.synprov/generations\nmv -- .synprov/generations/.new \"$gens/$n\"\nrm -f .synprov/pending\n\
             ls \"$gens\" | grep -Ex '[0-9]+' | sort -n | head -n -10 | while read -r old; do rm -rf -- \"$gens/$old\"; done\n\
             printf '%s\\tgeneration %s\\t%s\\n' '2026-12-01T12:00:00Z\talice@laptop\tapply' \"$n\" ok >> .synprov/audit.log\n\
             echo \"generation=$n\"\n"
            ]
            .concat()
        );
    }

    #[test]
    fn an_audit_line_is_one_quoted_word() {
        assert_eq!(
            audit("/opt/s", &entry()).text(),
            [
                "umask 077\n",
                confine::enter_if_present("/opt/s").text(),
                "synprov_path f .synprov/audit.log 'regular file'\nmkdir -p -m 700 .synprov\n\
                 printf '%s\\n' '2026-12-01T12:00:00Z\talice@laptop\tapply\t-\tok' >> .synprov/audit.log\n"
            ]
            .concat()
        );
    }

    #[test]
    fn retagging_names_each_value_as_one_word() {
        let id = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            retag(&[("synprov/synapse:1.163", &id)]).text(),
            format!(
                "set -e\nif [ \"$(docker image inspect --format '{{{{.Id}}}}' -- synprov/synapse:1.163 2>/dev/null)\" != {id} ]; then\n\
                 docker image inspect -- {id} >/dev/null 2>&1 || {{ echo 'image {id} (synprov/synapse:1.163) is no longer on the host'; exit 3; }}\n\
                 docker tag {id} synprov/synapse:1.163\nfi\n"
            )
        );
    }
}
