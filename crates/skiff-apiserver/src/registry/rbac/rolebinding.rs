//! RoleBindings: a Role or ClusterRole granted to subjects within one namespace.
//! (Both binding kinds' rules are `super::RbacBindings`.)

use skiff_api::ResourceType;

use super::RbacBindings;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("rbac.authorization.k8s.io",
    "v1", "RoleBinding", "rolebindings", "rolebinding", namespaced: true, short: [], categories: [],
    sub: []);

pub fn kind() -> RbacBindings {
    RbacBindings {
        resource: &RESOURCE,
    }
}
