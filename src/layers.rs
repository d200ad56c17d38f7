//! Image layers as Docker's layer store names them. A layer is stored under its chain ID,
//! which names the layer together with every layer below it: the same diff (the same
//! content) on another base is another layer. Docker's tar loader (`docker load`) opens a
//! layer's file only when the host's store lacks its chain ID, so an archive may leave out
//! the files of the layers a host holds (see `apply::archive`).

use std::fmt;

use sha2::{Digest, Sha256};

/// A `sha256:` digest of 64 lower-case hex digits, as Docker prints diff IDs, chain IDs and
/// image IDs: what a host says is one is checked by [`Sha256Digest::parse`] before use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(String);

impl Sha256Digest {
    /// The digest in `text`, or none when it is not exactly `sha256:` and 64 hex digits
    /// (upper-case digits are read as lower-case: Docker prints lower-case).
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Sha256Digest(format!("sha256:{}", hex.to_ascii_lowercase())))
    }

    /// The digest of `bytes`: a config's digest is its image's ID.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The chain ID of each layer of an image whose diff IDs (its config's `rootfs.diff_ids`,
/// bottom first) are `diff_ids`: the first layer's is its diff ID, each next one's is the
/// SHA-256 of the chain ID below, a space and its diff ID (the OCI image spec's ChainID).
pub fn chain_ids(diff_ids: &[Sha256Digest]) -> Vec<Sha256Digest> {
    let mut chains: Vec<Sha256Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let chain = match chains.last() {
            None => diff_id.clone(),
            Some(below) => Sha256Digest::of(format!("{below} {diff_id}").as_bytes()),
        };
        chains.push(chain);
    }
    chains
}

/// The chain IDs of an image's layers listed in `text` by their diff IDs, bottom first,
/// separated by white space (as `docker image inspect` prints them with a `range`), read up
/// to `most` layers (the chains below stay true). None when anything else is in the list.
pub fn listed_chain_ids(text: &str, most: usize) -> Option<Vec<Sha256Digest>> {
    let diff_ids: Option<Vec<Sha256Digest>> = text
        .split_ascii_whitespace()
        .take(most)
        .map(Sha256Digest::parse)
        .collect();
    Some(chain_ids(&diff_ids?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(text: &str) -> Sha256Digest {
        Sha256Digest::parse(text).unwrap()
    }

    #[test]
    fn only_sha256_and_64_hex_digits_is_a_digest() {
        let hex = "0a".repeat(32);
        assert_eq!(
            Sha256Digest::parse(&format!("sha256:{}", hex.to_uppercase())),
            Some(Sha256Digest(format!("sha256:{hex}")))
        );
        for hostile in [
            String::new(),
            hex.clone(),
            format!("sha512:{hex}"),
            format!("sha256:{hex}0"),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{}g", &hex[1..]),
            format!("sha256:{hex} "),
            format!(" sha256:{hex}"),
            format!("sha256:{}é", &hex[2..]),
        ] {
            assert_eq!(Sha256Digest::parse(&hostile), None, "{hostile:?}");
        }
    }

    /// The chain IDs a Docker 20.10 engine stored two layers under
    /// (`/var/lib/docker/image/overlay2/layerdb/sha256/CHAIN/diff` holds each diff ID): an
    /// image of one file on `scratch`, and one more file on top of it.
    #[test]
    fn chain_ids_are_those_docker_stores_its_layers_under() {
        let diff_ids = [
            digest("sha256:6244378499844fb03e0633c3c8b7b8fec272df3eea9767603a8c7fe389e59270"),
            digest("sha256:2360acbe5cb0b980341b937ec51f2e7c454a1edb9f6f959da40d8607adbe0f83"),
        ];
        assert_eq!(
            chain_ids(&diff_ids),
            [
                diff_ids[0].clone(),
                digest("sha256:309d2f4d96bec24c15d9fd62f061fb57ac089975bc8387a10d70de110c1f7e8f"),
            ]
        );
        assert!(chain_ids(&[]).is_empty());
    }
}
