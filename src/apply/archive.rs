//! An image archive as `docker save` writes it, read from a file on this machine: which
//! entry holds which layer of which image, and a copy of it without the layer files whose
//! chain a host already holds.
//!
//! Docker's tar loader (moby's `image/tarexport/load.go`) reads `manifest.json`, and for
//! each layer of each image first asks its layer store for the layer's chain ID; only when
//! the store lacks it does it open the layer's file from the archive. A layer file the
//! host's store already holds is never read, so it may be left out. `docker save` writes
//! `manifest.json` after the layers (and names layer files by v1 IDs in the legacy format,
//! by blob digest in the OCI format of Docker 25+), so the archive is read whole from a
//! file before anything is sent. The archive's JSON is sent as it is: only layer files go.
//! A Docker that loads through containerd's image store may want every blob: the caller
//! sends the whole archive when a partial one is refused.

use std::collections::BTreeSet;
use std::io::{self, Read, Seek, SeekFrom};

use serde::Deserialize;
use thiserror::Error;

use crate::layers::{Sha256Digest, chain_ids};

/// The largest JSON file (`manifest.json`, an image's config) read from an archive.
const MAX_JSON: u64 = 16 << 20;
/// How many symbolic links are followed from a layer's path to its file (the legacy format
/// links a layer saved twice to its first copy).
const MAX_LINKS: usize = 8;
/// The end of a tar archive: two blocks of zeros.
const TRAILER: u64 = 1024;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("reading the image archive: {0}")]
    Io(#[from] io::Error),
    #[error("the image archive is not one `docker save` writes: {0}")]
    Format(String),
}

/// One entry of the archive: its bytes from its first header (extension headers included)
/// to the end of its padded data.
#[derive(Debug)]
struct Entry {
    path: String,
    start: u64,
    end: u64,
    /// The entry's target, when it is a symbolic link.
    link: Option<String>,
}

/// One image of the archive: its ID (its config's digest) and, bottom first, the chain ID
/// of each layer with the index of the entry holding that layer's file.
#[derive(Debug)]
struct Image {
    id: Sha256Digest,
    /// The references `docker save` wrote for it (`RepoTags`).
    tags: Vec<String>,
    config: usize,
    layers: Vec<(Sha256Digest, Option<usize>)>,
}

/// What is known of an archive once read: its entries and its images.
#[derive(Debug)]
pub struct Archive {
    entries: Vec<Entry>,
    images: Vec<Image>,
}

#[derive(Deserialize)]
struct ManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// The archive's bytes to send to one host: which entries, how many bytes, and per image
/// how many of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    keep: Vec<bool>,
    /// The bytes of the stream: the entries kept and the end of the archive.
    pub bytes: u64,
    /// The bytes of the whole archive.
    pub of: u64,
    /// Per image, the bytes of its own config and layer files.
    pub images: Vec<ImageBytes>,
}

/// The bytes of an image's own config and layer files in a [`Selection`]: those sent, and
/// all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBytes {
    id: Sha256Digest,
    tags: Vec<String>,
    pub bytes: u64,
    pub of: u64,
}

impl Selection {
    /// The bytes of the image `reference`, whose ID on this machine is `id`: found by its
    /// ID (its config's digest), or by the tag `docker save` wrote for it where Docker's ID
    /// is another digest (containerd's image store names an image by its manifest).
    pub fn image(&self, reference: &str, id: &str) -> Option<&ImageBytes> {
        let id = Sha256Digest::parse(id);
        let by_id = self.images.iter().find(|i| Some(&i.id) == id.as_ref());
        by_id.or_else(|| {
            (self.images.iter()).find(|i| i.tags.iter().any(|t| familiar(t) == familiar(reference)))
        })
    }

    /// Whether the stream is the whole archive.
    pub fn is_whole(&self) -> bool {
        self.keep.iter().all(|k| *k)
    }
}

