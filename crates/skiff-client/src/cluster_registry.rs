//! Where the cluster's embedded image registry listens, published by the server as the
//! ConfigMap `kube-public/skiff-registry` (readable by anyone who can reach the API), so
//! agents and the CLI find it on the API server's host without being told.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};

pub const NAMESPACE: &str = "kube-public";
pub const NAME: &str = "skiff-registry";
const PORT_KEY: &str = "port";

/// Records the registry's port (the server's field manager owns the ConfigMap).
pub async fn publish(client: &kube::Client, port: u16) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "data": {PORT_KEY: port.to_string()},
    });
    api.patch(
        NAME,
        &PatchParams::apply("skiff-server").force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// The registry's port, if the server published one.
pub async fn port(client: &kube::Client) -> Result<Option<u16>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let Some(cm) = api.get_opt(NAME).await? else {
        return Ok(None);
    };
    Ok(cm
        .data
        .and_then(|d| d.get(PORT_KEY).and_then(|p| p.parse().ok())))
}
