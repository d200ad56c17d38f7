//! Images streamed from this machine to a host (`docker save` into `docker load` over the
//! connection), for hosts that cannot pull: skipped when the host has the same image ID.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::ApplyError;
use super::metered::Metered;
use crate::shell::Command as HostCommand;
use crate::transport::Connection;

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

/// Streams `image` into the host's Docker, saying how far it got every few seconds.
pub fn load(connection: &Connection, image: &str, say: &dyn Fn(String)) -> Result<(), ApplyError> {
    let host = connection.host_name().to_string();
    // In a process group of its own: the terminal's Ctrl-C is synprov's to handle, and the
    // image being sent finishes.
    let mut save = Command::new("docker")
        .args(["save", "--", image])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|_| ApplyError::MissingImage {
            image: image.to_string(),
        })?;
    let Some(stream) = save.stdout.take() else {
        return Err(ApplyError::MissingImage {
            image: image.to_string(),
        });
    };
    let what = format!("loading image {image}");
    let mut stream = Metered::new(stream, &what, say);
    let output = connection.exec(&connection.privileged(load_command()), &mut stream)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_loaded_by_a_command_line_that_holds_no_value() {
        assert_eq!(load_command().line(), "docker load");
    }
}
