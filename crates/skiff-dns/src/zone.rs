//! The cluster's names, as CoreDNS's `kubernetes` plugin answers them (the DNS
//! specification for Kubernetes, `cluster.local` being the cluster domain):
//!
//! - `<svc>.<ns>.svc.<domain>`: A of the cluster IP; a headless Service's ready endpoints;
//!   an ExternalName Service a CNAME to its name.
//! - `<endpoint>.<svc>.<ns>.svc.<domain>` (headless): A of the endpoint named by its
//!   `hostname` (a pod's hostname with the Service as subdomain) or its dashed address.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV for named ports, the targets' A records
//!   as additionals; an SRV query of the Service's own name lists every named port.
//! - `<a-b-c-d>.<ns>.pod.<domain>`: A of that address (CoreDNS's `pods insecure`).
//! - Names in the domain that exist with no record of the type asked: NOERROR and no answer
//!   (NODATA); names that do not exist: NXDOMAIN; both with the zone's SOA, TTL 5 s, as
//!   CoreDNS.
//!
//! A `Zone` is built from the Services and EndpointSlices at one moment and never changes;
//! answering is a lookup in it, with no allocation beyond the answer.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, CNAME, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// CoreDNS's kubernetes plugin's default TTL.
pub const TTL: u32 = 5;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone)]
enum Target {
    ClusterIp(Ipv4Addr),
    Headless,
    ExternalName(Name),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Port {
    name: String,
    /// `tcp`, `udp` or `sctp`.
    protocol: String,
    port: u16,
}

impl Port {
    /// A port with a name (only named ports have SRV records).
    fn named(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<Port> {
        Some(Port {
            name: name.filter(|n| !n.is_empty())?.to_string(),
            protocol: protocol.unwrap_or("TCP").to_ascii_lowercase(),
            port: u16::try_from(port?).ok()?,
        })
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    ip: Ipv4Addr,
    /// Its DNS label: the endpoint's hostname, else its address dashed.
    label: String,
    ports: Vec<Port>,
}

#[derive(Debug, Clone)]
struct ServiceEntry {
    target: Target,
    ports: Vec<Port>,
    /// Ready endpoints (headless Services only).
    endpoints: Vec<Endpoint>,
}

/// What the zone answers to one question.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The zone's SOA, for negative answers.
    pub soa: Option<Record>,
}

/// The cluster's records at one moment.
#[derive(Debug)]
pub struct Zone {
    domain: Name,
    /// The domain's labels, lowercase.
    domain_labels: Vec<String>,
    services: HashMap<(String, String), ServiceEntry>,
    namespaces: HashSet<String>,
    soa: Record,
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

fn undashed(label: &str) -> Option<Ipv4Addr> {
    label.replace('-', ".").parse().ok()
}

fn service_entry(service: &Service) -> Option<ServiceEntry> {
    let spec = service.spec.as_ref()?;
    let target = match spec.type_.as_deref() {
        Some("ExternalName") => {
            let mut name = Name::from_ascii(spec.external_name.as_deref()?).ok()?;
            name.set_fqdn(true);
            Target::ExternalName(name)
        }
        _ => match spec.cluster_ip.as_deref() {
            Some("None") => Target::Headless,
            Some(ip) => Target::ClusterIp(ip.parse().ok()?),
            None => return None,
        },
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| Port::named(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
        .collect();
    Some(ServiceEntry {
        target,
        ports,
        endpoints: Vec::new(),
    })
}

fn slice_endpoints(slice: &EndpointSlice) -> impl Iterator<Item = Endpoint> + '_ {
    let ports: Vec<Port> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| Port::named(p.name.as_deref(), p.protocol.as_deref(), p.port))
        .collect();
    let ipv4 = slice.address_type == "IPv4";
    slice
        .endpoints
        .iter()
        .filter(move |_| ipv4)
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(move |e| {
            let ip: Ipv4Addr = e.addresses.first()?.parse().ok()?;
            let label = e
                .hostname
                .clone()
                .unwrap_or_else(|| dashed(ip))
                .to_ascii_lowercase();
            Some(Endpoint {
                ip,
                label,
                ports: ports.clone(),
            })
        })
}

impl Zone {
    /// The zone of `domain` (`cluster.local`) for these Services and EndpointSlices.
    pub fn build<'a>(
        domain: &str,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Result<Zone, hickory_proto::ProtoError> {
        let mut domain_name = Name::from_ascii(domain)?.to_lowercase();
        domain_name.set_fqdn(true);
        let at = |prefix: &str| -> Result<Name, hickory_proto::ProtoError> {
            Name::from_ascii(prefix)?.append_domain(&domain_name)
        };
        let soa = Record::from_rdata(
            domain_name.clone(),
            TTL,
            RData::SOA(SOA::new(
                at("ns.dns")?,
                at("hostmaster")?,
                1,
                7200,
                1800,
                86400,
                TTL,
            )),
        );
        let mut entries = HashMap::new();
        let mut namespaces = HashSet::new();
        for service in services {
            let (Some(ns), Some(name)) = (
                service.metadata.namespace.as_deref(),
                service.metadata.name.as_deref(),
            ) else {
                continue;
            };
            if let Some(entry) = service_entry(service) {
                namespaces.insert(ns.to_string());
                entries.insert((ns.to_string(), name.to_string()), entry);
            }
        }
        for slice in slices {
            let meta = &slice.metadata;
            let (Some(ns), Some(service)) = (
                meta.namespace.as_deref(),
                meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)),
            ) else {
                continue;
            };
            if let Some(entry) = entries.get_mut(&(ns.to_string(), service.clone()))
                && matches!(entry.target, Target::Headless)
            {
                for e in slice_endpoints(slice) {
                    if !entry.endpoints.iter().any(|have| have.ip == e.ip) {
                        entry.endpoints.push(e);
                    }
                }
            }
        }
        for entry in entries.values_mut() {
            entry.endpoints.sort_by_key(|e| e.ip);
        }
        Ok(Zone {
            domain_labels: domain_name
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect(),
            domain: domain_name,
            services: entries,
            namespaces,
            soa,
        })
    }

