//! A client of the OCI distribution API: manifests, blobs, uploads, tags and the catalog,
//! over HTTPS (system roots, an extra CA, or unverified when configured) or plain HTTP, with
//! anonymous, basic and bearer-token authentication (the token dance of Docker Hub style
//! registries) and redirects for blob downloads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use skiff_oci::media_type;

use crate::auth::{Challenge, Credentials};
use crate::config::{RegistriesConfig, Tls};

type Body = BoxBody<Bytes, std::io::Error>;
type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

const MAX_MANIFEST: usize = 4 << 20;
const MAX_REDIRECTS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a response's headers (not its body: layers take their time).
const HEADERS_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a registry is reached: `https://host[:port]` or `http://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub base: String,
}

impl Endpoint {
    pub fn new(base: &str) -> Endpoint {
        let base = base.trim_end_matches('/');
        let base = if base.starts_with("http://") || base.starts_with("https://") {
            base.to_string()
        } else {
            format!("https://{base}")
        };
        Endpoint { base }
    }

    /// The `host[:port]` part, which keys the registries config.
    pub fn host(&self) -> &str {
        let rest = self.base.split_once("://").map_or(&*self.base, |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }

    /// A registry's own endpoint: HTTPS, or plain HTTP when the config says it is insecure
    /// or it is on loopback (as Docker treats localhost). Docker Hub's API is at
    /// `registry-1.docker.io`.
    pub fn for_registry(host: &str, config: &RegistriesConfig) -> Endpoint {
        let api_host = if host == skiff_oci::reference::DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            host
        };
        let insecure = config.host(host).is_some_and(|c| c.insecure) || is_loopback(host);
        let scheme = if insecure { "http" } else { "https" };
        Endpoint {
            base: format!("{scheme}://{api_host}"),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

/// What went wrong talking to one endpoint.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("cannot reach {endpoint}: {cause}")]
    Unreachable { endpoint: String, cause: String },
    #[error(
        "{endpoint} refused the credentials (401 Unauthorized{detail}); check the image pull secret or the registries config"
    )]
    Unauthorized { endpoint: String, detail: String },
    #[error("{endpoint} denied access (403 Forbidden): {message}")]
    Forbidden { endpoint: String, message: String },
    #[error("not found at {endpoint} ({message})")]
    NotFound { endpoint: String, message: String },
    #[error("{endpoint} answered {status}: {message}")]
    Http {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint}: {message}")]
    Protocol { endpoint: String, message: String },
}

impl EndpointError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, EndpointError::NotFound { .. })
    }
}

type Result<T> = std::result::Result<T, EndpointError>;

/// A request's body, re-creatable so the request can be sent again after an
/// authentication challenge or a redirect.
#[derive(Debug, Clone)]
pub enum Payload {
    Empty,
    Bytes(Bytes),
    /// A file streamed from disk.
    File(PathBuf),
}

impl Payload {
    async fn body(&self) -> std::io::Result<Body> {
        Ok(match self {
            Payload::Empty => Empty::new().map_err(|never| match never {}).boxed(),
            Payload::Bytes(b) => Full::new(b.clone()).map_err(|never| match never {}).boxed(),
            Payload::File(path) => file_body(tokio::fs::File::open(path).await?),
        })
    }
}

/// A file as a body of 1 MiB frames.
pub fn file_body(file: tokio::fs::File) -> Body {
    use tokio::io::AsyncReadExt;
    let stream = futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    StreamBody::new(stream).boxed()
}

/// Talks to registries. Cheap to clone; connections and tokens are shared.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistriesConfig,
    /// One HTTP client per TLS setting (system roots; an extra CA; unverified).
    clients: Mutex<HashMap<Tls, HttpClient>>,
    /// `Authorization` values that worked, per endpoint and scope, with their expiry.
    auth: Mutex<HashMap<String, (String, Instant)>>,
}

impl RegistryClient {
    pub fn new(config: RegistriesConfig) -> RegistryClient {
        RegistryClient {
            inner: Arc::new(Inner {
                config,
                clients: Mutex::new(HashMap::new()),
                auth: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &RegistriesConfig {
        &self.inner.config
    }

    /// A session with one repository at one endpoint. `credentials` are used when the
    /// registry asks; without them the session is anonymous.
    pub fn repository(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        credentials: Option<Credentials>,
        push: bool,
    ) -> Repository {
        let credentials = credentials.or_else(|| self.configured_credentials(endpoint));
        Repository {
            client: self.clone(),
            endpoint: endpoint.clone(),
            name: repository.to_string(),
            credentials,
            actions: if push { "pull,push" } else { "pull" },
        }
    }

    fn configured_credentials(&self, endpoint: &Endpoint) -> Option<Credentials> {
        let auth = self.inner.config.host(endpoint.host())?.auth.as_ref()?;
        match (&auth.username, &auth.password, &auth.auth) {
            (Some(u), Some(p), _) => Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }),
            (_, _, Some(field)) => Credentials::from_auth_field(field),
            _ => None,
        }
    }

    fn http(&self, endpoint: &Endpoint) -> Result<HttpClient> {
        let tls = self
            .inner
            .config
            .host(endpoint.host())
            .and_then(|c| c.tls.clone())
            .unwrap_or_default();
        let mut clients = self.inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&tls) {
            return Ok(c.clone());
        }
        let tls_config = tls_config(&tls).map_err(|message| EndpointError::Protocol {
            endpoint: endpoint.to_string(),
            message,
        })?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        clients.insert(tls, client.clone());
        Ok(client)
    }

    /// Repository names in the registry's catalog.
    pub async fn catalog(
        &self,
        endpoint: &Endpoint,
        credentials: Option<Credentials>,
    ) -> Result<Vec<String>> {
        let session = self.repository(endpoint, "", credentials, false);
        let mut out = Vec::new();
        let mut path = "/v2/_catalog?n=1000".to_string();
        loop {
            let resp = session
                .send(Method::GET, &path, &[], Payload::Empty)
                .await?;
            let next = next_link(&resp);
            let doc = session.json(resp).await?;
            out.extend(
                doc.get("repositories")
                    .and_then(|r| r.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str().map(str::to_string)),
            );
            match next {
                Some(n) => path = n,
                None => return Ok(out),
            }
        }
    }
}

/// The `Link: <…>; rel="next"` of a paginated answer.
fn next_link(resp: &Response<Incoming>) -> Option<String> {
    let link = resp.headers().get(header::LINK)?.to_str().ok()?;
    let start = link.find('<')? + 1;
    let end = link.find('>')?;
    link.contains("rel=\"next\"")
        .then(|| link[start..end].to_string())
}

/// One repository at one endpoint.
pub struct Repository {
    client: RegistryClient,
    endpoint: Endpoint,
    name: String,
    credentials: Option<Credentials>,
    actions: &'static str,
}

/// A manifest as fetched: its bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: String,
}

impl Repository {
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn scope(&self) -> String {
        if self.name.is_empty() {
            "registry:catalog:*".to_string()
        } else {
            format!("repository:{}:{}", self.name, self.actions)
        }
    }

    /// Who asks for what where: a token obtained with some credentials is never reused
    /// with others.
    fn auth_key(&self) -> String {
        let who = self.credentials.as_ref().map_or(String::new(), |c| {
            skiff_oci::sha256_digest(format!("{}:{}", c.username, c.password).as_bytes())
        });
        format!("{} {} {who}", self.endpoint.base, self.scope())
    }

    fn err_unreachable(&self, cause: String) -> EndpointError {
        EndpointError::Unreachable {
            endpoint: self.endpoint.to_string(),
            cause,
        }
    }

    /// Sends a request, answering an authentication challenge once and following
    /// redirects of reads.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(header::HeaderName, String)],
        payload: Payload,
    ) -> Result<Response<Incoming>> {
        let http = self.client.http(&self.endpoint)?;
        let mut url = format!("{}{}", self.endpoint.base, path_and_query);
        let mut challenged = false;
        let mut redirects = 0;
        loop {
            let same_host = url.starts_with(&format!("{}/", self.endpoint.base));
            let mut req = Request::builder().method(method.clone()).uri(&url);
            for (name, value) in headers {
                req = req.header(name, value);
            }
            if same_host && let Some(auth) = self.cached_auth() {
                req = req.header(header::AUTHORIZATION, auth);
            }
            let body = payload
                .body()
                .await
                .map_err(|e| self.err_unreachable(format!("reading the upload: {e}")))?;
            let req = req.body(body).map_err(|e| EndpointError::Protocol {
                endpoint: self.endpoint.to_string(),
                message: format!("bad request URL {url}: {e}"),
            })?;
            let resp = match tokio::time::timeout(HEADERS_TIMEOUT, http.request(req)).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) => return Err(self.err_unreachable(error_chain(&e))),
                Err(_) => {
                    return Err(self.err_unreachable(format!(
                        "no answer within {}s",
                        HEADERS_TIMEOUT.as_secs()
                    )));
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && same_host && !challenged {
                challenged = true;
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Challenge::parse);
                self.authenticate(challenge).await?;
                continue;
            }
            if status.is_redirection()
                && (method == Method::GET || method == Method::HEAD)
                && let Some(location) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
            {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(EndpointError::Protocol {
                        endpoint: self.endpoint.to_string(),
                        message: format!("more than {MAX_REDIRECTS} redirects"),
                    });
                }
                url = if location.starts_with("http://") || location.starts_with("https://") {
                    location.to_string()
                } else {
                    format!("{}{}", self.endpoint.base, location)
                };
                continue;
            }
            if status.is_success() {
                return Ok(resp);
            }
            return Err(self.status_error(resp).await);
        }
    }

    fn cached_auth(&self) -> Option<String> {
        let auth = self
            .client
            .inner
            .auth
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        auth.get(&self.auth_key())
            .filter(|(_, expiry)| *expiry > Instant::now())
            .map(|(value, _)| value.clone())
    }

    fn remember_auth(&self, value: String, lifetime: Duration) {
        let mut auth = self
            .client
            .inner
            .auth
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        auth.insert(self.auth_key(), (value, Instant::now() + lifetime));
    }

    fn unauthorized(&self, detail: &str) -> EndpointError {
        EndpointError::Unauthorized {
            endpoint: self.endpoint.to_string(),
            detail: if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            },
        }
    }

    /// Answers a challenge: basic credentials as they are; for a bearer challenge, a token
    /// from the realm (with the credentials if there are any, anonymous otherwise).
    async fn authenticate(&self, challenge: Option<Challenge>) -> Result<()> {
        match challenge {
            Some(Challenge::Basic) => {
                let creds = self.credentials.as_ref().ok_or_else(|| {
                    self.unauthorized("the registry wants credentials and none were given")
                })?;
                self.remember_auth(creds.basic_header(), Duration::from_secs(3600));
                Ok(())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let token = self.fetch_token(&realm, service.as_deref(), scope).await?;
                self.remember_auth(format!("Bearer {}", token.0), token.1);
                Ok(())
            }
            None => Err(self.unauthorized("without a usable WWW-Authenticate challenge")),
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<String>,
    ) -> Result<(String, Duration)> {
        let scope = match scope {
            // The challenge's scope may be narrower (pull only) than this session needs.
            Some(s) if !self.name.is_empty() && s.starts_with("repository:") => self.scope(),
            Some(s) => s,
            None => self.scope(),
        };
        let mut query = vec![format!("scope={}", encode(&scope))];
        if let Some(service) = service {
            query.push(format!("service={}", encode(service)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        let realm_endpoint = Endpoint::new(
            realm
                .split('/')
                .take(3)
                .collect::<Vec<_>>()
                .join("/")
                .as_str(),
        );
        let http = self.client.http(&realm_endpoint)?;
        let mut req = Request::builder().method(Method::GET).uri(&url);
        if let Some(creds) = &self.credentials {
            req = req.header(header::AUTHORIZATION, creds.basic_header());
        }
        let req = req
            .body(Empty::new().map_err(|never| match never {}).boxed())
            .map_err(|e| EndpointError::Protocol {
                endpoint: self.endpoint.to_string(),
                message: format!("bad token realm {realm}: {e}"),
            })?;
        let resp = match tokio::time::timeout(HEADERS_TIMEOUT, http.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(
                    self.err_unreachable(format!("the token service {realm}: {}", error_chain(&e)))
                );
            }
            Err(_) => {
                return Err(
                    self.err_unreachable(format!("the token service {realm} did not answer"))
                );
            }
        };
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            let message = registry_message(
                &collect(resp.into_body(), 64 << 10)
                    .await
                    .unwrap_or_default(),
            );
            return Err(self.unauthorized(&message));
        }
        if !resp.status().is_success() {
            return Err(self.status_error(resp).await);
        }
        let doc = self.json(resp).await?;
        let token = doc
            .get("token")
            .or_else(|| doc.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| EndpointError::Protocol {
                endpoint: self.endpoint.to_string(),
                message: format!("the token service {realm} answered no token"),
            })?;
        let lifetime = doc
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .unwrap_or(60)
            .saturating_sub(5)
            .max(1);
        Ok((token.to_string(), Duration::from_secs(lifetime)))
    }

    async fn status_error(&self, resp: Response<Incoming>) -> EndpointError {
        let status = resp.status();
        let body = collect(resp.into_body(), 64 << 10)
            .await
            .unwrap_or_default();
        let message = registry_message(&body);
        let endpoint = self.endpoint.to_string();
        match status {
            StatusCode::UNAUTHORIZED => self.unauthorized(&message),
            StatusCode::FORBIDDEN => EndpointError::Forbidden { endpoint, message },
            StatusCode::NOT_FOUND => EndpointError::NotFound {
                endpoint,
                message: if message.is_empty() {
                    "404".to_string()
                } else {
                    message
                },
            },
            _ => EndpointError::Http {
                endpoint,
                status: status.as_u16(),
                message,
            },
        }
    }

    async fn json(&self, resp: Response<Incoming>) -> Result<serde_json::Value> {
        let body = collect(resp.into_body(), MAX_MANIFEST)
            .await
            .map_err(|message| self.err_unreachable(message))?;
        serde_json::from_slice(&body).map_err(|e| EndpointError::Protocol {
            endpoint: self.endpoint.to_string(),
            message: format!("the answer is not JSON: {e}"),
        })
    }

    /// Checks the registry answers and takes this session's credentials (the version check
    /// challenges, and the credentials are traded for a token), before any real work.
    pub async fn ping(&self) -> Result<()> {
        self.send(Method::GET, "/v2/", &[], Payload::Empty).await?;
        Ok(())
    }

    /// A manifest or index by tag or digest. A digest reference is verified.
    pub async fn manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let resp = self
            .send(
                Method::GET,
                &format!("/v2/{}/manifests/{reference}", self.name),
                &[(header::ACCEPT, media_type::ACCEPT_MANIFESTS.to_string())],
                Payload::Empty,
            )
            .await?;
        let claimed = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = collect(resp.into_body(), MAX_MANIFEST)
            .await
            .map_err(|message| self.err_unreachable(message))?;
        let digest = skiff_oci::sha256_digest(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(EndpointError::Protocol {
                endpoint: self.endpoint.to_string(),
                message: format!(
                    "the manifest's digest is {digest}, not the {reference} asked for"
                ),
            });
        }
        // The document's own mediaType wins over a generic Content-Type.
        let in_doc = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|d| {
                d.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            });
        let media_type = in_doc
            .or(claimed)
            .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string());
        Ok(FetchedManifest {
            bytes: Bytes::from(bytes),
            media_type,
            digest,
        })
    }

    /// A blob's content as a stream (following the registry's redirect to its storage).
    pub async fn blob(&self, digest: &str) -> Result<Response<Incoming>> {
        self.send(
            Method::GET,
            &format!("/v2/{}/blobs/{digest}", self.name),
            &[],
            Payload::Empty,
        )
        .await
    }

    pub async fn has_blob(&self, digest: &str) -> Result<bool> {
        match self
            .send(
                Method::HEAD,
                &format!("/v2/{}/blobs/{digest}", self.name),
                &[],
                Payload::Empty,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Mounts a blob from another repository of the same registry; false if the registry
    /// started an upload instead (the blob is not there), which is then cancelled.
    pub async fn mount_blob(&self, digest: &str, from: &str) -> Result<bool> {
        let resp = self
            .send(
                Method::POST,
                &format!(
                    "/v2/{}/blobs/uploads/?mount={digest}&from={from}",
                    self.name
                ),
                &[],
                Payload::Empty,
            )
            .await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(true);
        }
        if let Some(location) = location(&resp) {
            let _ = self
                .send(Method::DELETE, &location, &[], Payload::Empty)
                .await;
        }
        Ok(false)
    }

    /// Uploads a blob in one request after opening an upload session.
    pub async fn push_blob(&self, digest: &str, content: Payload) -> Result<()> {
        let resp = self
            .send(
                Method::POST,
                &format!("/v2/{}/blobs/uploads/", self.name),
                &[],
                Payload::Empty,
            )
            .await?;
        let location = location(&resp).ok_or_else(|| EndpointError::Protocol {
            endpoint: self.endpoint.to_string(),
            message: "an upload was started without a Location".into(),
        })?;
        let sep = if location.contains('?') { '&' } else { '?' };
        self.send(
            Method::PUT,
            &format!("{location}{sep}digest={digest}"),
            &[(header::CONTENT_TYPE, "application/octet-stream".to_string())],
            content,
        )
        .await?;
        Ok(())
    }

    /// Stores a manifest under a tag or its digest; answers the digest.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String> {
        let digest = skiff_oci::sha256_digest(&bytes);
        self.send(
            Method::PUT,
            &format!("/v2/{}/manifests/{reference}", self.name),
            &[(header::CONTENT_TYPE, media_type.to_string())],
            Payload::Bytes(bytes),
        )
        .await?;
        Ok(digest)
    }

    pub async fn delete_manifest(&self, reference: &str) -> Result<()> {
        self.send(
            Method::DELETE,
            &format!("/v2/{}/manifests/{reference}", self.name),
            &[],
            Payload::Empty,
        )
        .await?;
        Ok(())
    }

    pub async fn tags(&self) -> Result<Vec<String>> {
        let resp = self
            .send(
                Method::GET,
                &format!("/v2/{}/tags/list", self.name),
                &[],
                Payload::Empty,
            )
            .await?;
        let doc = self.json(resp).await?;
        Ok(doc
            .get("tags")
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect())
    }
}

/// An answer's `Location` as a path (with query) on the endpoint.
fn location(resp: &Response<Incoming>) -> Option<String> {
    let loc = resp.headers().get(header::LOCATION)?.to_str().ok()?;
    Some(match loc.find("://") {
        Some(i) => {
            let after = &loc[i + 3..];
            after
                .find('/')
                .map_or("/".to_string(), |p| after[p..].to_string())
        }
        None => loc.to_string(),
    })
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The registry's JSON errors as one line: `MANIFEST_UNKNOWN: manifest unknown`.
fn registry_message(body: &[u8]) -> String {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(200)
            .collect();
    };
    doc.get("errors")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
            match (code.is_empty(), message.is_empty()) {
                (false, false) => format!("{code}: {message}"),
                (false, true) => code.to_string(),
                _ => message.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn collect(body: Incoming, limit: usize) -> std::result::Result<Vec<u8>, String> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes().to_vec()),
        Err(e) => Err(format!("reading the answer: {e}")),
    }
}

/// An error and its causes on one line, without repeating what a cause already says.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    // hyper's outer "client error (Connect)" says nothing the causes don't.
    if parts.len() > 1 && parts[0].starts_with("client error") {
        parts.remove(0);
    }
    parts.join(": ")
}

fn tls_config(tls: &Tls) -> std::result::Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if tls.insecure_skip_verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(skiff_tls::any_server_certificate())
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &tls.ca_file {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("the CA file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("the CA file {}: {e}", path.display()))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_for_registries() {
        let cfg = RegistriesConfig::parse("configs:\n  lab:5000:\n    insecure: true\n").unwrap();
        assert_eq!(
            Endpoint::for_registry("docker.io", &cfg).base,
            "https://registry-1.docker.io"
        );
        assert_eq!(
            Endpoint::for_registry("gcr.io", &cfg).base,
            "https://gcr.io"
        );
        assert_eq!(
            Endpoint::for_registry("lab:5000", &cfg).base,
            "http://lab:5000"
        );
        assert_eq!(
            Endpoint::for_registry("127.0.0.1:5000", &cfg).base,
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            Endpoint::for_registry("localhost", &cfg).base,
            "http://localhost"
        );
        assert_eq!(Endpoint::new("mirror:5000/").base, "https://mirror:5000");
        assert_eq!(Endpoint::new("http://mirror:5000").host(), "mirror:5000");
    }

    #[test]
    fn registry_errors_read_as_one_line() {
        assert_eq!(
            registry_message(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown: x:v2"}]}"#
            ),
            "MANIFEST_UNKNOWN: manifest unknown: x:v2"
        );
        assert_eq!(registry_message(b"plain text\n"), "plain text");
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
