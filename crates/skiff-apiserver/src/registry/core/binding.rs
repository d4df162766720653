//! Bindings (`/api/v1/namespaces/{ns}/bindings`): the legacy way to bind a pod, named by
//! the binding's own name, to a node — the same as `pods/{name}/binding`. Created, never
//! stored.

use serde_json::Value;
use skiff_api::object::meta_str;
use skiff_api::resources::CREATE_ONLY;
use skiff_api::table::Printer;
use skiff_api::{ApiError, Cause, ResourceType};

use crate::handlers::binding::bind_pod;
use crate::registry::{Kind, Pending};
use crate::state::ApiState;

pub static RESOURCE: ResourceType = ResourceType {
    verbs: CREATE_ONLY,
    ..skiff_api::resource_type!("", "v1", "Binding", "bindings", "binding", namespaced: true,
        short: [], categories: [], sub: [])
};

pub struct Bindings;

impl Kind for Bindings {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn create_unstored<'a>(
        &'a self,
        state: &'a ApiState,
        _user: &'a crate::authn::UserInfo,
        namespace: Option<&'a str>,
        binding: Value,
    ) -> Pending<'a, Value> {
        Box::pin(async move {
            let Some(pod) = meta_str(&binding, "name").filter(|n| !n.is_empty()) else {
                return Err(ApiError::invalid(
                    &RESOURCE,
                    "",
                    vec![Cause::required("metadata.name")],
                ));
            };
            let pod = pod.to_string();
            bind_pod(state, namespace, &pod, &binding).await
        })
    }
}

impl Printer for Bindings {}
