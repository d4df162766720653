//! The few rtnetlink requests a node's pod network needs, made from this process: the
//! bridge, a veth pair straight into the pod's namespace and onto the bridge, an address,
//! a link up, a default route, a link removal. On the pod startup path they replace running iproute2's `ip`
//! (two processes a pod, each loading a dozen libraries) with a handful of messages.
//!
//! The messages are `netlink-packet-route`'s, sent over `netlink-sys`'s socket: the wire
//! format (headers, attributes, nests, alignment) is theirs to get right; this module says
//! only what each request holds. New requests (routes to other nodes, VXLAN links) are a
//! message built the same way.
//!
//! A netlink socket acts in the network namespace it was opened in, so a [`Netlink`] for
//! another namespace is opened on a thread that joined it (see `Netns::within`).
//! Each request asks for an acknowledgement and waits for it: errors come back as the
//! kernel's errno.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::InfoVxlan;
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::cidr::Cidr;
use crate::routes::ROUTE_PROTOCOL;

pub struct Netlink {
    socket: Socket,
    seq: u32,
}

/// A link message naming link `index` (0: none), with `up` set in its flags and mask.
fn link(index: u32, up: bool) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    if up {
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
    }
    message
}

/// A permanent neighbour entry on link `index` for `family`: `address` ↔ `mac`.
fn neighbour(
    family: AddressFamily,
    index: u32,
    address: Ipv4Addr,
    mac: [u8; 6],
) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    message.attributes = vec![
        NeighbourAttribute::Destination(NeighbourAddress::Inet(address)),
        NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
    ];
    message
}

/// A forwarding-database entry of the VXLAN link `index`: frames for `mac` go in UDP to
/// `remote` (`bridge fdb … self permanent`).
fn fdb(index: u32, mac: [u8; 6], remote: Ipv4Addr) -> NeighbourMessage {
    let mut message = neighbour(AddressFamily::Bridge, index, remote, mac);
    message.header.flags = NeighbourFlags::Own;
    message
}

