//! The distribution API's routes. Repository names contain slashes, so one handler parses
//! `/v2/<name>/{manifests,blobs,tags}/…` itself. Reads are open to anyone who can reach the
//! port; writes need basic auth whose password the `Authorizer` accepts.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::storage::{Storage, StorageError};

/// Whether a token may push (the API server's admin or service account tokens).
pub type Authorizer = Arc<dyn Fn(&str) -> bool + Send + Sync>;

const API_VERSION: &str = "registry/2.0";
/// Manifests are small; anything larger is refused rather than buffered.
const MAX_MANIFEST: usize = 4 << 20;

#[derive(Clone)]
struct Registry {
    storage: Storage,
    authorize: Authorizer,
    scheme: Scheme,
}

/// How clients reach the registry, for the token realm it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// The registry as an axum router (serve it on its own port).
pub fn router(storage: Storage, authorize: Authorizer, scheme: Scheme) -> Router {
    Router::new().fallback(handle).with_state(Registry {
        storage,
        authorize,
        scheme,
    })
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    let body = json!({"errors": [{"code": code, "message": message.to_string()}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn storage_error(e: StorageError) -> Response {
    let (status, code) = match &e {
        StorageError::NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
        StorageError::DigestInvalid(_) | StorageError::DigestMismatch { .. } => {
            (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
        }
        StorageError::TagInvalid(_) => (StatusCode::BAD_REQUEST, "TAG_INVALID"),
        StorageError::BlobUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        StorageError::ManifestUnknown(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        StorageError::UploadUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        StorageError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(error = %e, "registry storage");
    }
    error(status, code, e)
}

/// One query parameter, percent-decoded.
fn query(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

enum Route<'a> {
    Base,
    Token,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Uploads(&'a str, Option<&'a str>),
    Blob(&'a str, &'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if rest == "token" {
        return Some(Route::Token);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(i) = rest.rfind("/blobs/uploads") {
        let id = rest[i + "/blobs/uploads".len()..].trim_start_matches('/');
        return Some(Route::Uploads(&rest[..i], (!id.is_empty()).then_some(id)));
    }
    if let Some(i) = rest.rfind("/manifests/") {
        return Some(Route::Manifest(
            &rest[..i],
            &rest[i + "/manifests/".len()..],
        ));
    }
    if let Some(i) = rest.rfind("/blobs/") {
        return Some(Route::Blob(&rest[..i], &rest[i + "/blobs/".len()..]));
    }
    None
}

/// The token handed to clients without credentials: it reads, never writes.
const ANONYMOUS: &str = "anonymous";

/// What a request's Authorization header presents.
enum Credentials {
    None,
    /// A cluster token (as a basic-auth password or a bearer token).
    Valid(String),
    Anonymous,
    Invalid,
}

impl Registry {
    fn credentials(&self, headers: &HeaderMap) -> Credentials {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Credentials::None;
        };
        let token = if let Some(token) = value.strip_prefix("Bearer ") {
            token.trim().to_string()
        } else if let Some(encoded) = value.strip_prefix("Basic ") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim())
            else {
                return Credentials::Invalid;
            };
            let decoded = String::from_utf8_lossy(&decoded).into_owned();
            match decoded.split_once(':') {
                Some((_, password)) => password.to_string(),
                None => return Credentials::Invalid,
            }
        } else {
            return Credentials::Invalid;
        };
        if token == ANONYMOUS {
            Credentials::Anonymous
        } else if (self.authorize)(&token) {
            Credentials::Valid(token)
        } else {
            Credentials::Invalid
        }
    }
}

/// The challenge that starts the token dance: clients fetch a token from `/v2/token` (with
/// basic auth to push, without to pull) and present it as a bearer token.
fn challenge(scheme: Scheme, headers: &HeaderMap, message: &str) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let mut resp = error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
    let scheme = match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let value = format!("Bearer realm=\"{scheme}://{host}/v2/token\",service=\"skiff-registry\"");
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// `/v2/token`: a cluster token presented with basic auth comes back as the bearer token
/// (push and pull); no credentials get the anonymous token (pull only).
fn token(credentials: Credentials) -> Response {
    let token = match credentials {
        Credentials::Valid(token) => token,
        Credentials::None | Credentials::Anonymous => ANONYMOUS.to_string(),
        Credentials::Invalid => {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "wrong credentials: the password must be a cluster token",
            );
        }
    };
    json_response(json!({"token": token, "access_token": token, "expires_in": 3600}))
}

async fn handle(
    State(r): State<Registry>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut response = dispatch(&r, &method, &uri, &headers, body).await;
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static(API_VERSION),
    );
    response
}

async fn dispatch(
    r: &Registry,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let Some(route) = route(uri.path()) else {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("no such endpoint {}", uri.path()),
        );
    };
    let writes = !matches!(*method, Method::GET | Method::HEAD);
    let credentials = r.credentials(headers);
    match (&route, &credentials) {
        (Route::Token, _) if *method == Method::GET => return token(credentials),
        (_, Credentials::Invalid) => {
            return challenge(
                r.scheme,
                headers,
                "wrong credentials: the password must be a cluster token",
            );
        }
        // The version check is where clients learn how to authenticate.
        (Route::Base, Credentials::None) => {
            return challenge(r.scheme, headers, "get a token (anonymous ones may pull)");
        }
        (_, Credentials::Valid(_)) => {}
        _ if writes => {
            return challenge(
                r.scheme,
                headers,
                "pushing needs a cluster token as the password",
            );
        }
        _ => {}
    }
    let result = match (route, method.clone()) {
        (Route::Base, Method::GET | Method::HEAD) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response()),
        (Route::Catalog, Method::GET) => r
            .storage
            .catalog()
            .await
            .map(|names| json_response(json!({"repositories": names}))),
        (Route::Tags(name), Method::GET) => tags(r, name, uri).await,
        (Route::Manifest(name, reference), Method::GET | Method::HEAD) => {
            get_manifest(r, name, reference, *method == Method::HEAD).await
        }
        (Route::Manifest(name, reference), Method::PUT) => {
            put_manifest(r, name, reference, headers, body).await
        }
        (Route::Manifest(name, reference), Method::DELETE) => r
            .storage
            .delete_manifest(name, reference)
            .await
            .map(|()| StatusCode::ACCEPTED.into_response()),
        (Route::Blob(name, digest), Method::DELETE) => r
            .storage
            .delete_blob(name, digest)
            .await
            .map(|()| StatusCode::ACCEPTED.into_response()),
        (Route::Blob(name, digest), Method::GET | Method::HEAD) => {
            get_blob(r, name, digest, headers, *method == Method::HEAD).await
        }
        (Route::Uploads(name, None), Method::POST) => start_upload(r, name, uri, body).await,
        (Route::Uploads(name, Some(id)), Method::PATCH) => patch_upload(r, name, id, body).await,
        (Route::Uploads(name, Some(id)), Method::PUT) => {
            finish_upload(r, name, id, uri, body).await
        }
        (Route::Uploads(name, Some(id)), Method::GET) => upload_status(r, name, id).await,
        (Route::Uploads(_, Some(id)), Method::DELETE) => r
            .storage
            .cancel_upload(id)
            .await
            .map(|()| StatusCode::NO_CONTENT.into_response()),
        _ => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                format!("{method} {} is not supported", uri.path()),
            );
        }
    };
    result.unwrap_or_else(storage_error)
}

