//! The official Python client (`kubernetes` 33.1.0, installed by
//! `scripts/install-test-clients.sh`) drives the server: `python/api_kinds.py` creates and
//! lists the kinds issue 15 added through their typed APIs, whose models refuse objects
//! missing what upstream's always carry; `python/custom_objects.py` defines a custom
//! resource and works its objects through CustomObjectsApi.

use std::process::Command;

use skiff_e2e::TestServer;

#[test]
fn the_python_client_reads_and_writes_the_api_kinds() {
    let server = TestServer::start();
    run_script(&server, "api_kinds.py");
}

#[test]
fn the_python_clients_custom_objects_api_works_with_custom_resources() {
    let server = TestServer::start_api_only();
    run_script(&server, "custom_objects.py");
}

/// Runs `tests/python/<name>` against the server; it prints `ok` when all held.
fn run_script(server: &TestServer, name: &str) {
    let python = skiff_e2e::test_client("python/bin/python");
    let script = format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(script)
        .arg(server.kubeconfig())
        .output()
        .expect("run the Python client");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
