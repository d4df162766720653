//! A pod's `/etc/resolv.conf`, as kubelet writes it for its `dnsPolicy`:
//!
//! - `ClusterFirst` (the default): the cluster DNS, searching `<ns>.svc.<domain>`,
//!   `svc.<domain>`, `<domain>` and then the node's own search domains, `ndots:5`; a
//!   host-network pod gets the node's resolv.conf instead.
//! - `ClusterFirstWithHostNet`: the cluster's, host network or not.
//! - `Default`: the node's resolv.conf (its nameservers, search domains and options).
//! - `None`: only what `dnsConfig` says.
//!
//! `dnsConfig` adds to any of them: nameservers after the policy's (three at most), search
//! domains after (duplicates dropped, 32 at most), options replacing ones of the same name.
//! A node without cluster DNS serves `ClusterFirst` as `Default`, as kubelet does.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

/// The resolver settings a node hands its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The cluster DNS Service's address (`--cluster-dns`).
    pub nameserver: Ipv4Addr,
    /// `--cluster-domain` (`cluster.local`).
    pub domain: String,
}

/// Upstream's limits (`MaxDNSNameservers`, `MaxDNSSearchPaths`).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// A resolv.conf as its three parts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolver {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// `name` or `name:value`, in order.
    pub options: Vec<String>,
}

