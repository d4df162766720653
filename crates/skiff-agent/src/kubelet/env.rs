//! A container's environment: the image's, then the service links, then `envFrom` and
//! `env` (values with `$(VAR)` references, the downward API's fields and resources,
//! ConfigMap and Secret keys).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use skiff_image::Image;

use super::container::expand;
use super::sources::Source;
use super::sync::Kubelet;

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
    ) -> Result<BTreeMap<String, String>, String> {
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
            let data = if let Some(cm) = &from.config_map_ref {
                self.source_data(
                    Source::ConfigMap,
                    &namespace,
                    &cm.name,
                    cm.optional.unwrap_or(false),
                )
                .await?
            } else if let Some(s) = &from.secret_ref {
                self.source_data(
                    Source::Secret,
                    &namespace,
                    &s.name,
                    s.optional.unwrap_or(false),
                )
                .await?
            } else {
                BTreeMap::new()
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
                    fields.get(&field.field_path).cloned().ok_or_else(|| {
                        format!(
                            "unsupported fieldRef {:?} in env {:?}",
                            field.field_path, e.name
                        )
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
                    let data = self.source_data(source, &namespace, name, optional).await?;
                    match data.get(key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {key} in {} {namespace}/{name}",
                                source.kind()
                            ));
                        }
                    }
                } else if let Some(r) = &from.resource_field_ref {
                    let container = r.container_name.as_deref().unwrap_or(&c.name);
                    self.resource_field_value(pod, container, r)?
                } else {
                    return Err(format!("env {:?}: valueFrom names no source", e.name));
                }
            } else {
                String::new()
            };
            env.insert(e.name.clone(), value);
        }
        Ok(env)
    }

    /// A ConfigMap's or Secret's data as text (Secret values decoded).
    async fn source_data(
        &self,
        source: Source,
        ns: &str,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, String>, String> {
        Ok(self
            .source_bytes(source, ns, name, optional)
            .await?
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect())
    }
}
