//! What the proxy programs, with the API's objects already read: one [`ServicePort`] per
//! port of every Service with a cluster IP, and the endpoints its EndpointSlices list for
//! that port. Pure data, so the rules (`rules.rs`) are a function of it alone.

use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The API's spelling (`TCP`); unknown protocols are not proxied.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nft's spelling (`tcp`), which is also the chain names'.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One port of one Service: `namespace/name` and the port's name and protocol say which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name (`""` for a Service's only, unnamed port).
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// NodePort and LoadBalancer Services: the port every node answers on.
    pub node_port: Option<u16>,
    /// Addresses outside the cluster that reach it: `spec.externalIPs` and the load
    /// balancer's `status.loadBalancer.ingress[].ip`.
    pub external_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP`: how long a client sticks to its endpoint (seconds).
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local`: traffic from outside goes only to this node's
    /// endpoints, with the client's address kept.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`: traffic to the cluster IP goes only to this node's
    /// endpoints.
    pub internal_local: bool,
    /// Where this node answers outside load balancers' health checks (LoadBalancer with
    /// `externalTrafficPolicy: Local`).
    pub health_check_node_port: Option<u16>,
}

impl ServicePort {
    /// `namespace/name/proto/port-name`: unique per service port, and the tail of its
    /// chains' names (every part is a DNS label or an IANA service name, so it is a valid
    /// nft identifier as it stands).
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.protocol.nft(),
            self.port_name
        )
    }

    /// Whether anything reaches it from outside the cluster.
    pub fn has_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }
}

/// One endpoint of a service port, as an EndpointSlice lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// `conditions.ready`: serving and not terminating.
    pub ready: bool,
    /// `conditions.serving`: passes its readiness probe, terminating or not.
    pub serving: bool,
    pub terminating: bool,
    /// On this node (`nodeName`).
    pub local: bool,
}

/// The endpoints traffic may go to, by where it comes from (upstream's
/// `CategorizeEndpoints`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// For traffic to the cluster IP (every ready endpoint, or with `internalTrafficPolicy:
    /// Local` only this node's).
    pub cluster: Vec<Endpoint>,
    /// For traffic from outside with `externalTrafficPolicy: Local`: this node's.
    pub local: Vec<Endpoint>,
    /// Whether the service has any endpoint that could serve, on any node: with none, its
    /// addresses reject connections rather than drop them.
    pub any: bool,
}

/// Ready endpoints; when there are none, the serving ones that are terminating (so a
/// rollout's last pods keep taking connections until they stop serving), as upstream's
/// ProxyTerminatingEndpoints.
fn usable<'a>(endpoints: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<Endpoint> {
    let ready: Vec<Endpoint> = endpoints.clone().filter(|e| e.ready).copied().collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints
        .filter(|e| e.serving && e.terminating)
        .copied()
        .collect()
}

pub fn categorize(port: &ServicePort, endpoints: &[Endpoint]) -> Targets {
    let local = usable(endpoints.iter().filter(|e| e.local));
    let cluster = if port.internal_local {
        local.clone()
    } else {
        usable(endpoints.iter())
    };
    Targets {
        local: if port.external_local && port.has_external() {
            local
        } else {
            Vec::new()
        },
        cluster,
        any: endpoints.iter().any(|e| e.ready || e.serving),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `default/web`, port `http` 80/TCP at 10.43.0.10.
    pub(crate) fn port() -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: "web".into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Ipv4Addr::new(10, 43, 0, 10),
            port: 80,
            node_port: None,
            external_ips: vec![],
            affinity_timeout: None,
            external_local: false,
            internal_local: false,
            health_check_node_port: None,
        }
    }

    /// 10.42.0.`last`:8080.
    pub(crate) fn ep(
        last: u8,
        ready: bool,
        serving: bool,
        terminating: bool,
        local: bool,
    ) -> Endpoint {
        Endpoint {
            ip: Ipv4Addr::new(10, 42, 0, last),
            port: 8080,
            ready,
            serving,
            terminating,
            local,
        }
    }

    #[test]
    fn ready_endpoints_take_traffic_and_terminating_ones_only_when_none_is_ready() {
        let ready = ep(2, true, true, false, true);
        let leaving = ep(3, false, true, true, false);
        let unready = ep(4, false, false, false, false);
        let t = categorize(&port(), &[ready, leaving, unready]);
        assert_eq!(t.cluster, [ready]);
        assert!(t.any);
        let t = categorize(&port(), &[leaving, unready]);
        assert_eq!(t.cluster, [leaving]);
        let t = categorize(&port(), &[unready]);
        assert_eq!((t.cluster.len(), t.any), (0, false));
    }

    #[test]
    fn local_policies_keep_to_this_nodes_endpoints() {
        let here = ep(2, true, true, false, true);
        let there = ep(3, true, true, false, false);
        let mut p = port();
        p.internal_local = true;
        assert_eq!(categorize(&p, &[here, there]).cluster, [here]);
        let t = categorize(&p, &[there]);
        assert_eq!((t.cluster.len(), t.any), (0, true));

        let mut p = port();
        p.node_port = Some(30080);
        p.external_local = true;
        let t = categorize(&p, &[here, there]);
        assert_eq!((t.cluster.len(), t.local.as_slice()), (2, &[here][..]));
    }

    #[test]
    fn ids_name_the_port_uniquely() {
        assert_eq!(port().id(), "default/web/tcp/http");
    }
}