impl Resolver {
    /// Reads a resolv.conf (`nameserver`, `search`/`domain`, `options` lines).
    pub fn parse(text: &str) -> Resolver {
        let mut r = Resolver::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => r.nameservers.extend(words.next().map(str::to_string)),
                // The last `search` or `domain` line wins, as in glibc.
                Some("search" | "domain") => r.searches = words.map(str::to_string).collect(),
                Some("options") => r.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        r
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

fn option_name(option: &str) -> &str {
    option.split(':').next().unwrap_or(option)
}

/// The pod's resolv.conf, given the node's (`host`).
pub fn pod_resolver(pod: &Pod, cluster: Option<&ClusterDns>, host: &Resolver) -> Resolver {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cluster_first = |cluster: &ClusterDns| {
        let d = &cluster.domain;
        let mut searches = vec![
            format!("{namespace}.svc.{d}"),
            format!("svc.{d}"),
            d.clone(),
        ];
        searches.extend(host.searches.iter().cloned());
        Resolver {
            nameservers: vec![cluster.nameserver.to_string()],
            searches,
            options: vec!["ndots:5".into()],
        }
    };
    let node_own = || Resolver {
        nameservers: host.nameservers.clone(),
        searches: host.searches.clone(),
        options: host.options.clone(),
    };
    let mut r = match (policy, cluster) {
        ("None", _) => Resolver::default(),
        ("ClusterFirstWithHostNet", Some(c)) => cluster_first(c),
        ("ClusterFirst", Some(c)) if !host_network => cluster_first(c),
        _ => node_own(),
    };
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        r.nameservers
            .extend(config.nameservers.iter().flatten().cloned());
        r.searches.extend(config.searches.iter().flatten().cloned());
        for option in config.options.iter().flatten() {
            let Some(name) = option.name.as_deref() else {
                continue;
            };
            let text = match &option.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            };
            match r.options.iter_mut().find(|o| option_name(o) == name) {
                Some(existing) => *existing = text,
                None => r.options.push(text),
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    r.searches.retain(|s| seen.insert(s.clone()));
    r.searches.truncate(MAX_SEARCHES);
    r.nameservers.truncate(MAX_NAMESERVERS);
    r
}

/// A pod's `/etc/hosts`, as kubelet writes it: localhost, the pod's own name (with its
/// FQDN first when it has a `subdomain`: `<hostname>.<subdomain>.<ns>.svc.<domain>`), then
/// its `hostAliases`.
pub fn hosts_file(pod: &Pod, ip: Ipv4Addr, hostname: &str, cluster: Option<&ClusterDns>) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let spec = pod.spec.as_ref();
    let subdomain = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty());
    match (subdomain, cluster) {
        (Some(sub), Some(c)) => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            out.push_str(&format!(
                "{ip}\t{hostname}.{sub}.{ns}.svc.{}\t{hostname}\n",
                c.domain
            ));
        }
        _ => out.push_str(&format!("{ip}\t{hostname}\n")),
    }
    let aliases = spec
        .and_then(|s| s.host_aliases.as_ref())
        .into_iter()
        .flatten();
    let mut header = false;
    for alias in aliases {
        let names = alias
            .hostnames
            .iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>();
        if names.is_empty() {
            continue;
        }
        if !header {
            out.push_str("\n# Entries added by HostAliases.\n");
            header = true;
        }
        out.push_str(&format!("{}\t{}\n", alias.ip, names.join("\t")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec}),
        )
        .unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns {
            nameserver: Ipv4Addr::new(10, 43, 0, 10),
            domain: "cluster.local".into(),
        }
    }

    fn host() -> Resolver {
        Resolver::parse("nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
    }

    fn containers() -> serde_json::Value {
        json!([{"name": "c", "image": "busybox"}])
    }

    #[test]
    fn cluster_first_searches_the_namespace_then_the_nodes_domains() {
        let r = pod_resolver(
            &pod(json!({"containers": containers()})),
            Some(&cluster()),
            &host(),
        );
        assert_eq!(
            r.render(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_and_default_pods_use_the_nodes_resolver() {
        let host_net = pod(json!({"containers": containers(), "hostNetwork": true}));
        assert_eq!(pod_resolver(&host_net, Some(&cluster()), &host()), host());
        let with_host_net = pod(json!({"containers": containers(), "hostNetwork": true,
            "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert_eq!(
            pod_resolver(&with_host_net, Some(&cluster()), &host()).nameservers,
            ["10.43.0.10"]
        );
        let default = pod(json!({"containers": containers(), "dnsPolicy": "Default"}));
        assert_eq!(pod_resolver(&default, Some(&cluster()), &host()), host());
        // No cluster DNS on this node: ClusterFirst falls back to the node's.
        let plain = pod(json!({"containers": containers()}));
        assert_eq!(pod_resolver(&plain, None, &host()), host());
    }

    #[test]
    fn hosts_files_name_the_pod_with_its_subdomain_and_aliases() {
        let ip = Ipv4Addr::new(10, 42, 0, 7);
        let plain = hosts_file(
            &pod(json!({"containers": containers()})),
            ip,
            "p",
            Some(&cluster()),
        );
        assert!(plain.ends_with("ip6-loopback\n10.42.0.7\tp\n"), "{plain}");
        let named = pod(
            json!({"containers": containers(), "hostname": "db-0", "subdomain": "db",
            "hostAliases": [{"ip": "192.0.2.9", "hostnames": ["foo.local", "bar.local"]}]}),
        );
        let text = hosts_file(&named, ip, "db-0", Some(&cluster()));
        assert!(
            text.contains("10.42.0.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n"),
            "{text}"
        );
        assert!(
            text.ends_with("# Entries added by HostAliases.\n192.0.2.9\tfoo.local\tbar.local\n"),
            "{text}"
        );
    }

    #[test]
    fn dns_config_adds_to_the_policy_or_is_all_of_none() {
        let none = pod(json!({"containers": containers(), "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["192.0.2.1"], "searches": ["a.example"],
                          "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        assert_eq!(
            pod_resolver(&none, Some(&cluster()), &host()).render(),
            "search a.example\nnameserver 192.0.2.1\noptions ndots:2 edns0\n"
        );
        let added = pod(json!({"containers": containers(),
            "dnsConfig": {"nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
                          "searches": ["svc.cluster.local", "b.example"],
                          "options": [{"name": "ndots", "value": "1"}]}}));
        let r = pod_resolver(&added, Some(&cluster()), &host());
        assert_eq!(r.nameservers, ["10.43.0.10", "192.0.2.1", "192.0.2.2"]);
        assert_eq!(
            r.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
                "b.example"
            ]
        );
        assert_eq!(r.options, ["ndots:1"]);
    }
}