    pub fn domain(&self) -> &Name {
        &self.domain
    }

    /// The answer to `name`/`kind`, or `None` when the name is outside the cluster domain
    /// (someone else's to answer).
    pub fn answer(&self, name: &Name, kind: RecordType) -> Option<Answer> {
        let labels: Vec<String> = name
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        let inside = labels.len().checked_sub(self.domain_labels.len())?;
        if labels[inside..] != self.domain_labels[..] {
            return None;
        }
        let rest: Vec<&str> = labels[..inside].iter().map(String::as_str).collect();
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        Some(match rest.as_slice() {
            [] | ["svc"] | ["pod"] | [_, "pod"] => self.no_data(),
            [ns, "svc"] => {
                if self.namespaces.contains(*ns) {
                    self.no_data()
                } else {
                    self.nx()
                }
            }
            [svc, ns, "svc"] => self.service(&name, ns, svc, kind, None),
            [port, proto, svc, ns, "svc"] => {
                match (port.strip_prefix('_'), proto.strip_prefix('_')) {
                    (Some(port), Some(proto))
                        if kind == RecordType::SRV || kind == RecordType::ANY =>
                    {
                        self.service(&name, ns, svc, kind, Some((port, proto)))
                    }
                    (Some(_), Some(_)) => {
                        self.exists_or_nx(self.services.contains_key(&key(ns, svc)))
                    }
                    _ => self.nx(),
                }
            }
            [endpoint, svc, ns, "svc"] => self.endpoint(&name, ns, svc, endpoint, kind),
            [ip, _ns, "pod"] => match undashed(ip) {
                Some(ip) if wants_a(kind) => {
                    self.one(Record::from_rdata(name, TTL, RData::A(A(ip))))
                }
                Some(_) => self.no_data(),
                None => self.nx(),
            },
            _ => self.nx(),
        })
    }

    fn nx(&self) -> Answer {
        Answer {
            code: ResponseCode::NXDomain,
            soa: Some(self.soa.clone()),
            ..Answer::default()
        }
    }

    fn no_data(&self) -> Answer {
        Answer {
            code: ResponseCode::NoError,
            soa: Some(self.soa.clone()),
            ..Answer::default()
        }
    }

    fn exists_or_nx(&self, exists: bool) -> Answer {
        if exists { self.no_data() } else { self.nx() }
    }

    fn one(&self, record: Record) -> Answer {
        Answer {
            answers: vec![record],
            ..Answer::default()
        }
    }

    fn service_name(&self, ns: &str, svc: &str) -> Name {
        Name::from_labels([svc.as_bytes(), ns.as_bytes(), b"svc"])
            .and_then(|n| n.append_domain(&self.domain))
            .expect("labels from a DNS name")
    }