impl Archive {
    /// Reads an archive's entries, then its `manifest.json` and each image's config.
    pub fn read<R: Read + Seek>(mut file: R) -> Result<Archive, ArchiveError> {
        let mut entries = Vec::new();
        {
            let mut archive = tar::Archive::new(&mut file);
            let mut end = 0;
            for entry in archive.entries_with_seek()? {
                let entry = entry?;
                let start = end;
                end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
                let path = normal_path(&String::from_utf8_lossy(&entry.path_bytes()));
                let link = (entry.header().entry_type() == tar::EntryType::Symlink)
                    .then(|| entry.link_name_bytes())
                    .flatten()
                    .map(|target| String::from_utf8_lossy(&target).into_owned());
                entries.push(Entry {
                    path,
                    start,
                    end,
                    link,
                });
            }
        }
        let mut archive = Archive {
            entries,
            images: Vec::new(),
        };
        let manifest: Vec<ManifestItem> = archive.json(&mut file, "manifest.json")?;
        for item in manifest {
            let config = archive
                .find(&item.config)
                .ok_or_else(|| missing(&item.config))?;
            let bytes = archive.contents(&mut file, config)?;
            let parsed: Config = serde_json::from_slice(&bytes)
                .map_err(|e| ArchiveError::Format(format!("{}: {e}", item.config)))?;
            let diff_ids = (parsed.rootfs.diff_ids.iter())
                .map(|d| Sha256Digest::parse(d).ok_or_else(|| bad_diff_id(&item.config, d)))
                .collect::<Result<Vec<_>, _>>()?;
            if diff_ids.len() != item.layers.len() {
                return Err(ArchiveError::Format(format!(
                    "{} has {} layer(s), its manifest {}",
                    item.config,
                    diff_ids.len(),
                    item.layers.len()
                )));
            }
            let layers = chain_ids(&diff_ids)
                .into_iter()
                .zip(&item.layers)
                .map(|(chain, path)| (chain, archive.find(path)))
                .collect();
            archive.images.push(Image {
                id: Sha256Digest::of(&bytes),
                tags: item.tags.unwrap_or_default(),
                config,
                layers,
            });
        }
        Ok(archive)
    }

    /// The index of the regular file `path` names, following symbolic links.
    fn find(&self, path: &str) -> Option<usize> {
        let mut path = normal_path(path);
        for _ in 0..=MAX_LINKS {
            let index = self.entries.iter().position(|e| e.path == path)?;
            match &self.entries[index].link {
                None => return Some(index),
                Some(target) => path = linked(&path, target)?,
            }
        }
        None
    }

    fn contents<R: Read + Seek>(
        &self,
        file: &mut R,
        index: usize,
    ) -> Result<Vec<u8>, ArchiveError> {
        // The data is the entry's last bytes, before the padding: read the entry's header
        // again through the tar reader for its size.
        let entry = &self.entries[index];
        file.seek(SeekFrom::Start(entry.start))?;
        let mut archive = tar::Archive::new(file.take(entry.end - entry.start));
        let mut entries = archive.entries()?;
        let mut read = entries
            .next()
            .ok_or_else(|| missing(&entry.path))??
            .take(MAX_JSON + 1);
        let mut bytes = Vec::new();
        read.read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_JSON {
            return Err(ArchiveError::Format(format!(
                "{} is over {MAX_JSON} bytes",
                entry.path
            )));
        }
        Ok(bytes)
    }

    fn json<R: Read + Seek, T: serde::de::DeserializeOwned>(
        &self,
        file: &mut R,
        path: &str,
    ) -> Result<T, ArchiveError> {
        let index = self.find(path).ok_or_else(|| missing(path))?;
        serde_json::from_slice(&self.contents(file, index)?)
            .map_err(|e| ArchiveError::Format(format!("{path}: {e}")))
    }

