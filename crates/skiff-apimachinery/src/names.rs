//! Names the API server and its clients must spell alike.

/// The ConfigMap every namespace holds with the cluster's CA (the root CA publisher's).
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