    fn service(
        &self,
        name: &Name,
        ns: &str,
        svc: &str,
        kind: RecordType,
        port: Option<(&str, &str)>,
    ) -> Answer {
        let Some(entry) = self.services.get(&key(ns, svc)) else {
            return self.nx();
        };
        let port_matches =
            |p: &Port| port.is_none_or(|(name, proto)| p.name == name && p.protocol == proto);
        match &entry.target {
            Target::ExternalName(target) => self.one(Record::from_rdata(
                name.clone(),
                TTL,
                RData::CNAME(CNAME(target.clone())),
            )),
            Target::ClusterIp(ip) => {
                let a = Record::from_rdata(self.service_name(ns, svc), TTL, RData::A(A(*ip)));
                match kind {
                    RecordType::A | RecordType::ANY if port.is_none() => self.one(a),
                    RecordType::SRV | RecordType::ANY => {
                        let target = self.service_name(ns, svc);
                        let answers: Vec<Record> = entry
                            .ports
                            .iter()
                            .filter(|p| port_matches(p))
                            .map(|p| {
                                Record::from_rdata(
                                    name.clone(),
                                    TTL,
                                    RData::SRV(SRV::new(0, 100, p.port, target.clone())),
                                )
                            })
                            .collect();
                        if answers.is_empty() {
                            return self.exists_or_nx(port.is_none());
                        }
                        Answer {
                            answers,
                            additionals: vec![a],
                            ..Answer::default()
                        }
                    }
                    _ => self.no_data(),
                }
            }
            Target::Headless => {
                if entry.endpoints.is_empty() {
                    return self.nx();
                }
                match kind {
                    RecordType::A | RecordType::ANY if port.is_none() => Answer {
                        answers: entry
                            .endpoints
                            .iter()
                            .map(|e| Record::from_rdata(name.clone(), TTL, RData::A(A(e.ip))))
                            .collect(),
                        ..Answer::default()
                    },
                    RecordType::SRV | RecordType::ANY => {
                        let mut answer = Answer::default();
                        for e in &entry.endpoints {
                            let host = Name::from_labels([e.label.as_bytes()])
                                .and_then(|l| l.append_domain(&self.service_name(ns, svc)))
                                .expect("labels from a DNS name");
                            let mut any = false;
                            for p in e.ports.iter().filter(|p| port_matches(p)) {
                                any = true;
                                answer.answers.push(Record::from_rdata(
                                    name.clone(),
                                    TTL,
                                    RData::SRV(SRV::new(0, 100, p.port, host.clone())),
                                ));
                            }
                            if any {
                                answer.additionals.push(Record::from_rdata(
                                    host,
                                    TTL,
                                    RData::A(A(e.ip)),
                                ));
                            }
                        }
                        if answer.answers.is_empty() {
                            return self.exists_or_nx(port.is_none());
                        }
                        answer
                    }
                    _ => self.no_data(),
                }
            }
        }
    }

