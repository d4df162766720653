//! `authentication.k8s.io/v1`: TokenReview (is this token valid, and whose is it? — what
//! webhooks and aggregated servers ask) and SelfSubjectReview (who am I? — `kubectl auth
//! whoami`), answered by the authenticator (`authn.rs`) and never stored.

use serde_json::{Value, json};
use skiff_api::resources::CREATE_ONLY;
use skiff_api::table::Printer;
use skiff_api::{ApiError, Cause, ResourceType};

use crate::authn::UserInfo;
use crate::registry::{Kind, Pending, answered};
use crate::state::ApiState;

pub static TOKEN_REVIEWS: ResourceType = ResourceType {
    verbs: CREATE_ONLY,
    ..skiff_api::resource_type!("authentication.k8s.io", "v1", "TokenReview", "tokenreviews",
        "tokenreview", namespaced: false, short: [], categories: [], sub: [])
};

pub static SELF_SUBJECT_REVIEWS: ResourceType = ResourceType {
    verbs: CREATE_ONLY,
    ..skiff_api::resource_type!("authentication.k8s.io", "v1", "SelfSubjectReview",
        "selfsubjectreviews", "selfsubjectreview", namespaced: false, short: [], categories: [],
        sub: [])
};

pub struct TokenReviews;

impl Kind for TokenReviews {
    fn resource(&self) -> &ResourceType {
        &TOKEN_REVIEWS
    }

    fn create_unstored<'a>(
        &'a self,
        state: &'a ApiState,
        _user: &'a UserInfo,
        _namespace: Option<&'a str>,
        review: Value,
    ) -> Pending<'a, Value> {
        Box::pin(async move {
            let token = review["spec"]["token"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if token.is_empty() {
                return Err(ApiError::invalid(
                    &TOKEN_REVIEWS,
                    "",
                    vec![Cause::required("spec.token")],
                ));
            }
            let wanted = skiff_api::object::string_list(review["spec"].get("audiences"));
            let status = match state.auth.authenticate(&token) {
                Some(user) => {
                    // A ServiceAccount token counts only for the audiences it was made for;
                    // the admin token is the API server's own.
                    let token_audiences = state
                        .auth
                        .tokens
                        .verify_token(&token)
                        .map(|t| t.audiences)
                        .unwrap_or_else(|| vec![crate::sa_token::ISSUER.to_string()]);
                    let audiences: Vec<String> = if wanted.is_empty() {
                        token_audiences.clone()
                    } else {
                        wanted
                            .iter()
                            .filter(|a| token_audiences.contains(a))
                            .cloned()
                            .collect()
                    };
                    if audiences.is_empty() {
                        json!({"authenticated": false, "user": {},
                               "error": format!("token audiences {token_audiences:?} is invalid for the target audiences {wanted:?}")})
                    } else {
                        json!({"authenticated": true, "user": user.to_json(), "audiences": audiences})
                    }
                }
                None => {
                    json!({"authenticated": false, "user": {}, "error": "invalid bearer token"})
                }
            };
            Ok(answered(review, &TOKEN_REVIEWS, status))
        })
    }
}

impl Printer for TokenReviews {}

pub struct SelfSubjectReviews;

impl Kind for SelfSubjectReviews {
    fn resource(&self) -> &ResourceType {
        &SELF_SUBJECT_REVIEWS
    }

    fn create_unstored<'a>(
        &'a self,
        _state: &'a ApiState,
        user: &'a UserInfo,
        _namespace: Option<&'a str>,
        review: Value,
    ) -> Pending<'a, Value> {
        let status = json!({"userInfo": user.to_json()});
        Box::pin(async move { Ok(answered(review, &SELF_SUBJECT_REVIEWS, status)) })
    }
}

impl Printer for SelfSubjectReviews {}
