//! The admin kubeconfig the server writes for kubectl and other clients.

use std::path::Path;

use base64::Engine;

use crate::pki::{PkiError, write_private};

/// A kubeconfig with one cluster, one user (bearer token) and one context, all named `skiff`.
pub fn render(server_url: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: skiff-admin
  user:
    token: {token}
contexts:
- name: skiff
  context:
    cluster: skiff
    user: skiff-admin
current-context: skiff
preferences: {{}}
"
    )
}

/// Writes the kubeconfig with mode 0600: it holds the admin token.
pub fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_private(path, contents.as_bytes(), 0o600)
}