    /// What to send to a host whose layer store holds the layers `held` (chain IDs): every
    /// entry but the layer files that only layers the host holds are read from.
    pub fn select(&self, held: &BTreeSet<Sha256Digest>) -> Selection {
        let mut layer_files = BTreeSet::new();
        let mut needed = BTreeSet::new();
        for image in &self.images {
            // A layer whose file is not found here is the loader's to report.
            for (chain, file) in image.layers.iter().filter_map(|(c, f)| Some((c, (*f)?))) {
                layer_files.insert(file);
                if !held.contains(chain) {
                    needed.insert(file);
                }
            }
        }
        let keep: Vec<bool> = (0..self.entries.len())
            .map(|i| !layer_files.contains(&i) || needed.contains(&i))
            .collect();
        let size = |i: usize| self.entries[i].end - self.entries[i].start;
        let images = (self.images.iter())
            .map(|image| {
                let files: BTreeSet<usize> = image.layers.iter().filter_map(|l| l.1).collect();
                let sent = files
                    .iter()
                    .filter(|f| keep[**f])
                    .map(|f| size(*f))
                    .sum::<u64>();
                let all = files.iter().map(|f| size(*f)).sum::<u64>();
                let config = size(image.config);
                ImageBytes {
                    id: image.id.clone(),
                    tags: image.tags.clone(),
                    bytes: config + sent,
                    of: config + all,
                }
            })
            .collect();
        let total = |keep: &dyn Fn(usize) -> bool| {
            (0..self.entries.len())
                .filter(|i| keep(*i))
                .map(size)
                .sum::<u64>()
                + TRAILER
        };
        Selection {
            bytes: total(&|i| keep[i]),
            of: total(&|_| true),
            images,
            keep,
        }
    }

    /// The archive in `file` as `selection` keeps it, as a stream.
    pub fn stream<R: Read + Seek>(&self, file: R, selection: &Selection) -> Filtered<R> {
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for (entry, _) in self
            .entries
            .iter()
            .zip(&selection.keep)
            .filter(|(_, k)| **k)
        {
            match spans.last_mut() {
                Some(last) if last.1 == entry.start => last.1 = entry.end,
                _ => spans.push((entry.start, entry.end)),
            }
        }
        Filtered {
            file,
            spans,
            next: 0,
            at: None,
            trailer: TRAILER,
        }
    }
}

/// A reference as `docker save` writes its tags: Docker Hub's host and `library/` left out.
fn familiar(reference: &str) -> &str {
    let short = reference.strip_prefix("docker.io/").unwrap_or(reference);
    short.strip_prefix("library/").unwrap_or(short)
}

fn missing(path: &str) -> ArchiveError {
    ArchiveError::Format(format!("{path} is not in it"))
}

fn bad_diff_id(config: &str, diff_id: &str) -> ArchiveError {
    ArchiveError::Format(format!(
        "{config} has a diff ID that is no digest: {diff_id:?}"
    ))
}

