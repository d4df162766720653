//! Authentication: who a request's bearer token speaks for. The admin token (written to
//! the kubeconfig) is `system:admin` in `system:masters`; a ServiceAccount token this
//! server signed is its account, with upstream's groups and, for a token bound to a pod,
//! the pod in `extra`. The user travels with the request (an extension) to what needs it:
//! TokenReview answers with it, SelfSubjectReview (`kubectl auth whoami`) returns it, and
//! authorization (`authz.rs`) judges it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::sa_token::{TokenIssuer, VerifiedToken};

/// Who a request is from (upstream's `user.Info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The admin token's user.
    pub fn admin() -> UserInfo {
        UserInfo {
            username: "system:admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    /// A ServiceAccount token's user, as upstream names it.
    pub fn service_account(token: &VerifiedToken) -> UserInfo {
        let a = &token.account;
        let mut extra = BTreeMap::new();
        if let Some(pod) = &token.pod {
            extra.insert(
                "authentication.kubernetes.io/pod-name".into(),
                vec![pod.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".into(),
                vec![pod.uid.clone()],
            );
        }
        UserInfo {
            username: format!("system:serviceaccount:{}:{}", a.namespace, a.name),
            uid: a.uid.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", a.namespace),
                "system:authenticated".into(),
            ],
            extra,
        }
    }

    /// The `UserInfo` object of the authentication API (reviews answer with it).
    pub fn to_json(&self) -> Value {
        let mut out = json!({"username": self.username, "groups": self.groups});
        if !self.uid.is_empty() {
            out["uid"] = self.uid.clone().into();
        }
        if !self.extra.is_empty() {
            out["extra"] = json!(self.extra);
        }
        out
    }
}

/// The credentials a server accepts.
pub struct Auth {
    pub admin_token: String,
    pub tokens: Arc<TokenIssuer>,
}

impl Auth {
    /// The user a bearer token speaks for, if it is the admin's or a current ServiceAccount
    /// token this server signed.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        // Constant-time comparison: the token is the only secret between a caller and admin.
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            return Some(UserInfo::admin());
        }
        self.tokens
            .verify_token(token)
            .map(|t| UserInfo::service_account(&t))
    }

    /// Whether a bearer token is accepted (the registry's check).
    pub fn accepts(&self, token: &str) -> bool {
        self.authenticate(token).is_some()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sa_token::{BoundPod, ServiceAccountIdentity};

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn tokens_speak_for_upstreams_users() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Arc::new(TokenIssuer::load_or_create(dir.path()).unwrap());
        let auth = Auth {
            admin_token: "secret".into(),
            tokens: tokens.clone(),
        };
        assert_eq!(auth.authenticate("secret"), Some(UserInfo::admin()));
        assert_eq!(auth.authenticate("secreT"), None);
        let who = ServiceAccountIdentity {
            namespace: "apps".into(),
            name: "builder".into(),
            uid: "u-1".into(),
        };
        let pod = BoundPod {
            name: "web-1".into(),
            uid: "p-1".into(),
        };
        let (token, _) = tokens.issue(&who, &[crate::sa_token::ISSUER.into()], 600, Some(&pod));
        let user = auth.authenticate(&token).unwrap();
        assert_eq!(user.username, "system:serviceaccount:apps:builder");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:apps",
                "system:authenticated"
            ]
        );
        assert_eq!(
            user.to_json()["extra"]["authentication.kubernetes.io/pod-name"],
            json!(["web-1"])
        );
        assert!(auth.accepts(&token));
    }
}