fn json_response(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn tags(r: &Registry, name: &str, uri: &Uri) -> Result<Response, StorageError> {
    let mut tags = r.storage.tags(name).await.map_err(|e| match e {
        StorageError::NameInvalid(n) => StorageError::ManifestUnknown(n),
        e => e,
    })?;
    if let Some(last) = query(uri, "last") {
        tags.retain(|t| *t > last);
    }
    if let Some(n) = query(uri, "n").and_then(|n| n.parse().ok()) {
        tags.truncate(n);
    }
    Ok(json_response(json!({"name": name, "tags": tags})))
}

async fn get_manifest(
    r: &Registry,
    name: &str,
    reference: &str,
    head: bool,
) -> Result<Response, StorageError> {
    let (bytes, media_type, digest) = r.storage.manifest(name, reference).await?;
    let len = bytes.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&media_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        "Docker-Content-Digest",
        HeaderValue::from_str(&digest).expect("digests are ASCII"),
    );
    Ok(resp)
}

async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, Response> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "UNKNOWN",
                format!("reading the body: {e}"),
            )
        })?;
        if out.len() + chunk.len() > limit {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("more than {limit} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn put_manifest(
    r: &Registry,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, StorageError> {
    let bytes = match read_limited(body, MAX_MANIFEST).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
            "the manifest is not JSON",
        ));
    };
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            doc.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
    // Everything a manifest refers to must be here already: blobs, and for an index its
    // child manifests.
    let children: Vec<String> = doc
        .get("manifests")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("digest").and_then(|d| d.as_str()).map(str::to_string))
        .collect();
    for digest in skiff_oci::manifest::references(&doc) {
        if children.contains(&digest) {
            r.storage.manifest(name, &digest).await?;
        } else {
            r.storage.blob(name, &digest).await?;
        }
    }
    let digest = r
        .storage
        .put_manifest(name, reference, &bytes, &media_type)
        .await?;
    Ok(created(&format!("/v2/{name}/manifests/{digest}"), &digest))
}

