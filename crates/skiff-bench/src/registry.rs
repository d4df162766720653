//! The embedded registry's throughput: a 100 MiB blob (incompressible bytes) pushed to a
//! `skiff server` process's registry — monolithic and in 10 MiB chunks — and pulled back,
//! over HTTP/1.1 on loopback; beside it, the baseline: copying the same file on the same
//! disk, the limit any registry on this machine works against.

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

pub async fn run(size_mib: usize) -> Result<()> {
    let port = skiff_testkit::free_port()?;
    let server = start_server(&["--registry-port", &port.to_string()]).await?;
    let addr = format!("127.0.0.1:{port}");
    let token = std::fs::read_to_string(server.kubeconfig().with_file_name("token"))
        .context("the server's token")?
        .trim()
        .to_string();

    // Incompressible content, as layers are after compression.
    let size = size_mib * MIB;
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let digest = format!(
        "sha256:{}",
        ring::digest::digest(&ring::digest::SHA256, &data)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );

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
                "push_monolithic_mb_s" => mb_per_s(size, mono),
                "push_chunked_mb_s" => mb_per_s(size, chunked),
                "pull_mb_s" => mb_per_s(size, pull),
                "push_vs_copy" => round(mb_per_s(size, mono) / copy_rate),
                "pull_vs_copy" => round(mb_per_s(size, pull) / copy_rate)),
    );
    Ok(())
}
