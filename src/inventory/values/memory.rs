//! An amount of memory as `postgresql.conf` writes it (`2GB`, `512MB`).

use std::fmt;

/// An amount of memory, in kilobytes (Postgres' smallest memory unit). Parsed from the
/// units Postgres itself reads (`kB`, `MB`, `GB`, `TB`, powers of 1024, case as Postgres
/// spells them), and shown in the largest unit that states it exactly, so that a value
/// pinned in the inventory and one synprov computed are written the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemorySize {
    kb: u64,
}

/// The units, largest first, with their size in kilobytes.
const UNITS: [(&str, u64); 4] = [("TB", 1 << 30), ("GB", 1 << 20), ("MB", 1 << 10), ("kB", 1)];

/// Most memory a setting may be given: far beyond any host, small enough that a typo (an
/// extra zero or two) is caught, and below every Postgres memory setting's own ceiling.
const MAX_KB: u64 = 1 << 30;

impl MemorySize {
    pub const fn from_kb(kb: u64) -> MemorySize {
        MemorySize { kb }
    }

    pub const fn from_mb(mb: u64) -> MemorySize {
        MemorySize { kb: mb << 10 }
    }

    pub const fn kb(self) -> u64 {
        self.kb
    }

    /// Whole megabytes, rounded down: computed sizes are stated in MB at the finest.
    pub const fn whole_mb(self) -> u64 {
        self.kb >> 10
    }

    /// Megabytes, rounded up (a Docker `shm_size` never smaller than asked).
    pub const fn mb_rounded_up(self) -> u64 {
        self.kb.div_ceil(1 << 10)
    }

    /// `text` as Postgres reads a memory setting with a unit: digits, then one of the units.
    pub fn parse(text: &str) -> Result<MemorySize, String> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let Some((_, per)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err("give a number and a unit, one of kB, MB, GB or TB, e.g. \"2GB\"".into());
        };
        let kb = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(*per))
            .ok_or("give a number before the unit, e.g. \"512MB\"")?;
        if kb == 0 || kb > MAX_KB {
            return Err("give an amount between 1kB and 1TB".into());
        }
        Ok(MemorySize { kb })
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, per) = UNITS
            .iter()
            .find(|(_, per)| self.kb.is_multiple_of(*per) && self.kb >= *per)
            .unwrap_or(&("kB", 1));
        write!(f, "{}{unit}", self.kb / per)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_postgres_units_and_print_in_the_largest_exact_one() {
        for (text, shown) in [
            ("2GB", "2GB"),
            ("512MB", "512MB"),
            ("2048MB", "2GB"),
            ("1536MB", "1536MB"),
            ("64kB", "64kB"),
            ("1TB", "1TB"),
        ] {
            assert_eq!(MemorySize::parse(text).unwrap().to_string(), shown);
        }
        assert_eq!(MemorySize::from_kb(0).to_string(), "0kB");
    }

    #[test]
    fn anything_postgres_would_not_read_is_refused() {
        for bad in [
            "2gb",
            "2 GB",
            "GB",
            "2",
            "-1GB",
            "1.5GB",
            "2GB\nfsync = off",
            "0MB",
            "2TB",
            "",
            "99999999999999999999TB",
        ] {
            assert!(MemorySize::parse(bad).is_err(), "{bad:?}");
        }
    }
}
