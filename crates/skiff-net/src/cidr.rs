//! IPv4 CIDRs (`10.42.0.0/24`).

use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an IPv4 CIDR with a prefix of /8 to /30 (like 10.42.0.0/24)")]
pub struct CidrError(pub String);

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        if !(8..=30).contains(&prefix) {
            return Err(err());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    /// The usable host addresses: network + 1 ..= broadcast − 1.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network) + 1;
        let last = u32::from(self.network) + (1u32 << (32 - self.prefix)) - 2;
        (first..=last).map(Ipv4Addr::from)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.network)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// Its subnets of `prefix` bits, in address order (none if `prefix` is shorter than
    /// its own or longer than /30).
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Cidr> {
        let count = if (self.prefix..=30).contains(&prefix) {
            1u64 << (prefix - self.prefix)
        } else {
            0
        };
        let base = u32::from(self.network) as u64;
        (0..count).map(move |i| Cidr {
            network: Ipv4Addr::from((base + (i << (32 - prefix))) as u32),
            prefix,
        })
    }

    /// The first host address: the node's gateway on the pod bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
}

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        Cidr::parse(s)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_normalize_and_list_hosts() {
        let c = Cidr::parse("10.42.3.7/24").unwrap();
        assert_eq!(c.to_string(), "10.42.3.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 42, 3, 1));
        assert_eq!(c.hosts().count(), 254);
        assert_eq!(c.hosts().last(), Some(Ipv4Addr::new(10, 42, 3, 254)));
        assert_eq!(Cidr::parse("10.0.0.0/30").unwrap().hosts().count(), 2);
        for bad in ["10.0.0.0", "10.0.0.0/31", "x/24", "10.0.0.0/7", "::1/64"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_cidrs_split_into_node_subnets() {
        let cluster = Cidr::parse("10.42.0.0/16").unwrap();
        let nodes: Vec<String> = cluster.subnets(24).take(2).map(|c| c.to_string()).collect();
        assert_eq!(nodes, ["10.42.0.0/24", "10.42.1.0/24"]);
        assert_eq!(cluster.subnets(24).count(), 256);
        assert_eq!(
            cluster.subnets(24).last().unwrap().to_string(),
            "10.42.255.0/24"
        );
        assert_eq!(cluster.subnets(8).count(), 0);
        assert!(cluster.contains(Ipv4Addr::new(10, 42, 200, 1)));
        assert!(!cluster.contains(Ipv4Addr::new(10, 43, 0, 1)));
        let node = Cidr::parse("10.42.7.0/24").unwrap();
        assert!(cluster.overlaps(&node) && node.overlaps(&cluster));
        assert!(!node.overlaps(&Cidr::parse("10.42.8.0/24").unwrap()));
    }
}
