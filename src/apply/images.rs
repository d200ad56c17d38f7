//! Images streamed from this machine to a host (`docker save` into `docker load` over the
//! connection), for hosts that cannot pull: skipped when the host has the same image ID.
//! The images a host lacks go in one stream: `docker save` of several images writes each
//! layer once, and the images of a stack share their big base layers.

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

/// What a stream of `images` is called in the reports: `loading image A` or
/// `loading images A, B`.
pub fn loading(images: &[String]) -> String {
    match images {
        [image] => format!("loading image {image}"),
        _ => format!("loading images {}", images.join(", ")),
    }
}

/// Streams `images` into the host's Docker in one `docker save`, saying how far it got
/// every few seconds.
pub fn load(
    connection: &Connection,
    images: &[String],
    say: &dyn Fn(String),
) -> Result<(), ApplyError> {
    let host = connection.host_name().to_string();
    let missing = || ApplyError::MissingImage {
        image: images.join(", "),
    };
    // In a process group of its own: the terminal's Ctrl-C is synprov's to handle, and the
    // stream in flight finishes.
    let mut save = Command::new("docker")
        .arg("save")
        .arg("--")
        .args(images)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|_| missing())?;
    let Some(stream) = save.stdout.take() else {
        return Err(missing());
    };
    let what = loading(images);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_loaded_by_a_command_line_that_holds_no_value() {
        assert_eq!(load_command().line(), "docker load");
    }

    #[test]
    fn a_stream_of_several_images_names_them_all() {
        let images = ["a:1".to_string(), "b:2".to_string()];
        assert_eq!(loading(&images[..1]), "loading image a:1");
        assert_eq!(loading(&images), "loading images a:1, b:2");
    }
}
