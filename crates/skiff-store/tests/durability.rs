//! Durability: every write the embedded store acknowledged survives `kill -9` of its process.
//!
//! The parent test runs this same test binary again as a child (the ignored test
//! `child_writer`), which writes from many tasks at once and prints one `ACK` line per
//! acknowledged write. The parent kills it with SIGKILL mid-stream, reopens the file, and
//! checks every acknowledged write is there, over several rounds on the same file.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use skiff_store::{EmbeddedStore, Store};

const CHILD_ENV: &str = "SKIFF_DURABILITY_CHILD_FILE";
const ROUND_ENV: &str = "SKIFF_DURABILITY_ROUND";

#[test]
#[ignore = "run by acknowledged_writes_survive_kill_9 as its child process"]
fn child_writer() {
    let path = std::env::var(CHILD_ENV).expect("child_writer runs only as a child");
    let round = std::env::var(ROUND_ENV).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = EmbeddedStore::open(&path).unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|task| {
                let store = store.clone();
                let round = round.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/d/{round}/{task}/{i}");
                        let value = Bytes::from(vec![b'v'; 1024]);
                        let kv = store.create(&key, value).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {key} {}", kv.mod_revision).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let mut acked_total = 0;
    for round in 0..3 {
        let acked = run_child_and_kill(&path, round);
        assert!(
            acked.len() >= 500,
            "round {round}: only {} acks",
            acked.len()
        );
        acked_total += acked.len();

        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = EmbeddedStore::open(&path).expect("reopen after kill -9");
            let mut newest = 0;
            for (key, revision) in &acked {
                let kv = store.get(key).await.unwrap().kv;
                let kv = kv.unwrap_or_else(|| panic!("acknowledged write {key} was lost"));
                assert_eq!(kv.mod_revision, *revision, "{key}");
                newest = newest.max(*revision);
            }
            assert!(store.current_revision().await.unwrap() >= newest);
        });
    }
    eprintln!("{acked_total} acknowledged writes checked over 3 kills");
}

/// Runs the child until it has acknowledged enough writes, kills it with SIGKILL, and
/// returns every write it acknowledged (key → revision).
fn run_child_and_kill(path: &std::path::Path, round: usize) -> HashMap<String, u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--ignored", "--nocapture"])
        .env(CHILD_ENV, path)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let target = 2000 + round * 500;
    let mut lines = stdout.lines();
    while acked.len() < target && Instant::now() < deadline {
        let Some(line) = lines.next() else { break };
        record_ack(&line.unwrap(), &mut acked);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines the child printed before it died were acknowledged too.
    for line in lines {
        record_ack(&line.unwrap(), &mut acked);
    }
    acked
}

fn record_ack(line: &str, acked: &mut HashMap<String, u64>) {
    if let Some(rest) = line.strip_prefix("ACK ") {
        let (key, revision) = rest.split_once(' ').unwrap();
        acked.insert(key.to_owned(), revision.parse().unwrap());
    }
}
