//! The embedded registry's throughput: a 100 MiB blob (incompressible bytes) pushed to a
//! `skiff server` process's registry — monolithic and in 10 MiB chunks — and pulled back,
//! over HTTP/1.1 on loopback; beside it, the baselines: copying the same file on the same
//! disk (the limit any registry on this machine works against) and sha256 over it (every
//! push is verified, so hashing bounds it too).
//!
//! Then a 100 MiB image (one gzip layer of 100 files of incompressible bytes): pushed with
//! skiff's registry client, pulled into a node image store (download, verify, unpack), and
//! the layer unpacked alone; beside them, GNU tar extracting the same layer file.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::api::start_server;
use crate::fields;
use crate::stats::{emit, round};

const MIB: usize = 1 << 20;

struct Http {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: String,
    token: String,
}

impl Http {
    async fn connect(addr: &str, token: &str) -> Result<Http> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(Http {
            sender,
            addr: addr.to_string(),
            token: token.to_string(),
        })
    }

    /// Sends one request; answers the status, the Location header and the body's length.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Option<String>, usize)> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/octet-stream")
            .body(Full::new(body))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let mut body = resp.into_body();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                len += data.len();
            }
        }
        Ok((status, location, len))
    }
}

fn mb_per_s(bytes: usize, seconds: f64) -> f64 {
    round(bytes as f64 / MIB as f64 / seconds)
}

/// Incompressible bytes (xorshift), as layer content is after compression.
fn noise(size: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data
}

pub async fn run(size_mib: usize) -> Result<()> {
    let port = skiff_testkit::free_port()?;
    let server = start_server(&["--registry-port", &port.to_string()]).await?;
    let addr = format!("127.0.0.1:{port}");
    let token = std::fs::read_to_string(server.kubeconfig().with_file_name("token"))
        .context("the server's token")?
        .trim()
        .to_string();

    let size = size_mib * MIB;
    let data = noise(size, 0);
    let start = Instant::now();
    let digest = skiff_oci::sha256_digest(&data);
    let sha256 = start.elapsed().as_secs_f64();

    // Baseline: the same bytes written to a file and copied on this disk.
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("a"), &data)?;
    let start = Instant::now();
    std::fs::copy(dir.path().join("a"), dir.path().join("b"))?;
    let copy = start.elapsed().as_secs_f64();
    let data = Bytes::from(data);

    let mut http = Http::connect(&addr, &token).await?;
    let start = Instant::now();
    let (status, _, _) = http
        .send(
            "POST",
            &format!("/v2/bench/mono/blobs/uploads/?digest={digest}"),
            data.clone(),
        )
        .await?;
    let mono = start.elapsed().as_secs_f64();
    if status != 201 {
        bail!("monolithic push answered {status}");
    }

    let start = Instant::now();
    let (status, location, _) = http
        .send("POST", "/v2/bench/chunked/blobs/uploads/", Bytes::new())
        .await?;
    if status != 202 {
        bail!("starting an upload answered {status}");
    }
    let location = location.context("an upload location")?;
    for chunk in data.chunks(10 * MIB) {
        let (status, _, _) = http.send("PATCH", &location, data.slice_ref(chunk)).await?;
        if status != 202 {
            bail!("a chunk answered {status}");
        }
    }
    let (status, _, _) = http
        .send("PUT", &format!("{location}?digest={digest}"), Bytes::new())
        .await?;
    let chunked = start.elapsed().as_secs_f64();
    if status != 201 {
        bail!("finishing the upload answered {status}");
    }

    let start = Instant::now();
    let (status, _, len) = http
        .send(
            "GET",
            &format!("/v2/bench/mono/blobs/{digest}"),
            Bytes::new(),
        )
        .await?;
    let pull = start.elapsed().as_secs_f64();
    if status != 200 || len != size {
        bail!("pull answered {status} with {len} bytes");
    }

    let copy_rate = mb_per_s(size, copy);
    emit(
        "registry_blob",
        fields!("mib" => size_mib,
                "file_copy_mb_s" => copy_rate,
                "sha256_mb_s" => mb_per_s(size, sha256),
                "push_monolithic_mb_s" => mb_per_s(size, mono),
                "push_chunked_mb_s" => mb_per_s(size, chunked),
                "pull_mb_s" => mb_per_s(size, pull),
                "push_vs_copy" => round(mb_per_s(size, mono) / copy_rate),
                "pull_vs_copy" => round(mb_per_s(size, pull) / copy_rate)),
    );
    image(&addr, &token, size_mib, copy_rate).await
}

