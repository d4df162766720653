//! `skiff-bench check`: the short version of every scenario, then one table that puts each
//! figure beside the baseline measured in the same run, their ratio, the ratio recorded in
//! `docs/benchmarks.md`, and the target. Machines here are noisy, so regressions are read
//! from ratios (ours against a baseline that met the same noise), not absolute times.
//!
//! The table it prints is the format of the "Check" table in `docs/benchmarks.md`: paste
//! it there (with the commit and date) when the figures are new.

use anyhow::Result;
use serde_json::{Map, Value};

use crate::stats::{quiet_json_lines, results};
use crate::store::Backend;
use crate::{api, cluster, crd, node, registry, store};

/// Where the recorded figures live, read at run time from this checkout.
const RECORDED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/benchmarks.md");

/// Whether a larger ratio is better (throughput) or worse (latency, memory).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// One figure: a field of one scenario's result, against a field of another's.
struct Figure {
    name: &'static str,
    value: (&'static str, &'static str),
    baseline: (&'static str, &'static str),
    better: Better,
    target: &'static str,
}

/// Which result a figure reads: the scenario name, and for the store's scenarios the value
/// size (the API's baseline runs with pod-sized values, the store suite with 1 KiB).
fn pick<'a>(all: &'a [Map<String, Value>], scenario: &str) -> Option<&'a Map<String, Value>> {
    let (name, value_bytes) = match scenario.split_once('@') {
        Some((name, bytes)) => (name, bytes.parse::<u64>().ok()),
        None => (scenario, None),
    };
    let (name, backend) = match name.split_once(':') {
        Some((name, backend)) => (name, Some(backend)),
        None => (name, None),
    };
    all.iter().rev().find(|r| {
        r.get("scenario").and_then(Value::as_str) == Some(name)
            && backend.is_none_or(|b| r.get("backend").and_then(Value::as_str) == Some(b))
            && value_bytes.is_none_or(|v| r.get("value_bytes").and_then(Value::as_u64) == Some(v))
    })
}

const FIGURES: &[Figure] = &[
    Figure {
        name: "store writes/s, embedded vs etcd (c=64)",
        value: ("store-write:embedded@1024", "writes_per_sec"),
        baseline: ("store-write:etcd@1024", "writes_per_sec"),
        better: Better::Higher,
        target: "≥ 1× etcd",
    },
    Figure {
        name: "API pod creates/s vs the store's writes/s",
        value: ("api_create_pods", "creates_per_s"),
        baseline: ("store-write:embedded@700", "writes_per_sec"),
        better: Better::Higher,
        target: "≥ 5,000/s at 10,000 pods",
    },
    Figure {
        name: "API create p99 vs the store's write p99 (ms)",
        value: ("api_create_pods", "p99_ms"),
        baseline: ("store-write:embedded@700", "p99_ms"),
        better: Better::Lower,
        target: "≤ 20 ms",
    },
    Figure {
        name: "API list JSON p99 vs the store's range p99 (ms)",
        value: ("api_list_pods_json", "p99_ms"),
        baseline: ("store-range:embedded@700", "whole_p99_ms"),
        better: Better::Lower,
        target: "≤ 100 ms at 10,000 pods",
    },
    Figure {
        name: "API watch p99 vs the store's watch p99 (ms)",
        value: ("api_watch_delivery", "p99_ms"),
        baseline: ("store-watch:embedded", "from_write_p99_ms"),
        better: Better::Lower,
        target: "≤ 50 ms",
    },
    Figure {
        name: "API server RSS holding the pods vs empty (MiB)",
        value: ("api_server_rss", "rss_mib"),
        baseline: ("api_server_rss", "rss_empty_mib"),
        better: Better::Lower,
        target: "≤ 150 MB at 10,000 pods",
    },
    Figure {
        name: "whole server creates/s vs the API alone",
        value: ("api_whole_server", "creates_per_s"),
        baseline: ("api_create_pods", "creates_per_s"),
        better: Better::Higher,
        target: "—",
    },
    Figure {
        name: "scheduler binds/s vs direct bindings",
        value: ("scheduler_backlog", "pods_bound_per_s"),
        baseline: ("baseline_direct_bindings", "pods_bound_per_s"),
        better: Better::Higher,
        target: "≥ 2,000/s at 1,000 nodes",
    },
    Figure {
        name: "registry push MB/s vs a file copy",
        value: ("registry_blob", "push_monolithic_mb_s"),
        baseline: ("registry_blob", "file_copy_mb_s"),
        better: Better::Higher,
        target: "—",
    },
    Figure {
        name: "registry pull MB/s vs a file copy",
        value: ("registry_blob", "pull_mb_s"),
        baseline: ("registry_blob", "file_copy_mb_s"),
        better: Better::Higher,
        target: "—",
    },
    Figure {
        name: "custom object creates/s vs ConfigMaps of its size",
        value: ("crd-creates", "custom_creates_per_s"),
        baseline: ("crd-creates", "configmap_creates_per_s"),
        better: Better::Higher,
        target: "≥ 0.8×",
    },
    Figure {
        name: "pod startup p99 vs runc run p99 (ms)",
        value: ("node_pod_startup", "create_to_ready_p99_ms"),
        baseline: ("node_runc_floor", "runc_run_p99_ms"),
        better: Better::Lower,
        target: "≤ 500 ms and ≤ 10× runc",
    },
];

