//! List continue tokens: the revision of the first page and the last key served, so the next
//! page continues the same snapshot. Opaque to clients (URL-safe base64 of a small JSON
//! document, as upstream's).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use skiff_api::ApiError;
use skiff_store::Revision;

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    #[serde(rename = "v")]
    version: String,
    #[serde(rename = "rv")]
    pub revision: Revision,
    #[serde(rename = "start")]
    pub start_after: String,
}

const VERSION: &str = "meta.k8s.io/v1";

pub fn encode(revision: Revision, last_key: &str) -> String {
    let token = ContinueToken {
        version: VERSION.into(),
        revision,
        start_after: last_key.into(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("a token always serializes"))
}

pub fn decode(token: &str) -> Result<ContinueToken, ApiError> {
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("not base64"))?;
    let token: ContinueToken =
        serde_json::from_slice(&bytes).map_err(|_| invalid("not a continue token"))?;
    if token.version != VERSION {
        return Err(invalid(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    if token.revision == 0 || !token.start_after.starts_with('/') {
        return Err(invalid("no start key or revision"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_400() {
        let t = encode(42, "/pods/default/web-7");
        let d = decode(&t).unwrap();
        assert_eq!(
            (d.revision, d.start_after.as_str()),
            (42, "/pods/default/web-7")
        );
        assert_eq!(decode("!!!").unwrap_err().code, 400);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("{}")).unwrap_err().code, 400);
    }
}