/// The image part (see the module documentation).
async fn image(addr: &str, token: &str, size_mib: usize, copy_rate: f64) -> Result<()> {
    use skiff_image::build::{BuiltImage, Compression, LayerBuilder};
    use skiff_image::{
        Credentials, Endpoint, ImageStore, Keyring, RegistriesConfig, RegistryClient,
    };

    let mut layer = LayerBuilder::new();
    for i in 0..size_mib {
        layer = layer.file(&format!("data/{i}"), &noise(MIB, i as u64 + 1), 0o644);
    }
    let layer = layer.finish(Compression::Gzip);
    let layer_bytes = layer.bytes.len();
    let image = BuiltImage::new(
        vec![layer.clone()],
        Default::default(),
        &skiff_oci::Platform::current(),
    );
    let endpoint = Endpoint::new(&format!("http://{addr}"));
    let client = RegistryClient::new(RegistriesConfig::default());
    let creds = Credentials {
        username: "skiff".into(),
        password: token.to_string(),
    };
    let repo = client.repository(&endpoint, "bench/image", Some(creds), true);
    let start = Instant::now();
    image.push(&repo, "v1").await.context("pushing the image")?;
    let push = start.elapsed().as_secs_f64();

    let dir = tempfile::tempdir()?;
    let store = ImageStore::open(dir.path().join("store"), client, Some(endpoint))?;
    let unpack_seconds = std::sync::Arc::new(std::sync::Mutex::new(0.0));
    let seen = unpack_seconds.clone();
    let progress: skiff_image::Progress = std::sync::Arc::new(move |e| {
        if let skiff_image::PullEvent::LayerUnpacked { seconds, .. } = e {
            *skiff_client::lock(&seen) += seconds;
        }
    });
    let start = Instant::now();
    store
        .pull("bench/image:v1", &Keyring::default(), Some(progress))
        .await
        .context("pulling the image into a node store")?;
    let pull = start.elapsed().as_secs_f64();
    let unpack_in_pull = *skiff_client::lock(&unpack_seconds);

    // The layer alone: skiff's unpacker and GNU tar on the same file.
    let file = dir.path().join("layer.tar.gz");
    std::fs::write(&file, &layer.bytes)?;
    let ours = dir.path().join("ours");
    std::fs::create_dir(&ours)?;
    let start = Instant::now();
    let source = std::fs::File::open(&file)?;
    tokio::task::spawn_blocking(move || {
        skiff_image::unpack::unpack_layer(source, &ours, &Default::default())
    })
    .await??;
    let unpack = start.elapsed().as_secs_f64();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs)?;
    let start = Instant::now();
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&file)
        .arg("-C")
        .arg(&theirs)
        .status()?;
    let tar = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("tar -xzf failed");
    }
    emit(
        "registry_image",
        fields!("mib" => size_mib,
                "layer_mib" => round(layer_bytes as f64 / MIB as f64),
                "file_copy_mb_s" => copy_rate,
                "push_mb_s" => mb_per_s(layer_bytes, push),
                "node_pull_mb_s" => mb_per_s(layer_bytes, pull),
                "unpack_in_pull_s" => round(unpack_in_pull),
                "unpack_s" => round(unpack),
                "gnu_tar_xzf_s" => round(tar),
                "push_vs_copy" => round(mb_per_s(layer_bytes, push) / copy_rate),
                "node_pull_vs_copy" => round(mb_per_s(layer_bytes, pull) / copy_rate)),
    );
    Ok(())
}
