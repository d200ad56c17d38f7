//! The deployment's time zone.

use super::checked_string;

/// An IANA time zone name (`Europe/Berlin`, `Etc/UTC`), checked against the tz database:
/// it is written into `postgresql.conf` and the Synapse env file, where anything else
/// (a newline above all) would add settings of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZone(String);

checked_string!(TimeZone);

impl TimeZone {
    pub fn parse(text: &str) -> Result<TimeZone, String> {
        text.parse::<chrono_tz::Tz>()
            .map(|zone| TimeZone(zone.name().to_string()))
            .map_err(|_| {
                "not an IANA time zone name such as \"Etc/UTC\" or \"Europe/Berlin\"".into()
            })
    }

    pub fn utc() -> TimeZone {
        TimeZone("Etc/UTC".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_pass_and_anything_else_is_refused() {
        assert_eq!(&*TimeZone::parse("Europe/Berlin").unwrap(), "Europe/Berlin");
        for bad in [
            "Etc/UTC'\narchive_command = 'touch /tmp/x",
            "UTC\nEVIL=1",
            "Mars/Olympus",
            "",
            "../../etc/passwd",
        ] {
            assert!(TimeZone::parse(bad).is_err(), "{bad:?}");
        }
    }
}