/// A main-table unicast route message to `destination`, through `gateway` if given.
fn route(destination: Cidr, gateway: Option<Ipv4Addr>) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = destination.prefix;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::from(ROUTE_PROTOCOL);
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message.attributes = vec![RouteAttribute::Destination(RouteAddress::Inet(
        destination.network,
    ))];
    if let Some(gateway) = gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    }
    message
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let socket = Socket::new(NETLINK_ROUTE)?;
        // Port 0: the kernel.
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends `message` (with `flags` beyond request and acknowledgement) and waits for the
    /// kernel's acknowledgement.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        let mut reply = Vec::with_capacity(8192);
        loop {
            reply.clear();
            match self.socket.recv(&mut reply, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            };
            if let Some(result) = acknowledgement(&reply, self.seq) {
                return result;
            }
        }
    }

    /// Creates the bridge `name`, down (nothing if a link has that name: the caller looked).
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut message = link(0, false);
        message.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Creates the veth pair `name` ↔ `peer`, the peer inside the namespace open as
    /// `peer_netns`, and this end enslaved to the bridge with index `master`, up.
    /// Both ends get `mtu` when one is given (the kernel's default otherwise).
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: RawFd,
        master: u32,
        mtu: Option<u32>,
    ) -> io::Result<()> {
        let mut far = link(0, false);
        far.attributes = vec![
            LinkAttribute::IfName(peer.into()),
            LinkAttribute::NetNsFd(peer_netns),
        ];
        far.attributes.extend(mtu.map(LinkAttribute::Mtu));
        let mut near = link(0, true);
        near.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Controller(master),
        ];
        near.attributes.extend(mtu.map(LinkAttribute::Mtu));
        near.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(far))),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(near),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Creates the VXLAN link `name`, down: VNI `vni`, UDP port `port`, sending from
    /// `local` over link `underlay`, with the hardware address `mac` and `mtu`. Address
    /// learning is off: the forwarding entries are all made (`replace_fdb`), as flannel's.
    #[allow(clippy::too_many_arguments)]
    pub fn add_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        port: u16,
        underlay: Option<u32>,
        mac: [u8; 6],
        mtu: u32,
    ) -> io::Result<()> {
        let mut data = vec![
            InfoVxlan::Id(vni),
            InfoVxlan::Local(local),
            InfoVxlan::Port(port),
            InfoVxlan::Learning(false),
        ];
        data.extend(underlay.map(InfoVxlan::Link));
        let mut message = link(0, false);
        message.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(data)),
            ]),
        ];
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Sets link `index`'s MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut message = link(index, false);
        message.attributes = vec![LinkAttribute::Mtu(mtu)];
        self.request(RouteNetlinkMessage::NewLink(message), 0)
    }

    /// A permanent ARP entry on link `index`: `address` is at `mac`.
    pub fn replace_neighbour(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        mac: [u8; 6],
    ) -> io::Result<()> {
        let message = neighbour(AddressFamily::Inet, index, address, mac);
        self.request(
            RouteNetlinkMessage::NewNeighbour(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Removes the ARP entry for `address` on link `index` (an error if there is none).
    pub fn delete_neighbour(&mut self, index: u32, address: Ipv4Addr) -> io::Result<()> {
        let message = neighbour(AddressFamily::Inet, index, address, [0; 6]);
        self.request(RouteNetlinkMessage::DelNeighbour(message), 0)
    }

    /// A forwarding entry on the VXLAN link `index`: frames for `mac` go to `remote`.
    pub fn replace_fdb(&mut self, index: u32, mac: [u8; 6], remote: Ipv4Addr) -> io::Result<()> {
        self.request(
            RouteNetlinkMessage::NewNeighbour(fdb(index, mac, remote)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Removes the forwarding entry for `mac` to `remote` on link `index`.
    pub fn delete_fdb(&mut self, index: u32, mac: [u8; 6], remote: Ipv4Addr) -> io::Result<()> {
        self.request(
            RouteNetlinkMessage::DelNeighbour(fdb(index, mac, remote)),
            0,
        )
    }

    /// Puts link `index` up, on the bridge with index `master` if one is given.
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> io::Result<()> {
        let mut message = link(index, true);
        message
            .attributes
            .extend(master.map(LinkAttribute::Controller));
        self.request(RouteNetlinkMessage::NewLink(message), 0)
    }

    /// Lets the bridge send a frame back out of the port `index` it came in on (hairpin
    /// mode): a pod whose connection to a Service is DNATed back to itself gets the frame
    /// bridged straight back to it (`ip link set … type bridge_slave hairpin on`).
    pub fn set_hairpin(&mut self, index: u32) -> io::Result<()> {
        let mut message = link(index, false);
        message.attributes = vec![LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ])];
        self.request(RouteNetlinkMessage::NewLink(message), 0)
    }

    /// Gives link `index` the address `ip/prefix` (kept as it is if it has it).
    pub fn replace_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.scope = AddressScope::Universe;
        message.header.index = index;
        message.attributes = vec![
            AddressAttribute::Local(IpAddr::V4(ip)),
            AddressAttribute::Address(IpAddr::V4(ip)),
        ];
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Sets the default IPv4 route: through `gateway` on link `index`.
    pub fn replace_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> io::Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.destination_prefix_length = 0; // the default route
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(index),
        ];
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// A route to `destination` through `gateway` (a neighbour on a connected link), made or
    /// replaced; tagged with skiff's route protocol so they are told from others.
    pub fn replace_route(&mut self, destination: Cidr, gateway: Ipv4Addr) -> io::Result<()> {
        self.request(
            RouteNetlinkMessage::NewRoute(route(destination, Some(gateway))),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// A route to `destination` through `gateway` out of link `index`, taken as on that
    /// link though no subnet of it holds the gateway (`onlink`: a VXLAN peer's address).
    pub fn replace_onlink_route(
        &mut self,
        destination: Cidr,
        gateway: Ipv4Addr,
        index: u32,
    ) -> io::Result<()> {
        let mut message = route(destination, Some(gateway));
        message.header.flags = RouteFlags::Onlink;
        message.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Removes the route to `destination` (an error if there is none).
    pub fn delete_route(&mut self, destination: Cidr) -> io::Result<()> {
        self.request(RouteNetlinkMessage::DelRoute(route(destination, None)), 0)
    }

    /// Removes the link named `name` (a veth takes its peer with it).
    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let mut message = link(0, false);
        message.attributes = vec![LinkAttribute::IfName(name.into())];
        self.request(RouteNetlinkMessage::DelLink(message), 0)
    }
}

/// The outcome of request `seq` if `reply` holds its acknowledgement: Ok, or the errno
/// the kernel answered. Other messages (none are asked for) and what does not parse are
/// passed over.
fn acknowledgement(mut reply: &[u8], seq: u32) -> Option<io::Result<()>> {
    while let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(reply) {
        if message.header.sequence_number == seq
            && let NetlinkPayload::Error(error) = &message.payload
        {
            return Some(match error.code {
                None => Ok(()),
                Some(_) => Err(error.to_io()),
            });
        }
        let len = (message.header.length as usize).next_multiple_of(4);
        if len == 0 || len >= reply.len() {
            return None;
        }
        reply = &reply[len..];
    }
    None
}

/// The index of the link `name` in the calling thread's network namespace.
pub fn index_of(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel's answer to request `seq`: NLMSG_ERROR with `errno` (0 acknowledges), then
    /// the request's header echoed.
    fn error_reply(seq: u32, errno: i32) -> Vec<u8> {
        const NLMSG_ERROR: u16 = 2;
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&errno.to_ne_bytes());
        b.extend_from_slice(&[0u8; 16]); // the request's header, echoed
        b
    }

    #[test]
    fn acknowledgements_carry_the_kernels_errno() {
        assert!(matches!(
            acknowledgement(&error_reply(3, 0), 3),
            Some(Ok(()))
        ));
        let refused = acknowledgement(&error_reply(3, -libc::EEXIST), 3).unwrap();
        assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::EEXIST));
        assert!(
            acknowledgement(&error_reply(2, 0), 3).is_none(),
            "another request's"
        );
        let mut two = error_reply(2, 0);
        two.extend(error_reply(3, -libc::ENODEV));
        let second = acknowledgement(&two, 3).unwrap();
        assert_eq!(second.unwrap_err().raw_os_error(), Some(libc::ENODEV));
        assert!(acknowledgement(&[0u8; 8], 3).is_none(), "too short");
    }

    #[test]
    fn a_veth_request_nests_its_peer_in_the_link_info() {
        // What the kernel receives, read back: the peer's name and namespace inside
        // IFLA_LINKINFO → IFLA_INFO_DATA → VETH_INFO_PEER.
        let mut far = link(0, false);
        far.attributes = vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::NetNsFd(7),
        ];
        let mut near = link(0, true);
        near.attributes = vec![
            LinkAttribute::IfName("veth1".into()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(far))),
            ]),
        ];
        let mut packet = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(near)),
        );
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let at = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle);
        let (outer, inner) = (at(b"veth1\0").unwrap(), at(b"eth0\0").unwrap());
        assert!(at(b"veth\0").is_some_and(|kind| outer < kind && kind < inner));
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
    }
}