/// The ratios recorded in the "Check" table of `docs/benchmarks.md`, by figure name.
fn recorded(markdown: &str) -> std::collections::HashMap<String, f64> {
    markdown
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let figure = FIGURES.iter().find(|f| cells.first() == Some(&f.name))?;
            let ratio = cells.get(3)?.trim_end_matches('×').parse().ok()?;
            Some((figure.name.to_string(), ratio))
        })
        .collect()
}

fn number(result: Option<&Map<String, Value>>, field: &str) -> Option<f64> {
    result?.get(field)?.as_f64()
}

/// Runs the short scenarios (the node one only as root) and prints the table.
pub async fn run(with_node: bool) -> Result<()> {
    quiet_json_lines();
    eprintln!("store (5,000 writes on each backend)");
    store::fsync_floor(500)?;
    for backend in [Backend::Embedded, Backend::Etcd] {
        store::write(backend, 5_000, 64, 1024).await?;
    }
    eprintln!("api (2,000 pods; the store under the same load)");
    api::run_with_baseline(2_000, 64, 5, 100, 50).await?;
    eprintln!("cluster (100 nodes, 1,000 pods)");
    cluster::run(cluster::Sizes {
        nodes: 100,
        pods: 1_000,
        replicas: 100,
        concurrency: 64,
    })
    .await?;
    eprintln!("custom resources (2,000 objects, 20 definitions)");
    crd::run(2_000, 64, 20).await?;
    eprintln!("registry (20 MiB)");
    registry::run(20).await?;
    if with_node {
        eprintln!("node (20 pods)");
        node::run(20, 5).await?;
    }
    print_table(
        &results(),
        &std::fs::read_to_string(RECORDED).unwrap_or_default(),
    );
    Ok(())
}

fn print_table(all: &[Map<String, Value>], recorded_md: &str) {
    let recorded = recorded(recorded_md);
    println!("| figure | value | baseline | ratio | recorded ratio | change | target |");
    println!("|---|---|---|---|---|---|---|");
    for f in FIGURES {
        let value = number(pick(all, f.value.0), f.value.1);
        let baseline = number(pick(all, f.baseline.0), f.baseline.1);
        let (Some(value), Some(baseline)) = (value, baseline) else {
            println!("| {} | not run | | | | | {} |", f.name, f.target);
            continue;
        };
        let ratio = if baseline == 0.0 {
            f64::NAN
        } else {
            value / baseline
        };
        let change = match recorded.get(f.name) {
            Some(was) if *was > 0.0 => {
                let better = match f.better {
                    Better::Higher => ratio / was,
                    Better::Lower => was / ratio,
                };
                let word = if better < 0.8 {
                    " worse"
                } else if better > 1.25 {
                    " better"
                } else {
                    ""
                };
                format!("{better:.2}×{word}")
            }
            _ => "new".to_string(),
        };
        let was = recorded
            .get(f.name)
            .map(|r| format!("{r:.3}×"))
            .unwrap_or_default();
        println!(
            "| {} | {} | {} | {:.3}× | {was} | {change} | {} |",
            f.name,
            fmt(value),
            fmt(baseline),
            ratio,
            f.target
        );
    }
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn figures_pick_their_results_and_recorded_ratios_parse() {
        let all = vec![
            result(
                json!({"scenario": "store-write", "backend": "embedded", "value_bytes": 1024, "writes_per_sec": 100.0}),
            ),
            result(
                json!({"scenario": "store-write", "backend": "embedded", "value_bytes": 700, "writes_per_sec": 50.0}),
            ),
            result(
                json!({"scenario": "store-write", "backend": "etcd", "value_bytes": 1024, "writes_per_sec": 25.0}),
            ),
        ];
        assert_eq!(
            number(pick(&all, "store-write:embedded@700"), "writes_per_sec"),
            Some(50.0)
        );
        assert_eq!(
            number(pick(&all, "store-write:etcd@1024"), "writes_per_sec"),
            Some(25.0)
        );
        assert_eq!(pick(&all, "api_create_pods"), None);
        let md = "| store writes/s, embedded vs etcd (c=64) | 40000 | 10000 | 4.000× | abc | 2026-12-07 |\n| other | 1 |";
        assert_eq!(recorded(md).get(FIGURES[0].name), Some(&4.0));
    }
}
