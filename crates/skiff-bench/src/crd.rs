//! Custom resources against built-in ones (`skiff-bench crd`), on the API server alone:
//!
//! - creates/s and latency of a custom object (structural schema with defaults, a pattern
//!   and a CEL rule, printer columns) against ConfigMaps of the same JSON size, in one run
//!   on one server, alternating rounds so both meet the same noise (target: within 20%);
//! - time from a definition's create to `Established` as a client sees it (target ≤ 1 s);
//! - the server's memory per registered definition (each with its OpenAPI rendered, as
//!   kubectl's discovery causes).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::api::{Client, connect, start_server};
use crate::fields;
use crate::stats::{Latencies, emit, in_parallel, round};

fn definition(i: usize) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets{i}.bench.example.com")},
        "spec": {"group": "bench.example.com", "scope": "Namespaced",
            "names": {"plural": format!("widgets{i}"), "kind": format!("Widget{i}")},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object",
                        "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min above max"}],
                        "properties": {
                            "image": {"type": "string", "pattern": "^[a-z0-9./:-]+$"},
                            "min": {"type": "integer", "default": 0},
                            "max": {"type": "integer", "maximum": 100},
                            "color": {"type": "string", "enum": ["red", "green", "blue"]},
                            "note": {"type": "string", "maxLength": 256}}},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]}]}
    })
}

fn widget(name: &str) -> Value {
    json!({"apiVersion": "bench.example.com/v1", "kind": "Widget0",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"image": "registry.local/hello-node:v1", "min": 1, "max": 10, "color": "blue",
                 "note": "a note long enough to make the object about as large as the map"}})
}

/// A ConfigMap of the same JSON size as `widget(name)`.
fn configmap(name: &str) -> Value {
    let target = widget(name).to_string().len();
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench"}}, "data": {"image": ""}});
    let pad = target.saturating_sub(cm.to_string().len());
    cm["data"]["image"] = "x".repeat(pad).into();
    cm
}

async fn create_all(
    client: &Client,
    path: &str,
    make: fn(&str) -> Value,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> Result<(Latencies, Duration)> {
    let start = Instant::now();
    let (client, path, prefix) = (client.clone(), path.to_string(), prefix.to_string());
    let lat = in_parallel(count, concurrency, move |i| {
        let (mut client, path) = (client.clone(), path.clone());
        let body = Bytes::from(make(&format!("{prefix}-{i}")).to_string());
        async move {
            let (status, reply) = client.send("POST", &path, "application/json", body).await?;
            if status != 201 {
                bail!(
                    "create answered {status}: {}",
                    String::from_utf8_lossy(&reply)
                );
            }
            Ok(())
        }
    })
    .await?;
    Ok((lat, start.elapsed()))
}

/// Creates a definition and waits until a GET shows it Established; answers how long.
async fn establish(client: &mut Client, i: usize) -> Result<Duration> {
    let start = Instant::now();
    let (status, reply) = client
        .send(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            "application/json",
            Bytes::from(definition(i).to_string()),
        )
        .await?;
    if status != 201 {
        bail!(
            "CRD create answered {status}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    let path = format!(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets{i}.bench.example.com"
    );
    loop {
        let (_, reply) = client
            .send("GET", &path, "application/json", Bytes::new())
            .await?;
        let crd: Value = serde_json::from_slice(&reply)?;
        let established = crd["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
        if established {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("definition {i} not established after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub async fn run(objects: usize, concurrency: usize, definitions: usize) -> Result<()> {
    let server = start_server(&["--disable-controller-manager", "--disable-scheduler"]).await?;
    let mut client = connect(&server).await?;
    establish(&mut client, 0).await?;
    // Warm both paths (the caches, the first CEL evaluation) outside the measurement.
    let widgets = "/apis/bench.example.com/v1/namespaces/default/widgets0";
    let configmaps = "/api/v1/namespaces/default/configmaps";
    create_all(&client, widgets, widget, "warm", 200, concurrency).await?;
    create_all(&client, configmaps, configmap, "warm", 200, concurrency).await?;
    // Alternating rounds: each kind meets the same state of the machine.
    let rounds = 4;
    let per_round = objects / rounds;
    let (mut custom, mut builtin) = (Latencies::default(), Latencies::default());
    let (mut custom_time, mut builtin_time) = (Duration::ZERO, Duration::ZERO);
    for round_no in 0..rounds {
        let (lat, t) = create_all(
            &client,
            configmaps,
            configmap,
            &format!("cm{round_no}"),
            per_round,
            concurrency,
        )
        .await?;
        builtin.extend(lat);
        builtin_time += t;
        let (lat, t) = create_all(
            &client,
            widgets,
            widget,
            &format!("w{round_no}"),
            per_round,
            concurrency,
        )
        .await?;
        custom.extend(lat);
        custom_time += t;
    }
    let total = per_round * rounds;
    let custom_rate = total as f64 / custom_time.as_secs_f64();
    let builtin_rate = total as f64 / builtin_time.as_secs_f64();
    emit(
        "crd-creates",
        [
            fields!("objects" => total, "concurrency" => concurrency,
                    "object_bytes" => widget("w0-0").to_string().len(),
                    "custom_creates_per_s" => round(custom_rate),
                    "configmap_creates_per_s" => round(builtin_rate),
                    "ratio" => round(custom_rate / builtin_rate)),
            custom.summary("custom_"),
            builtin.summary("configmap_"),
        ]
        .concat(),
    );

    // Definitions: time to Established, and memory per definition (each served, with its
    // discovery and OpenAPI documents rendered).
    let rss_before = server.rss_mib()?;
    let mut times = Latencies::default();
    for i in 1..=definitions {
        times.push(establish(&mut client, i).await?);
    }
    for path in [
        "/apis",
        "/openapi/v3/apis/bench.example.com/v1",
        "/openapi/v2",
    ] {
        let (status, _) = client
            .send("GET", path, "application/json", Bytes::new())
            .await?;
        if status != 200 {
            bail!("GET {path} answered {status}");
        }
    }
    let rss_after = server.rss_mib()?;
    emit(
        "crd-establish",
        [
            fields!("definitions" => definitions,
                    "rss_before_mib" => round(rss_before),
                    "rss_after_mib" => round(rss_after),
                    "kib_per_definition" => round((rss_after - rss_before) * 1024.0 / definitions as f64)),
            times.summary("established_"),
        ]
        .concat(),
    );
    Ok(())
}
