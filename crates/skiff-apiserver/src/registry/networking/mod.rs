//! `networking.k8s.io/v1`: Ingresses and their classes, and NetworkPolicies. Stored,
//! defaulted and validated as upstream's; no ingress controller serves Ingresses and no
//! policy is enforced yet (later issues), and every write of one says so.

pub mod ingress;
pub mod ingressclass;
pub mod ipaddress;
pub mod networkpolicy;
pub mod servicecidr;
