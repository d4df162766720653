//! This machine's own address, as a node reports it (kubelet's default `--node-ip`).

use std::net::Ipv4Addr;

use crate::ip::Netns;

/// The IPv4 address of the interface that holds the default route; else the first global
/// one; else loopback.
pub fn host_address() -> Ipv4Addr {
    let here = Netns::Current;
    let default_dev = here
        .ip(&["-4", "route", "show", "default"])
        .ok()
        .and_then(|routes| device_of_route(&routes));
    let mut args = vec!["-4", "-o", "addr", "show", "scope", "global"];
    if let Some(dev) = &default_dev {
        args.extend(["dev", dev.as_str()]);
    }
    let listed = here.ip(&args).ok().and_then(|l| first_address(&l));
    let any = || {
        here.ip(&["-4", "-o", "addr", "show", "scope", "global"])
            .ok()
            .and_then(|l| first_address(&l))
    };
    listed.or_else(any).unwrap_or(Ipv4Addr::LOCALHOST)
}

/// `dev X` of the first route in `ip route` output.
fn device_of_route(routes: &str) -> Option<String> {
    let line = routes.lines().next()?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "dev")?;
    words.next().map(str::to_string)
}

/// The first `inet A/P` of `ip -o addr` output.
fn first_address(listing: &str) -> Option<Ipv4Addr> {
    listing.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == "inet")?;
        words.next()?.split('/').next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iproute2_output() {
        assert_eq!(
            device_of_route(
                "default via 192.0.2.254 dev ens3 proto dhcp src 192.0.2.7 metric 100\n"
            )
            .as_deref(),
            Some("ens3")
        );
        assert_eq!(device_of_route(""), None);
        let addrs = "2: ens3    inet 192.0.2.7/24 brd 192.0.2.255 scope global dynamic ens3\\       valid_lft 85000sec\n";
        assert_eq!(first_address(addrs), Some(Ipv4Addr::new(192, 0, 2, 7)));
        assert!(!host_address().is_unspecified());
    }
}
