//! Rollback: a deployment goes back to one of its generations, read from the host alone.
//! The generation's files become the desired state, and the apply path does the rest: the
//! plan against what the host has, the files that differ written, only the services that
//! read them recreated, verified against the generation's own health targets, and the
//! result recorded as a new generation.

use std::collections::BTreeMap;

use super::files::{self, Fetch, Fetched};
use super::{ApplyError, Prepared, gather, prepare, step, step_within};
use crate::generations::{self, GENERATIONS, GenerationError, Listing, scripts};
use crate::inventory::DockerSource;
use crate::render::{DeploymentFiles, HostFiles};
use crate::transport::watch::Step;
use crate::transport::{Connection, OutputLimit};

/// Which generation to go back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// The current generation when the last apply did not finish (the host is on files no
    /// generation has), otherwise the one before it.
    Default,
    /// The current generation: what the host ran before a failed apply.
    Current,
    Number(u32),
}

/// What listing a deployment's generations may print: [`crate::host_data::GENERATIONS`]
/// records and images lists, and the audit log's end, with room to spare.
const LISTING_OUTPUT: OutputLimit = OutputLimit::stdout(16 << 20);

/// The generations kept for the deployment in `dir`, read within [`LISTING_OUTPUT`] (and
/// the deadline of the step the caller began).
pub fn list(connection: &Connection, dir: &str) -> Result<Listing, ApplyError> {
    let output = step_within(
        connection,
        "listing the generations",
        &scripts::list(dir),
        LISTING_OUTPUT,
    )?;
    generations::parse_listing(dir, &output)
        .map_err(|refused| refused.at(connection.host_name(), dir).into())
}

/// Reads the generation `to` of each deployment (name and directory) from the host, puts
/// back the image tags it ran, and plans going back to it. Returns the files to apply, the
/// plan, and the generation chosen for each deployment. With `needs_dump`, a generation
/// without a database dump is refused before anything is touched.
pub fn prepare_rollback(
    connection: &Connection,
    docker_source: DockerSource,
    deployments: &[(String, String)],
    to: To,
    needs_dump: bool,
) -> Result<(HostFiles, Prepared, Vec<u32>), ApplyError> {
    let host = connection.host_name();
    connection.begin(Step::Facts)?;
    let mut restored = Vec::new();
    let mut numbers = Vec::new();
    for (name, dir) in deployments {
        let listing = list(connection, dir)?;
        let number = match to {
            To::Number(n) => Some(n),
            To::Current => Some(
                listing
                    .current()
                    .ok_or_else(|| GenerationError::NoneBefore {
                        host: host.to_string(),
                        deployment: name.clone(),
                    })?
                    .number,
            ),
            To::Default if listing.pending => listing.current().map(|g| g.number),
            To::Default => None,
        };
        let (number, record) = listing.target(host, name, number)?;
        let generation = (listing.generations.iter())
            .find(|g| g.number == number)
            .expect("the target is listed");
        if needs_dump && !generation.dump {
            return Err(GenerationError::NoDump {
                host: host.to_string(),
                deployment: name.clone(),
                number,
            }
            .into());
        }
        let tags: Vec<(&str, &str)> = generation
            .images
            .iter()
            .map(|(reference, id)| (reference.as_str(), id.as_str()))
            .collect();
        step(connection, "restoring image tags", &scripts::retag(&tags))?;
        restored.push(read_files(connection, name, dir, number, record)?);
        numbers.push(number);
    }
    let files = HostFiles {
        host: host.to_string(),
        docker_source,
        deployments: restored,
    };
    let facts = gather(connection, &files.survey(), &BTreeMap::new())?;
    // No image is sent: the generation's images are on the host, tagged again above.
    let none = super::images::SavedImages::not_sent();
    let prepared = prepare(connection, &files, facts, &BTreeMap::new(), &none)?;
    Ok((files, prepared, numbers))
}

/// The files of generation `number`, from its copies on the host, each checked against the
/// recorded hash.
fn read_files(
    connection: &Connection,
    name: &str,
    dir: &str,
    number: u32,
    record: &generations::Record,
) -> Result<DeploymentFiles, ApplyError> {
    // Read from the deploy directory down, so that the guard checks every directory on
    // the way to the copies (`.synprov` included), not only those below them.
    let copies = format!("{GENERATIONS}/{number}/files/");
    let paths: Vec<String> = (record.files.iter())
        .map(|f| format!("{copies}{}", f.path))
        .collect();
    let fetch = Fetch {
        dir,
        paths: paths.iter().map(String::as_str).collect(),
    };
    let output = step(
        connection,
        "reading the generation's files",
        &files::fetch_script(&[fetch], files::MAX_COPY_BYTES),
    )?;
    let unreadable = |why: String| -> ApplyError {
        GenerationError::Unreadable {
            host: connection.host_name().to_string(),
            deployment: name.to_string(),
            number,
            why,
        }
        .into()
    };
    let mut contents = BTreeMap::new();
    for (path, fetched) in files::parse_fetch(&output, files::MAX_COPY_BYTES)
        .remove(&0)
        .unwrap_or_default()
    {
        let Some(path) = path.strip_prefix(&copies).map(str::to_string) else {
            continue;
        };
        match fetched {
            Fetched::Text(text) => contents.insert(path, text),
            Fetched::TooLarge { bytes } => {
                return Err(unreadable(format!(
                    "the copy of {path} is {bytes} bytes, more than any file synprov renders ({} bytes)",
                    files::MAX_COPY_BYTES
                )));
            }
        };
    }
    record.files(dir, contents).map_err(unreadable)
}
