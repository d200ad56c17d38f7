//! Images streamed from this machine to a host (`docker save` into `docker load` over the
//! connection), for hosts that cannot pull: skipped when the host has the same image ID.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use super::ApplyError;
use crate::transport::Connection;

/// The ID of each image on this machine; an image missing here is an error, since the
/// host could not get it either.
pub fn local_ids(images: &[String]) -> Result<BTreeMap<String, String>, ApplyError> {
    let mut out = BTreeMap::new();
    for image in images {
        let output = Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", image])
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

/// Streams `image` into the host's Docker.
pub fn load(connection: &Connection, image: &str) -> Result<(), ApplyError> {
    let host = connection.host_name().to_string();
    let mut save = Command::new("docker")
        .args(["save", image])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|_| ApplyError::MissingImage {
            image: image.to_string(),
        })?;
    let mut stream = save.stdout.take().expect("piped");
    let output = connection.exec(&connection.privileged("docker load"), &mut stream)?;
    let saved = save.wait().map(|s| s.success()).unwrap_or(false);
    if !saved || !output.success() {
        return Err(ApplyError::Step {
            host,
            step: format!("loading image {image}"),
            tail: output.tail(10),
        });
    }
    Ok(())
}