fn created(location: &str, digest: &str) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(location).expect("ASCII location"),
    );
    h.insert(
        "Docker-Content-Digest",
        HeaderValue::from_str(digest).expect("ASCII digest"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

/// `bytes=a-b` (or `a-`) within `len`.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse().ok()?
    };
    (start <= end && end < len).then_some((start, end))
}

async fn get_blob(
    r: &Registry,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, StorageError> {
    let (path, len) = r.storage.blob(name, digest).await?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match range {
        Some(v) => match parse_range(v, len) {
            Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e),
            None => {
                let mut resp = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UNKNOWN",
                    format!("range {v} of {len} bytes"),
                );
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{len}")).expect("ASCII"),
                );
                return Ok(resp);
            }
        },
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let body = if head || count == 0 {
        Body::empty()
    } else {
        let mut file = tokio::fs::File::open(&path).await?;
        file.seek(std::io::SeekFrom::Start(start)).await?;
        Body::from_stream(reader_stream(file.take(count)))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        "Docker-Content-Digest",
        HeaderValue::from_str(digest).expect("ASCII digest"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")).expect("ASCII"),
        );
    }
    Ok(resp)
}

/// A reader as a stream of chunks of up to 1 MiB, each read into its own buffer (handed
/// to the connection without a copy).
fn reader_stream<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    futures_util::stream::unfold(reader, |mut reader| async move {
        let mut buf = bytes::BytesMut::with_capacity(1 << 20);
        match reader.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), reader)),
            Err(e) => Some((Err(e), reader)),
        }
    })
}

fn upload_response(status: StatusCode, name: &str, id: &str, size: u64) -> Response {
    let mut resp = status.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v2/{name}/blobs/uploads/{id}")).expect("ASCII"),
    );
    h.insert(
        header::RANGE,
        HeaderValue::from_str(&format!("0-{}", size.saturating_sub(1))).expect("ASCII"),
    );
    h.insert(
        "Docker-Upload-UUID",
        HeaderValue::from_str(id).expect("ASCII"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

/// Streams a request body onto the end of an upload.
async fn append_body(r: &Registry, id: &str, body: Body) -> Result<u64, StorageError> {
    r.storage.append_stream(id, body.into_data_stream()).await
}

async fn start_upload(
    r: &Registry,
    name: &str,
    uri: &Uri,
    body: Body,
) -> Result<Response, StorageError> {
    if let (Some(digest), Some(from)) = (query(uri, "mount"), query(uri, "from"))
        && r.storage.mount(name, &digest, &from).await?
    {
        return Ok(created(&format!("/v2/{name}/blobs/{digest}"), &digest));
    }
    let id = r.storage.start_upload(name).await?;
    if let Some(digest) = query(uri, "digest") {
        // Monolithic: the whole blob in this request.
        append_body(r, &id, body).await?;
        r.storage.finish_upload(name, &id, &digest).await?;
        return Ok(created(&format!("/v2/{name}/blobs/{digest}"), &digest));
    }
    Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0))
}

async fn patch_upload(
    r: &Registry,
    name: &str,
    id: &str,
    body: Body,
) -> Result<Response, StorageError> {
    let size = append_body(r, id, body).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, id, size))
}

async fn finish_upload(
    r: &Registry,
    name: &str,
    id: &str,
    uri: &Uri,
    body: Body,
) -> Result<Response, StorageError> {
    let Some(digest) = query(uri, "digest") else {
        return Err(StorageError::DigestInvalid(
            "(none: PUT needs ?digest=)".into(),
        ));
    };
    append_body(r, id, body).await?;
    r.storage.finish_upload(name, id, &digest).await?;
    Ok(created(&format!("/v2/{name}/blobs/{digest}"), &digest))
}

async fn upload_status(r: &Registry, name: &str, id: &str) -> Result<Response, StorageError> {
    let size = r.storage.upload_size(id).await?;
    Ok(upload_response(StatusCode::NO_CONTENT, name, id, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_with_slashes_in_names() {
        assert!(matches!(route("/v2/"), Some(Route::Base)));
        assert!(matches!(
            route("/v2/a/b/manifests/v1"),
            Some(Route::Manifest("a/b", "v1"))
        ));
        assert!(matches!(
            route("/v2/a/blobs/uploads/"),
            Some(Route::Uploads("a", None))
        ));
        assert!(matches!(
            route("/v2/a/b/blobs/uploads/abc"),
            Some(Route::Uploads("a/b", Some("abc")))
        ));
        assert!(matches!(
            route("/v2/a/blobs/sha256:00"),
            Some(Route::Blob("a", "sha256:00"))
        ));
        assert!(matches!(
            route("/v2/x/y/tags/list"),
            Some(Route::Tags("x/y"))
        ));
        assert!(route("/v1/x").is_none());
    }

    #[test]
    fn ranges_and_percent_decoding() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=90-100", 100), None);
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("sha256%3Aab"), "sha256:ab");
    }
}
