//! `authorization.k8s.io`: SelfSubjectAccessReviews ("can I?"), answered, never stored.

use skiff_api::ResourceType;
use skiff_api::resources::CREATE_ONLY;
use skiff_api::table::Printer;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = ResourceType {
    verbs: CREATE_ONLY,
    ..skiff_api::resource_type!("authorization.k8s.io", "v1", "SelfSubjectAccessReview",
        "selfsubjectaccessreviews", "selfsubjectaccessreview", namespaced: false, short: [],
        categories: [], sub: [])
};

pub struct SelfSubjectAccessReviews;

impl Kind for SelfSubjectAccessReviews {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }
}

impl Printer for SelfSubjectAccessReviews {}
