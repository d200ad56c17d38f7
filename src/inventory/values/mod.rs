//! Values of the inventory as typed values: each made by one parser at the boundary, with
//! the narrowest grammar that serves, so that later stages (templates, command builders)
//! can only ever receive a value that means what the inventory documents.
//!
//! A parser returns the reason for a refusal; `validate` turns it into a located error.

mod acme;
mod base_url;
mod calendar;
mod contact;
mod deploy_dir;
mod homeserver;
mod image;
mod memory;
mod name;
mod network;
mod repository;
mod time_zone;
mod tls;

pub use acme::{
    AcmeSettings, Challenge, DnsCredentials, DnsProvider, KeyType, LETS_ENCRYPT,
    LETS_ENCRYPT_STAGING, MAX_NAMES, acme_directory, acme_email, acme_name, ca_bundle, covers,
};
pub use base_url::public_baseurl;
pub use calendar::Calendar;
pub use contact::admin_contact;
pub use deploy_dir::DeployDir;
pub use homeserver::check_homeserver_table;
pub use image::ImageRef;
pub use memory::MemorySize;
pub use name::{DeploymentName, HostName, UserName, check_dns_name, check_host, check_server_name};
pub use network::AddressRange;
pub use repository::{HostKey, SftpTarget};
pub use time_zone::TimeZone;
pub use tls::{TlsFile, TlsPair, read_text, read_tls_pair};

/// A string newtype whose only constructor is its parser: it reads as a `&str` everywhere
/// (templates, builders, output) but cannot be made from an unchecked string.
macro_rules! checked_string {
    ($name:ident) => {
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}
pub(crate) use checked_string;

/// Refuses control characters (newlines, escapes, NUL): no inventory string that is not a
/// free text of Synapse's own needs one, and each would change the meaning of a line-based
/// file (env files, `postgresql.conf`, Nginx) or of the terminal showing it.
pub fn no_control_characters(text: &str) -> Result<(), String> {
    match text.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("it holds the control character {:?}", c)),
        None => Ok(()),
    }
}
