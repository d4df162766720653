//! A container's environment: the image's, then the service links, then `envFrom` and
//! `env` (values with `$(VAR)` references, the downward API's fields and resources,
//! ConfigMap and Secret keys).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use skiff_image::Image;

use super::Kubelet;
use super::container::expand;
use super::errors::EnvError;
use super::sources::Source;
use super::volumes::resource_field_on_node;

impl Kubelet {
    /// Environment from the pod's own fields (the downward API's env).
    pub(super) fn field_env(&self, pod: &Pod, pod_ip: &str) -> BTreeMap<String, String> {
        let mut f = BTreeMap::new();
        f.insert("metadata.name".into(), pod.name_any());
        f.insert(
            "metadata.namespace".into(),
            pod.namespace().unwrap_or_default(),
        );
        f.insert("metadata.uid".into(), pod.uid().unwrap_or_default());
        f.insert("spec.nodeName".into(), self.config.node_name.clone());
        f.insert(
            "spec.serviceAccountName".into(),
            pod.spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        );
        f.insert("status.podIP".into(), pod_ip.to_string());
        f.insert("status.hostIP".into(), self.config.node_ip.clone());
        for (k, v) in pod.labels() {
            f.insert(format!("metadata.labels['{k}']"), v.clone());
        }
        for (k, v) in pod.annotations() {
            f.insert(format!("metadata.annotations['{k}']"), v.clone());
        }
        f
    }

    /// The container's environment: the image's, then the service links, then the
    /// container's (`envFrom`, then `env`, with `$(VAR)` references to what came before).
    pub(super) async fn environment(
        &self,
        pod: &Pod,
        c: &Container,
        image: &Image,
        fields: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, EnvError> {
        let namespace = pod.namespace().unwrap_or_default();
        let mut env: BTreeMap<String, String> = image
            .config
            .config
            .env
            .iter()
            .flatten()
            .filter_map(|e| {
                e.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let services = self.services.list();
        env.extend(super::service_env::service_links(
            services.iter().map(|s| s.as_ref()),
            &namespace,
            links,
        ));
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            let source = match (&from.config_map_ref, &from.secret_ref) {
                (Some(cm), _) => Some((Source::ConfigMap, &cm.name, cm.optional)),
                (None, Some(s)) => Some((Source::Secret, &s.name, s.optional)),
                (None, None) => None,
            };
            let data = match source {
                Some((source, name, optional)) => {
                    let optional = optional.unwrap_or(false);
                    self.sources
                        .text(source, &namespace, name, optional)
                        .await?
                }
                None => BTreeMap::new(),
            };
            for (k, v) in data {
                env.insert(format!("{prefix}{k}"), v);
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                expand(v, &env)
            } else if let Some(from) = &e.value_from {
                if let Some(field) = &from.field_ref {
                    fields
                        .get(&field.field_path)
                        .cloned()
                        .ok_or_else(|| EnvError::FieldRef {
                            path: field.field_path.clone(),
                            env: e.name.clone(),
                        })?
                } else if let Some((source, name, key, optional)) = from
                    .config_map_key_ref
                    .as_ref()
                    .map(|r| {
                        (
                            Source::ConfigMap,
                            &r.name,
                            &r.key,
                            r.optional.unwrap_or(false),
                        )
                    })
                    .or_else(|| {
                        from.secret_key_ref
                            .as_ref()
                            .map(|r| (Source::Secret, &r.name, &r.key, r.optional.unwrap_or(false)))
                    })
                {
                    let data = self
                        .sources
                        .text(source, &namespace, name, optional)
                        .await?;
                    match data.get(key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::MissingKey {
                                key: key.clone(),
                                kind: source.kind(),
                                namespace: namespace.clone(),
                                name: name.clone(),
                            });
                        }
                    }
                } else if let Some(r) = &from.resource_field_ref {
                    let container = r.container_name.as_deref().unwrap_or(&c.name);
                    resource_field_on_node(pod, container, r)?
                } else {
                    return Err(EnvError::NoSource(e.name.clone()));
                }
            } else {
                String::new()
            };
            env.insert(e.name.clone(), value);
        }
        Ok(env)
    }
}
