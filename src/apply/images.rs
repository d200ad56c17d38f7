//! Images sent from this machine to a host (a `docker save` archive into `docker load`
//! over the connection), for hosts that cannot pull: skipped when the host has the same
//! image ID. The images a host lacks go in one archive (`docker save` of several images
//! writes each layer once, and the images of a stack share their big base layers), saved
//! once a run into a temporary file and shared by every host that lacks the same images.
//! Each host gets it without the layer files its Docker holds (see [`super::archive`]):
//! an upgrade that adds a layer sends that layer. A host that holds none of the images'
//! layers (a first apply) gets `docker save`'s stream as it comes, with no copy on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::ApplyError;
use super::archive::{Archive, Selection};
use super::metered::{Metered, megabytes};
use crate::gather::IMAGE_LAYERS;
use crate::layers::{Sha256Digest, listed_chain_ids};
use crate::plan::Sending;
use crate::shell::Command as HostCommand;
use crate::text::last_line;
use crate::transport::Connection;
use crate::transport::watch::Step;

/// Reads an image (a `docker save` stream) on standard input: the command line holds no
/// value, the image's name travels inside the stream.
pub fn load_command() -> HostCommand {
    HostCommand::new("docker").arg("load")
}

/// The ID of each image on this machine; an image missing here is an error, since the
/// host could not get it either.
pub fn local_ids(images: &[String]) -> Result<BTreeMap<String, String>, ApplyError> {
    let mut out = BTreeMap::new();
    for image in images {
        let output = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", "--", image])
            .output();
        match output {
            Ok(o) if o.status.success() => {
                out.insert(
                    image.clone(),
                    String::from_utf8_lossy(&o.stdout).trim().to_string(),
                );
            }
            _ => {
                return Err(ApplyError::MissingImage {
                    image: image.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// What a stream of `images` is called in the reports: `loading image A` or
/// `loading images A, B`.
pub fn loading(images: &[String]) -> String {
    match images {
        [image] => format!("loading image {image}"),
        _ => format!("loading images {}", images.join(", ")),
    }
}

/// The name of an archive in its directory.
const ARCHIVE: &str = "images.tar";

/// The images of an archive, each with its ID here: a rebuilt image is another archive.
type ImagesAndIds = Vec<(String, String)>;

/// The chain IDs of images here, by image and ID; none for an image Docker said nothing of.
type LocalChains = BTreeMap<(String, String), Option<Vec<Sha256Digest>>>;

/// The `docker save` archives of a run, by the images (and their IDs) each holds: saved the
/// first time a host lacks those images, then shared. Each is a temporary file, removed
/// when the run ends.
#[derive(Default)]
pub struct SavedImages {
    /// Set for a run that sends no image (`--files-only`): nothing is saved.
    not_sent: bool,
    /// The chain IDs of each image's layers here, by image and ID, once asked for; none
    /// when Docker did not say.
    chains: Mutex<LocalChains>,
    saved: Mutex<BTreeMap<ImagesAndIds, Arc<Saved>>>,
}

impl SavedImages {
    /// For a run that sends no image: [`SavedImages::saved`] saves nothing.
    pub fn not_sent() -> Self {
        SavedImages {
            not_sent: true,
            ..SavedImages::default()
        }
    }

    /// The archive of `images`, whose IDs here are in `ids`, for a host whose layer store
    /// holds `held`: saved now unless an earlier host's plan saved it. None for a run that
    /// sends no image, no image to send, or a host that holds none of their layers (the
    /// images are then streamed as `docker save` writes them, see [`stream`]).
    pub fn saved(
        &self,
        images: &[String],
        ids: &BTreeMap<String, String>,
        held: &BTreeSet<Sha256Digest>,
    ) -> Result<Option<Arc<Saved>>, ApplyError> {
        if self.not_sent || images.is_empty() {
            return Ok(None);
        }
        let key: ImagesAndIds = (images.iter())
            .map(|image| (image.clone(), ids.get(image).cloned().unwrap_or_default()))
            .collect();
        if !self.holds_a_layer(&key, held) {
            return Ok(None);
        }
        // Held while saving: the other hosts lacking the same images wait for this one.
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(archive) = saved.get(&key) {
            return Ok(Some(Arc::clone(archive)));
        }
        let archive = Arc::new(Saved::save(images)?);
        saved.insert(key, Arc::clone(&archive));
        Ok(Some(archive))
    }

    /// Whether a host whose layer store holds `held` holds a layer of `images`: an image
    /// whose layers are not known here counts as one.
    fn holds_a_layer(&self, images: &ImagesAndIds, held: &BTreeSet<Sha256Digest>) -> bool {
        if held.is_empty() {
            return false;
        }
        let mut chains = self.chains.lock().unwrap_or_else(|e| e.into_inner());
        images.iter().any(|key| {
            let image = &key.0;
            (chains.entry(key.clone()))
                .or_insert_with(|| local_chains(image))
                .as_ref()
                .is_none_or(|chains| chains.iter().any(|c| held.contains(c)))
        })
    }
}

/// The chain IDs of the layers of `image` on this machine; none when Docker does not say.
fn local_chains(image: &str) -> Option<Vec<Sha256Digest>> {
    let output = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{range .RootFS.Layers}}{{.}} {{end}}",
        ])
        .args(["--", image])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    listed_chain_ids(&String::from_utf8_lossy(&output.stdout), IMAGE_LAYERS)
}

/// `docker save` of `images` into `file`, or to its standard output. In a process group of
/// its own: the terminal's Ctrl-C is synprov's to handle, and a save in flight finishes.
fn docker_save(images: &[String], file: Option<&Path>) -> Command {
    let mut save = Command::new("docker");
    save.arg("save");
    if let Some(file) = file {
        save.arg("-o").arg(file);
    }
    save.arg("--").args(images).process_group(0);
    save
}

/// A `docker save` archive of some images, in a temporary file, and what is known of it.
pub struct Saved {
    images: Vec<String>,
    /// A directory of its own, removed with it: `docker save -o` writes the archive beside
    /// its path and renames it into place.
    dir: tempfile::TempDir,
    /// None when the archive could not be read: it is then sent whole, as Docker wrote it.
    archive: Option<Archive>,
}

impl Saved {
    /// Saves `images` with `docker save` into a temporary file, and reads it.
    fn save(images: &[String]) -> Result<Saved, ApplyError> {
        let missing = || ApplyError::MissingImage {
            image: images.join(", "),
        };
        let dir = tempfile::Builder::new()
            .prefix("synprov-images-")
            .tempdir()
            .map_err(|e| ApplyError::SaveImages {
                images: images.join(", "),
                reason: e.to_string(),
            })?;
        let saved = docker_save(images, Some(&dir.path().join(ARCHIVE)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|_| missing())?;
        if !saved.status.success() {
            return Err(ApplyError::SaveImages {
                images: images.join(", "),
                reason: String::from_utf8_lossy(&saved.stderr).trim().to_string(),
            });
        }
        let saved = Saved {
            images: images.to_vec(),
            dir,
            archive: None,
        };
        let archive = saved.open().ok().and_then(|f| Archive::read(f).ok());
        Ok(Saved { archive, ..saved })
    }

    fn open(&self) -> Result<File, ApplyError> {
        File::open(self.dir.path().join(ARCHIVE)).map_err(|e| ApplyError::SaveImages {
            images: self.images.join(", "),
            reason: e.to_string(),
        })
    }

    /// What to send to a host whose layer store holds `held`; none when the archive could
    /// not be read (it is sent whole).
    fn select(&self, held: &BTreeSet<Sha256Digest>) -> Option<Selection> {
        Some(self.archive.as_ref()?.select(held))
    }

    /// How much of each image is sent to a host whose layer store holds `held`, by image
    /// reference (`ids`: the images' IDs here).
    pub fn sending(
        &self,
        held: &BTreeSet<Sha256Digest>,
        ids: &BTreeMap<String, String>,
    ) -> BTreeMap<String, Sending> {
        let Some(selection) = self.select(held) else {
            return BTreeMap::new();
        };
        (self.images.iter())
            .filter_map(|image| {
                let id = ids.get(image).map_or("", String::as_str);
                let own = selection.image(image, id)?;
                let (bytes, of) = (own.bytes, own.of);
                Some((image.clone(), Sending { bytes, of }))
            })
            .collect()
    }
}

/// Streams `images` into the host's Docker as `docker save` writes them, for a host that
/// holds none of their layers: in two streams at once when there are two images or more,
/// each on a connection of its own (see [`halves`]); in one when a second connection cannot
/// be opened. Only the first says how far it got, every few seconds.
pub fn stream(
    connection: &Connection,
    images: &[String],
    say: &dyn Fn(String),
) -> Result<(), ApplyError> {
    let (here, beside) = halves(images, &local_sizes(images));
    let other = if beside.is_empty() {
        None
    } else {
        connection.reopen().ok()
    };
    let Some(other) = other else {
        return stream_one(connection, images, loading(images), say);
    };
    // Part of the image step in flight on `connection`: an interrupt lets both finish.
    other.go_on_with(Step::Image)?;
    let what = loading(images);
    say(format!(
        "{what}: two streams at once, {} and {}",
        here.join(", "),
        beside.join(", ")
    ));
    let this_half = format!("{what}: the stream of {}", here.join(", "));
    let other_half = format!("{what}: the stream of {}", beside.join(", "));
    let failed = ApplyError::Step {
        host: connection.host_name().to_string(),
        step: other_half.clone(),
        tail: "the stream's thread panicked".into(),
    };
    std::thread::scope(|scope| {
        let other_half = scope.spawn(move || stream_one(&other, &beside, other_half, &|_| {}));
        let this_half = stream_one(connection, &here, this_half, say);
        this_half.and(other_half.join().unwrap_or(Err(failed)))
    })
}

/// `images` in two groups of about the same size, largest first, each into the lighter
/// group (`sizes` in the same order; the second group empty for fewer than two images).
/// Two `docker load`s at once take less time than one of both on a host with a core to
/// spare (Docker unpacks each stream's layers on one thread), and each stream is encrypted
/// on a thread of its own here; the base layers the groups share are sent to each.
fn halves(images: &[String], sizes: &[u64]) -> (Vec<String>, Vec<String>) {
    let mut order: Vec<(u64, &String)> = sizes.iter().copied().zip(images).collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let (mut first, mut second) = ((0, Vec::new()), (0, Vec::new()));
    for (size, image) in order {
        let lighter = if second.0 < first.0 {
            &mut second
        } else {
            &mut first
        };
        lighter.0 += size;
        lighter.1.push(image.clone());
    }
    (first.1, second.1)
}

/// The size of each image here, in the order of `images`; zeros when Docker does not say.
fn local_sizes(images: &[String]) -> Vec<u64> {
    let output = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", "--"])
        .args(images)
        .output()
        .ok()
        .filter(|o| o.status.success());
    let sizes: Vec<u64> = output
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    if sizes.len() == images.len() {
        sizes
    } else {
        vec![0; images.len()]
    }
}

/// Streams `images` into the host's Docker in one `docker save`, as it writes them, saying
/// how far it got every few seconds as `what`.
fn stream_one(
    connection: &Connection,
    images: &[String],
    what: String,
    say: &dyn Fn(String),
) -> Result<(), ApplyError> {
    let host = connection.host_name().to_string();
    let missing = || ApplyError::MissingImage {
        image: images.join(", "),
    };
    let mut save = docker_save(images, None)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|_| missing())?;
    let Some(stream) = save.stdout.take() else {
        return Err(missing());
    };
    let mut stream = Metered::new(stream, &what, say);
    let output = connection.exec(&connection.privileged(load_command()), &mut stream)?;
    let saved = save.wait().map(|s| s.success()).unwrap_or(false);
    if !saved || !output.success() {
        return Err(ApplyError::Step {
            host,
            step: what,
            tail: output.tail(10),
        });
    }
    Ok(())
}

/// Loads the images of `saved` into the host's Docker, without the layer files of the
/// layers it holds (`held`), saying how far it got every few seconds. A host that refuses
/// the partial archive (a Docker on containerd's image store may want every layer) gets
/// the whole archive, once, and the operator is told.
pub fn load(
    connection: &Connection,
    saved: &Saved,
    held: &BTreeSet<Sha256Digest>,
    say: &dyn Fn(String),
) -> Result<(), ApplyError> {
    let host = connection.host_name().to_string();
    let what = loading(&saved.images);
    let open = || saved.open();
    let whole = || -> Result<_, ApplyError> {
        let file = open()?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut stream = Metered::with_total(file, &what, size, say);
        Ok(connection.exec(&connection.privileged(load_command()), &mut stream)?)
    };
    let partial = saved
        .archive
        .as_ref()
        .map(|archive| (archive, archive.select(held)))
        .filter(|(_, selection)| !selection.is_whole());
    let (output, sent) = match partial {
        None => (whole()?, None),
        Some((archive, selection)) => {
            let skipped = format!(
                "{what} ({} MB the host has skipped)",
                megabytes(selection.of - selection.bytes)
            );
            let mut stream = Metered::with_total(
                archive.stream(open()?, &selection),
                &skipped,
                selection.bytes,
                say,
            );
            let output = connection.exec(&connection.privileged(load_command()), &mut stream)?;
            if output.success() {
                (output, Some(selection))
            } else {
                say(format!(
                    "{what}: the host refused the archive without the layers it has ({}); \
                     sending the whole images",
                    last_line(&output.tail(3))
                ));
                (whole()?, None)
            }
        }
    };
    if !output.success() {
        return Err(ApplyError::Step {
            host,
            step: what,
            tail: output.tail(10),
        });
    }
    if let Some(selection) = sent {
        say(format!(
            "{what}: {} of {} MB sent (layers the host has were skipped)",
            megabytes(selection.bytes),
            megabytes(selection.of)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_loaded_by_a_command_line_that_holds_no_value() {
        assert_eq!(load_command().line(), "docker load");
    }

    #[test]
    fn only_a_host_holding_a_layer_of_the_images_gets_a_saved_archive() {
        let digest = |n: usize| Sha256Digest::parse(&format!("sha256:{n:064x}")).unwrap();
        let key = |image: &str| (image.to_string(), format!("sha256:{}", "1".repeat(64)));
        let images = SavedImages::default();
        images.chains.lock().unwrap().extend([
            (key("a:1"), Some(vec![digest(1), digest(2)])),
            (key("unknown:1"), None),
        ]);
        let held = |chains: &[usize]| chains.iter().map(|n| digest(*n)).collect();
        assert!(images.holds_a_layer(&vec![key("a:1")], &held(&[2, 9])));
        assert!(!images.holds_a_layer(&vec![key("a:1")], &held(&[3])));
        assert!(
            images.holds_a_layer(&vec![key("a:1"), key("unknown:1")], &held(&[3])),
            "an image whose layers are not known here may share some"
        );
        assert!(
            !images.holds_a_layer(&vec![key("never-asked:1")], &held(&[])),
            "a host with no layer (a first apply) holds none, and Docker is not asked"
        );
        let ids = BTreeMap::from([key("never-asked:1")]);
        let none = images.saved(&["never-asked:1".to_string()], &ids, &held(&[]));
        assert!(matches!(none, Ok(None)), "streamed, not saved");
        let not_sent = SavedImages::not_sent().saved(&["a:1".to_string()], &ids, &held(&[1]));
        assert!(matches!(not_sent, Ok(None)));
    }

    #[test]
    fn images_go_in_two_streams_of_about_the_same_size() {
        let images: Vec<String> = ["synapse", "postgres", "redis", "nginx"]
            .map(String::from)
            .into();
        let (first, second) = halves(&images, &[371, 378, 89, 91]);
        assert_eq!(
            (first, second),
            (
                vec!["postgres".to_string(), "redis".into()],
                vec!["synapse".to_string(), "nginx".into()]
            )
        );
        let (one, none) = halves(&images[..1], &[371]);
        assert_eq!((one.len(), none.len()), (1, 0), "one image, one stream");
        let (all, none) = halves(&images, &[0; 4]);
        assert_eq!(
            (all.len(), none.len()),
            (4, 0),
            "sizes unknown here: one stream"
        );
    }

    #[test]
    fn a_stream_of_several_images_names_them_all() {
        let images = ["a:1".to_string(), "b:2".to_string()];
        assert_eq!(loading(&images[..1]), "loading image a:1");
        assert_eq!(loading(&images), "loading images a:1, b:2");
    }
}
