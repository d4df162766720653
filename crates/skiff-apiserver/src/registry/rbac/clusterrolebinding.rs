//! ClusterRoleBindings: a ClusterRole granted to subjects across the cluster.
//! (Both binding kinds' rules are `super::RbacBindings`.)

use skiff_api::ResourceType;

use super::RbacBindings;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("rbac.authorization.k8s.io",
    "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", namespaced: false, short: [], categories: [],
    sub: []);

pub fn kind() -> RbacBindings {
    RbacBindings {
        resource: &RESOURCE,
    }
}
