//! The network flags `skiff server` (for its own node) and `skiff agent` share.

use clap::{Args, ValueEnum};

/// How this node makes Services reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyMode {
    /// skiff's own proxy: one nftables table (`ip skiff`), as kube-proxy's nftables mode.
    Nftables,
    /// No service proxy here (bring your own).
    None,
}

/// How pods reach the other nodes' pods (flannel's backend names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PodNetwork {
    /// A VXLAN tunnel to each other node (UDP 8472): nodes anywhere they reach each other.
    Vxlan,
    /// Direct routes through the other nodes: no encapsulation, for nodes on one link.
    HostGw,
}

#[derive(Args, Debug)]
pub struct NetworkArgs {
    /// The address this node reports as its InternalIP (default: the address of the
    /// interface that holds the default route, else the first global one, else loopback).
    #[arg(long, value_name = "IP")]
    node_ip: Option<std::net::Ipv4Addr>,
    /// An address this node is reached at from outside the cluster, reported as its
    /// ExternalIP (and given to LoadBalancer Services).
    #[arg(long, value_name = "IP")]
    node_external_ip: Option<std::net::Ipv4Addr>,
    /// How pods reach the other nodes' pods.
    #[arg(long, value_enum, default_value_t = PodNetwork::Vxlan, value_name = "BACKEND")]
    pod_network: PodNetwork,
    /// The service proxy this node runs.
    #[arg(long, value_enum, default_value_t = ProxyMode::Nftables, value_name = "MODE")]
    proxy_mode: ProxyMode,
    /// The cluster's pod addresses (every node's pod CIDR lies inside): traffic from
    /// outside them to a Service is masqueraded.
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    cluster_cidr: skiff_net::Cidr,
    /// The cluster DNS Service's address, which pods are given as their nameserver
    /// (default: the server makes it the service CIDR's tenth address; an agent asks the
    /// cluster for the kube-dns Service's).
    #[arg(long, value_name = "IP")]
    cluster_dns: Option<std::net::Ipv4Addr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    cluster_domain: String,
    /// This machine's resolver settings: pods with `dnsPolicy: Default` get them, and the
    /// node's DNS forwards names outside the cluster to their nameservers.
    #[arg(long, default_value = "/etc/resolv.conf", value_name = "FILE")]
    resolv_conf: std::path::PathBuf,
}

impl NetworkArgs {
    pub fn node_ip(&self) -> std::net::IpAddr {
        self.node_ip
            .map(Into::into)
            .unwrap_or_else(|| skiff_net::host_address().into())
    }

    pub fn node_external_ip(&self) -> Option<String> {
        self.node_external_ip.map(|ip| ip.to_string())
    }

    pub fn pod_network(&self) -> skiff_agent::kubelet::node_routes::PodNetworkMode {
        use skiff_agent::kubelet::node_routes::PodNetworkMode;
        match self.pod_network {
            PodNetwork::Vxlan => PodNetworkMode::Vxlan,
            PodNetwork::HostGw => PodNetworkMode::HostGw,
        }
    }

    pub fn cluster_cidr(&self) -> skiff_net::Cidr {
        self.cluster_cidr
    }

    /// The cluster DNS pods are given: `--cluster-dns`, else `default`.
    pub fn cluster_dns(
        &self,
        default: std::net::Ipv4Addr,
    ) -> skiff_agent::kubelet::dns::ClusterDns {
        skiff_agent::kubelet::dns::ClusterDns {
            nameserver: self.cluster_dns.unwrap_or(default),
            domain: self.cluster_domain.trim_end_matches('.').to_string(),
        }
    }

    pub fn resolv_conf(&self) -> std::path::PathBuf {
        self.resolv_conf.clone()
    }

    /// The service proxy's settings, or `None` with `--proxy-mode none`.
    pub fn proxy(&self) -> Option<skiff_proxy::ProxyConfig> {
        match self.proxy_mode {
            ProxyMode::None => None,
            ProxyMode::Nftables => Some(skiff_proxy::ProxyConfig {
                cluster_cidr: Some(self.cluster_cidr),
            }),
        }
    }
}
