//! The few rtnetlink requests a pod's network needs, made from this process: a veth pair
//! straight into the pod's namespace and onto the bridge, an address, a link up, a default
//! route, a link removal. On the pod startup path they replace running iproute2's `ip`
//! (two processes a pod, each loading a dozen libraries) with a handful of messages.
//!
//! A netlink socket acts in the network namespace it was opened in, so a [`Netlink`] for
//! another namespace is opened on a thread that joined it (see `Netns::within`).
//! Each request asks for an acknowledgement and waits for it: errors come back as the
//! kernel's errno.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// Message types and flags (linux/rtnetlink.h, linux/netlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

// Attributes (linux/if_link.h, linux/veth.h, linux/if_addr.h, linux/rtnetlink.h).
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;

const IFF_UP: u32 = 0x1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// Bytes of a `struct nlmsghdr`.
const HEADER_LEN: usize = 16;

/// One request being built: the header (its length filled in at the end), a fixed body,
/// then attributes, each 4-byte aligned; nests are attributes holding attributes.
struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16) -> Message {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set by `finish`
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
        Message { buf }
    }

    /// A `struct ifinfomsg`.
    fn link_info(&mut self, index: u32, flags: u32, change: u32) {
        self.buf.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
        self.buf.extend_from_slice(&0u16.to_ne_bytes()); // device type
        self.buf.extend_from_slice(&(index as i32).to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.align();
    }

    /// A NUL-terminated string attribute.
    fn attr_str(&mut self, kind: u16, value: &str) {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.attr(kind, &bytes);
    }

    fn attr_u32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_ne_bytes());
    }

    /// Starts a nested attribute; `end_nest` with the answer closes it.
    fn start_nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    fn end_nest(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self.align();
    }

    fn align(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// An rtnetlink socket in the network namespace of the thread that opened it.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Netlink { fd, seq: 0 })
    }

    /// Sends `message` and waits for the kernel's acknowledgement.
    fn request(&mut self, message: Message) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = message.finish(seq);
        // SAFETY: the address is a zeroed sockaddr_nl aimed at the kernel (port 0).
        let sent = unsafe {
            let mut to: libc::sockaddr_nl = std::mem::zeroed();
            to.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = [0u8; 4096];
        loop {
            // SAFETY: reading into a buffer we own, within its length.
            let got = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    reply.as_mut_ptr().cast(),
                    reply.len(),
                    0,
                )
            };
            if got < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if let Some(result) = acknowledgement(&reply[..got as usize], seq) {
                return result;
            }
        }
    }

    /// Creates the veth pair `name` ↔ `peer`, the peer inside the namespace open as
    /// `peer_netns`, and this end enslaved to the bridge with index `master`, up.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: RawFd,
        master: u32,
    ) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
        m.link_info(0, IFF_UP, IFF_UP);
        m.attr_str(IFLA_IFNAME, name);
        m.attr_u32(IFLA_MASTER, master);
        let info = m.start_nest(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth");
        let data = m.start_nest(IFLA_INFO_DATA);
        let peer_at = m.start_nest(VETH_INFO_PEER);
        m.link_info(0, 0, 0);
        m.attr_str(IFLA_IFNAME, peer);
        m.attr_u32(IFLA_NET_NS_FD, peer_netns as u32);
        m.end_nest(peer_at);
        m.end_nest(data);
        m.end_nest(info);
        self.request(m)
    }

    /// Puts link `index` up, on the bridge with index `master` if one is given.
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWLINK, 0);
        m.link_info(index, IFF_UP, IFF_UP);
        if let Some(master) = master {
            m.attr_u32(IFLA_MASTER, master);
        }
        self.request(m)
    }

    /// Gives link `index` the address `ip/prefix` (kept as it is if it has it).
    pub fn replace_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
        m.buf
            .extend_from_slice(&[libc::AF_INET as u8, prefix, 0, RT_SCOPE_UNIVERSE]);
        m.buf.extend_from_slice(&index.to_ne_bytes());
        m.attr(IFA_LOCAL, &ip.octets());
        m.attr(IFA_ADDRESS, &ip.octets());
        self.request(m)
    }

    /// Sets the default IPv4 route: through `gateway` on link `index`.
    pub fn replace_default_route(&mut self, gateway: Ipv4Addr, index: u32) -> io::Result<()> {
        let mut m = Message::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
        m.buf.extend_from_slice(&[
            libc::AF_INET as u8,
            0, // destination prefix: the default route
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        m.buf.extend_from_slice(&0u32.to_ne_bytes());
        m.attr(RTA_GATEWAY, &gateway.octets());
        m.attr_u32(RTA_OIF, index);
        self.request(m)
    }

    /// Removes the link named `name` (a veth takes its peer with it).
    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let mut m = Message::new(RTM_DELLINK, 0);
        m.link_info(0, 0, 0);
        m.attr_str(IFLA_IFNAME, name);
        self.request(m)
    }
}

/// The outcome of request `seq` if `reply` holds its acknowledgement: Ok, or the errno
/// the kernel answered. Other messages (none are asked for) are passed over.
fn acknowledgement(mut reply: &[u8], seq: u32) -> Option<io::Result<()>> {
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    while reply.len() >= HEADER_LEN {
        let len = (u32_at(reply, 0) as usize).clamp(HEADER_LEN, reply.len());
        let kind = u16::from_ne_bytes([reply[4], reply[5]]);
        if kind == NLMSG_ERROR && u32_at(reply, 8) == seq && len >= HEADER_LEN + 4 {
            let errno = u32_at(reply, HEADER_LEN) as i32;
            return Some(if errno == 0 {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(-errno))
            });
        }
        reply = &reply[len.next_multiple_of(4).min(reply.len())..];
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

    #[test]
    fn attributes_are_aligned_and_nests_measure_their_contents() {
        let mut m = Message::new(RTM_NEWLINK, NLM_F_CREATE);
        m.link_info(0, IFF_UP, IFF_UP);
        m.attr_str(IFLA_IFNAME, "veth0"); // 4 + 6 bytes, padded to 12
        let nest = m.start_nest(IFLA_LINKINFO);
        m.attr_str(IFLA_INFO_KIND, "veth"); // 4 + 5, padded to 12
        m.end_nest(nest);
        let bytes = m.finish(7);
        assert_eq!(bytes.len(), HEADER_LEN + 16 + 12 + 4 + 12);
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        let name_at = HEADER_LEN + 16;
        assert_eq!(u16::from_ne_bytes([bytes[name_at], bytes[name_at + 1]]), 10);
        assert_eq!(&bytes[name_at + 4..name_at + 10], b"veth0\0");
        let nest_at = name_at + 12;
        assert_eq!(
            u16::from_ne_bytes([bytes[nest_at], bytes[nest_at + 1]]),
            4 + 12
        );
    }

    fn error_reply(seq: u32, errno: i32) -> Vec<u8> {
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
        assert!(acknowledgement(&[0u8; 8], 3).is_none(), "too short");
    }
}
