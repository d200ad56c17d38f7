//! Client addresses for Nginx's access rules (`admin_allow`, `trusted_proxies`).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// One address or CIDR range (`127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`), and nothing
/// else: Nginx's `allow` and `set_real_ip_from` also take `all` and `unix:`, and the text
/// after them is Nginx syntax, so a parsed address is the only thing that reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRange {
    Address(IpAddr),
    /// Host bits cleared, as Nginx expects (it warns about `10.0.0.1/8`).
    Range(IpNet),
}

impl AddressRange {
    pub fn parse(text: &str) -> Result<AddressRange, String> {
        if text.contains('/') {
            text.parse::<IpNet>()
                .map(|net| AddressRange::Range(net.trunc()))
                .map_err(|_| "not a CIDR range such as \"10.0.0.0/8\" or \"fd00::/8\"".into())
        } else {
            text.parse::<IpAddr>()
                .map(AddressRange::Address)
                .map_err(|_| "not an IP address such as \"127.0.0.1\" or \"::1\"".into())
        }
    }

    /// Whether it takes in every address of its family (`0.0.0.0/0`, `::/0`).
    pub fn is_everyone(&self) -> bool {
        matches!(self, AddressRange::Range(net) if net.prefix_len() == 0)
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressRange::Address(address) => address.fmt(f),
            AddressRange::Range(net) => net.fmt(f),
        }
    }
}

impl serde::Serialize for AddressRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_and_ranges_pass_and_print_as_nginx_reads_them() {
        for (text, shown) in [
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "::1"),
            ("10.0.0.1/8", "10.0.0.0/8"),
            ("fd00::/8", "fd00::/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
        ] {
            assert_eq!(AddressRange::parse(text).unwrap().to_string(), shown);
        }
        for bad in [
            "all",
            "all; allow 0.0.0.0/0",
            "unix:",
            "10.0.0.0/33",
            "127.0.0.1 ",
            "localhost",
            "",
            "1.2.3.4;\n",
        ] {
            assert!(AddressRange::parse(bad).is_err(), "{bad:?}");
        }
        assert!(AddressRange::parse("::/0").unwrap().is_everyone());
        assert!(!AddressRange::parse("10.0.0.0/8").unwrap().is_everyone());
    }
}
