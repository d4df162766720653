//! `apiextensions.k8s.io/v1`: CustomResourceDefinitions, and the kinds they define.
//!
//! - [`customresourcedefinition`]: the CRD objects themselves (defaults, validation).
//! - [`custom`]: [`custom::CustomKind`], one served version of a defined resource — its
//!   facts, structural schema (defaulting, pruning, validation), CEL rules, printer
//!   columns, scale paths and selectable fields, made from the definition at run time.
//! - `crate::crd_controller`: what upstream's apiextensions controllers do — accepts names,
//!   establishes, serves and stops serving the kinds, and deletes a definition's objects
//!   before the definition.

pub mod cel;
pub mod custom;
pub mod customresourcedefinition;

pub use customresourcedefinition::{CustomResourceDefinitions, RESOURCE};

/// Kubernetes' version order (`v2` > `v1` > `v1beta2` > `v1beta1` > `v1alpha1` > others
/// by name): the first is the preferred version discovery lists.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn rank(v: &str) -> (u8, u64, u64, String) {
        let parsed = v.strip_prefix('v').and_then(|rest| {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let major: u64 = rest[..digits].parse().ok()?;
            let tail = &rest[digits..];
            if tail.is_empty() {
                return Some((3, major, 0));
            }
            for (word, class) in [("beta", 2), ("alpha", 1)] {
                if let Some(n) = tail.strip_prefix(word) {
                    return n.parse().ok().map(|minor| (class, major, minor));
                }
            }
            None
        });
        match parsed {
            Some((class, major, minor)) => (class, major, minor, String::new()),
            None => (0, 0, 0, v.to_string()),
        }
    }
    let (ra, rb) = (rank(a), rank(b));
    // Kubernetes versions first, higher first; others by name, ascending.
    (rb.0, rb.1, rb.2)
        .cmp(&(ra.0, ra.1, ra.2))
        .then_with(|| ra.3.cmp(&rb.3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_sorts_them() {
        let mut v = vec![
            "v1alpha1",
            "foo",
            "v1",
            "v2beta1",
            "v11alpha2",
            "v1beta1",
            "v2",
            "bar",
            "v1beta2",
        ];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            v,
            [
                "v2",
                "v1",
                "v2beta1",
                "v1beta2",
                "v1beta1",
                "v11alpha2",
                "v1alpha1",
                "bar",
                "foo"
            ]
        );
    }
}