/// A path inside the archive without `./` and empty components.
fn normal_path(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The path a symbolic link at `path` to `target` names, inside the archive; none for a
/// target outside it.
fn linked(path: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// The bytes of an archive's kept entries, in order, then the end of the archive.
pub struct Filtered<R> {
    file: R,
    spans: Vec<(u64, u64)>,
    next: usize,
    /// The position in the file, once at a span.
    at: Option<u64>,
    trailer: u64,
}

impl<R: Read + Seek> Read for Filtered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(&(start, end)) = self.spans.get(self.next) {
            let at = match self.at {
                Some(at) => at,
                None => self.file.seek(SeekFrom::Start(start))?,
            };
            if at >= end {
                self.next += 1;
                self.at = None;
                continue;
            }
            let room = buf
                .len()
                .min(usize::try_from(end - at).unwrap_or(usize::MAX));
            let n = self.file.read(&mut buf[..room])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the image archive is shorter than when it was read",
                ));
            }
            self.at = Some(at + n as u64);
            return Ok(n);
        }
        let n = buf
            .len()
            .min(usize::try_from(self.trailer).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.trailer -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn digest(byte: u8) -> Sha256Digest {
        Sha256Digest::parse(&format!("sha256:{}", hex::encode([byte; 32]))).unwrap()
    }

    fn add(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data).unwrap();
    }

    fn link(builder: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, path, target).unwrap();
    }

    fn config(diff_ids: &[&Sha256Digest]) -> Vec<u8> {
        let ids: Vec<String> = diff_ids.iter().map(ToString::to_string).collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "rootfs": {"type": "layers", "diff_ids": ids}
        }))
        .unwrap()
    }

    /// An archive in the legacy layout of `docker save A B`, B being A plus one layer:
    /// A's base layer, B's link to it (the same layer saved twice), B's own layer, with a
    /// path long enough to need an extension header, then the manifest.
    fn legacy_archive() -> (Vec<u8>, Sha256Digest, Sha256Digest, Vec<Sha256Digest>) {
        let (base, top) = (digest(1), digest(2));
        let config_a = config(&[&base]);
        let config_b = config(&[&base, &top]);
        let long = format!("{}/layer.tar", "b".repeat(120));
        let mut builder = tar::Builder::new(Vec::new());
        add(&mut builder, "aaaa/VERSION", b"1.0");
        add(&mut builder, "aaaa/layer.tar", &[1; 5000]);
        add(&mut builder, "a.json", &config_a);
        link(&mut builder, "bbbb/layer.tar", "../aaaa/layer.tar");
        add(&mut builder, &long, &[2; 700]);
        add(&mut builder, "./b.json", &config_b);
        let manifest = serde_json::json!([
            {"Config": "a.json", "RepoTags": ["a:1"], "Layers": ["aaaa/layer.tar"]},
            {"Config": "b.json", "RepoTags": ["b:1"], "Layers": ["bbbb/layer.tar", long]}
        ]);
        add(
            &mut builder,
            "manifest.json",
            manifest.to_string().as_bytes(),
        );
        let bytes = builder.into_inner().unwrap();
        let chains = chain_ids(&[base, top]);
        (
            bytes,
            Sha256Digest::of(&config_a),
            Sha256Digest::of(&config_b),
            chains,
        )
    }

    fn names(bytes: &[u8]) -> Vec<(String, usize)> {
        let mut archive = tar::Archive::new(Cursor::new(bytes));
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                (path, data.len())
            })
            .collect()
    }

    fn filtered(bytes: &[u8], held: &BTreeSet<Sha256Digest>) -> (Selection, Vec<u8>) {
        let archive = Archive::read(Cursor::new(bytes)).unwrap();
        let selection = archive.select(held);
        let mut out = Vec::new();
        archive
            .stream(Cursor::new(bytes), &selection)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len() as u64, selection.bytes);
        (selection, out)
    }

    #[test]
    fn a_host_with_the_base_layer_gets_every_entry_but_the_base_layer_s_file() {
        let (bytes, a, b, chains) = legacy_archive();
        let held = BTreeSet::from([chains[0].clone()]);
        let (selection, out) = filtered(&bytes, &held);
        let long = format!("{}/layer.tar", "b".repeat(120));
        assert_eq!(
            names(&out),
            [
                ("aaaa/VERSION".to_string(), 3),
                ("a.json".to_string(), config(&[&digest(1)]).len()),
                ("bbbb/layer.tar".to_string(), 0),
                (long, 700),
                (
                    "b.json".to_string(),
                    config(&[&digest(1), &digest(2)]).len()
                ),
                ("manifest.json".to_string(), names(&bytes)[6].1),
            ]
        );
        assert!(!selection.is_whole());
        assert_eq!(selection.of, bytes.len() as u64, "the whole archive");
        assert_eq!(selection.bytes, selection.of - 512 - 5120);
        let bytes = |image: &ImageBytes| (image.bytes, image.of);
        let (sent_a, of_a) = bytes(selection.image("a:1", a.as_str()).unwrap());
        let (sent_b, of_b) = bytes(selection.image("b:1", b.as_str()).unwrap());
        assert_eq!((of_a - sent_a, of_b - sent_b), (5632, 5632));
        assert!(of_b > of_a && sent_b > sent_a);
        // Where Docker's image ID is not the config's digest, by the tag in the archive.
        let other_id = format!("sha256:{}", "0".repeat(64));
        let by_tag = selection.image("docker.io/library/b:1", &other_id);
        assert_eq!(by_tag.map(bytes), Some((sent_b, of_b)));
        assert_eq!(selection.image("c:1", &other_id), None);
    }

    #[test]
    fn a_base_layer_under_another_parent_is_another_layer_and_is_sent() {
        let (bytes, ..) = legacy_archive();
        // The host holds B's top diff at the bottom of some image: another chain.
        let held = BTreeSet::from([digest(2)]);
        let (selection, out) = filtered(&bytes, &held);
        assert!(selection.is_whole());
        assert_eq!(out, {
            // Same entries, and the end of the archive right after the last.
            let mut whole = bytes[..names_end(&bytes)].to_vec();
            whole.extend_from_slice(&[0; 1024]);
            whole
        });
    }

    fn names_end(bytes: &[u8]) -> usize {
        let archive = Archive::read(Cursor::new(bytes)).unwrap();
        archive.entries.last().unwrap().end as usize
    }

    #[test]
    fn a_host_with_every_layer_gets_the_configs_and_the_manifest_only() {
        let (bytes, _, b, chains) = legacy_archive();
        let held: BTreeSet<_> = chains.into_iter().collect();
        let (selection, out) = filtered(&bytes, &held);
        assert_eq!(
            names(&out).into_iter().map(|n| n.0).collect::<Vec<_>>(),
            [
                "aaaa/VERSION",
                "a.json",
                "bbbb/layer.tar",
                "b.json",
                "manifest.json"
            ]
        );
        let config_b = 512 + 512 * config(&[&digest(1), &digest(2)]).len().div_ceil(512) as u64;
        assert_eq!(selection.image("b:1", b.as_str()).unwrap().bytes, config_b);
    }

    #[test]
    fn an_archive_that_is_not_docker_s_is_refused_not_misread() {
        let mut builder = tar::Builder::new(Vec::new());
        add(&mut builder, "x", b"1");
        let no_manifest = builder.into_inner().unwrap();
        assert!(matches!(
            Archive::read(Cursor::new(&no_manifest)),
            Err(ArchiveError::Format(_))
        ));
        let mut builder = tar::Builder::new(Vec::new());
        add(
            &mut builder,
            "c.json",
            br#"{"rootfs":{"diff_ids":["sha256:short"]}}"#,
        );
        add(
            &mut builder,
            "manifest.json",
            br#"[{"Config":"c.json","Layers":["l"]}]"#,
        );
        let bad_digest = builder.into_inner().unwrap();
        let error = Archive::read(Cursor::new(&bad_digest)).unwrap_err();
        assert!(error.to_string().contains("no digest"), "{error}");
        let mut builder = tar::Builder::new(Vec::new());
        link(&mut builder, "manifest.json", "../../etc/passwd");
        let escaping = builder.into_inner().unwrap();
        assert!(Archive::read(Cursor::new(&escaping)).is_err());
    }

    #[test]
    fn links_resolve_inside_the_archive_only() {
        assert_eq!(
            linked("b/layer.tar", "../a/layer.tar").as_deref(),
            Some("a/layer.tar")
        );
        assert_eq!(
            linked("b/layer.tar", "/a/layer.tar").as_deref(),
            Some("a/layer.tar")
        );
        assert_eq!(linked("b/layer.tar", "./x").as_deref(), Some("b/x"));
        assert_eq!(linked("b/layer.tar", "../../x"), None);
        assert_eq!(normal_path("./a//b/"), "a/b");
    }
}