    fn endpoint(&self, name: &Name, ns: &str, svc: &str, label: &str, kind: RecordType) -> Answer {
        let found = self
            .services
            .get(&key(ns, svc))
            .and_then(|entry| entry.endpoints.iter().find(|e| e.label == label));
        match found {
            Some(e) if wants_a(kind) => {
                self.one(Record::from_rdata(name.clone(), TTL, RData::A(A(e.ip))))
            }
            Some(_) => self.no_data(),
            None => self.nx(),
        }
    }
}

fn key(ns: &str, svc: &str) -> (String, String) {
    (ns.to_string(), svc.to_string())
}

fn wants_a(kind: RecordType) -> bool {
    matches!(kind, RecordType::A | RecordType::ANY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn zone() -> Zone {
        let services: Vec<Service> = [
            json!({"metadata": {"name": "web", "namespace": "default"},
                   "spec": {"clusterIP": "10.43.0.20", "ports": [
                       {"name": "http", "port": 80, "protocol": "TCP"},
                       {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
            json!({"metadata": {"name": "db", "namespace": "data"},
                   "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
            json!({"metadata": {"name": "empty", "namespace": "data"},
                   "spec": {"clusterIP": "None"}}),
            json!({"metadata": {"name": "ext", "namespace": "default"},
                   "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let slices: Vec<EndpointSlice> = [json!({
            "metadata": {"name": "db-1", "namespace": "data", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.42.0.7"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.42.1.8"], "conditions": {"ready": true}},
                {"addresses": ["10.42.1.9"], "conditions": {"ready": false}},
            ],
        })]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        Zone::build("cluster.local", &services, &slices).unwrap()
    }

    fn ask(name: &str, kind: RecordType) -> Answer {
        zone()
            .answer(&Name::from_ascii(name).unwrap(), kind)
            .expect("inside the zone")
    }

    fn data(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {}", r.name, r.data))
            .collect()
    }

    #[test]
    fn cluster_ip_services_answer_their_address_and_named_ports() {
        let a = ask("web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            data(&a.answers),
            ["web.default.svc.cluster.local. 10.43.0.20"]
        );
        assert_eq!(a.answers[0].ttl, TTL);
        let mixed_case = ask("WEB.Default.svc.Cluster.Local.", RecordType::A);
        assert_eq!(mixed_case.answers.len(), 1);
        let srv = ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            data(&srv.answers),
            ["_http._tcp.web.default.svc.cluster.local. 0 100 80 web.default.svc.cluster.local."]
        );
        assert_eq!(
            data(&srv.additionals),
            ["web.default.svc.cluster.local. 10.43.0.20"]
        );
        assert_eq!(
            ask("web.default.svc.cluster.local.", RecordType::SRV)
                .answers
                .len(),
            2
        );
        let none = ask("web.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(
            (none.code, none.answers.len(), none.soa.is_some()),
            (ResponseCode::NoError, 0, true)
        );
    }

    #[test]
    fn headless_services_answer_their_ready_endpoints() {
        let a = ask("db.data.svc.cluster.local.", RecordType::A);
        assert_eq!(
            data(&a.answers),
            [
                "db.data.svc.cluster.local. 10.42.0.7",
                "db.data.svc.cluster.local. 10.42.1.8"
            ]
        );
        let named = ask("db-0.db.data.svc.cluster.local.", RecordType::A);
        assert_eq!(
            data(&named.answers),
            ["db-0.db.data.svc.cluster.local. 10.42.0.7"]
        );
        let dashed = ask("10-42-1-8.db.data.svc.cluster.local.", RecordType::A);
        assert_eq!(dashed.answers.len(), 1);
        assert_eq!(
            ask("10-42-1-9.db.data.svc.cluster.local.", RecordType::A).code,
            ResponseCode::NXDomain
        );
        let srv = ask("_pg._tcp.db.data.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            data(&srv.answers),
            [
                "_pg._tcp.db.data.svc.cluster.local. 0 100 5432 db-0.db.data.svc.cluster.local.",
                "_pg._tcp.db.data.svc.cluster.local. 0 100 5432 10-42-1-8.db.data.svc.cluster.local.",
            ]
        );
        assert_eq!(srv.additionals.len(), 2);
        assert_eq!(
            ask("empty.data.svc.cluster.local.", RecordType::A).code,
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn external_names_pods_and_everything_else() {
        let cname = ask("ext.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            data(&cname.answers),
            ["ext.default.svc.cluster.local. example.com."]
        );
        let pod = ask("10-42-0-5.default.pod.cluster.local.", RecordType::A);
        assert_eq!(
            data(&pod.answers),
            ["10-42-0-5.default.pod.cluster.local. 10.42.0.5"]
        );
        for nx in [
            "nope.default.svc.cluster.local.",
            "web.nope.svc.cluster.local.",
            "nope.svc.cluster.local.",
            "x-y.default.pod.cluster.local.",
            "a.b.c.d.e.f.cluster.local.",
        ] {
            let answer = ask(nx, RecordType::A);
            assert_eq!(
                (answer.code, answer.soa.is_some()),
                (ResponseCode::NXDomain, true),
                "{nx}"
            );
        }
        for empty in [
            "cluster.local.",
            "svc.cluster.local.",
            "default.svc.cluster.local.",
        ] {
            assert_eq!(
                ask(empty, RecordType::A).code,
                ResponseCode::NoError,
                "{empty}"
            );
        }
        let z = zone();
        assert!(
            z.answer(&Name::from_ascii("example.com.").unwrap(), RecordType::A)
                .is_none()
        );
        assert!(
            z.answer(&Name::from_ascii("local.").unwrap(), RecordType::A)
                .is_none()
        );
    }
}
