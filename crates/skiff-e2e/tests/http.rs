//! The API's HTTP contract, driven with curl: Status errors with upstream's codes and
//! reasons, consistent pagination, watches that resume from a resourceVersion, discovery's
//! exact content types.

use serde_json::{Value, json};
use skiff_e2e::TestServer;

const CM: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

/// The events of a JSON watch response.
fn watch_events(reply: &skiff_e2e::Reply) -> Vec<Value> {
    reply
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Each event's type and object name.
fn types_and_names(events: &[Value]) -> Vec<(&str, &str)> {
    events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["object"]["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect()
}

fn assert_status(reply: &skiff_e2e::Reply, code: u16, reason: &str) -> Value {
    let body = reply.json();
    assert_eq!(reply.code, code, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    body
}

#[test]
fn bad_requests_get_status_objects_with_the_right_codes() {
    let s = TestServer::start();
    let unauth = s.http("GET", CM).without_token().send();
    assert_status(&unauth, 401, "Unauthorized");
    assert_eq!(s.http("GET", "/version").without_token().send().code, 200);
    assert_eq!(s.http("GET", "/readyz").without_token().send().body, "ok");

    let malformed = s
        .http("POST", CM)
        .header("Content-Type: application/json")
        .body(b"{nope".to_vec())
        .send();
    assert_status(&malformed, 400, "BadRequest");
    let yaml = s
        .http("POST", CM)
        .header("Content-Type: application/yaml")
        .body(b"a: [unclosed".to_vec())
        .send();
    assert_status(&yaml, 400, "BadRequest");
    let wrong_type = s
        .http("POST", CM)
        .header("Content-Type: text/plain")
        .body(b"{}".to_vec())
        .send();
    assert_status(&wrong_type, 415, "UnsupportedMediaType");
    let huge = s
        .http("POST", CM)
        .header("Content-Type: application/json")
        .body(vec![b' '; 4 * 1024 * 1024])
        .send();
    assert_status(&huge, 413, "RequestEntityTooLarge");
    assert_status(&s.http("GET", "/api/v1/widgets").send(), 404, "NotFound");
    assert_status(
        &s.http("GET", "/apis/apps/v2/deployments").send(),
        404,
        "NotFound",
    );
    assert_status(
        &s.http("PUT", CM).json(&configmap("x")).send(),
        405,
        "MethodNotAllowed",
    );
    let bad_selector = s
        .http("GET", &format!("{CM}?labelSelector=a%20in%20b"))
        .send();
    assert_status(&bad_selector, 400, "BadRequest");
    let bad_field = s
        .http("GET", &format!("{CM}?fieldSelector=data.k%3Dv"))
        .send();
    let body = assert_status(&bad_field, 400, "BadRequest");
    assert_eq!(body["message"], "field label not supported: data.k");

    assert_eq!(s.http("POST", CM).json(&configmap("once")).send().code, 201);
    let again = assert_status(
        &s.http("POST", CM).json(&configmap("once")).send(),
        409,
        "AlreadyExists",
    );
    assert_eq!(again["message"], r#"configmaps "once" already exists"#);
    assert_eq!(again["details"]["name"], "once");

    let missing_ns = s
        .http("POST", "/api/v1/namespaces/nowhere/configmaps")
        .json(&configmap("x"))
        .send();
    let body = assert_status(&missing_ns, 404, "NotFound");
    assert_eq!(body["message"], r#"namespaces "nowhere" not found"#);

    let invalid = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "Bad_Name"},
        "spec": {"replicas": -1, "template": {"spec": {"containers": [{"name": "c"}]}}}});
    let reply = s
        .http("POST", "/apis/apps/v1/namespaces/default/deployments")
        .json(&invalid)
        .send();
    let body = assert_status(&reply, 422, "Invalid");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    for f in [
        "metadata.name",
        "spec.replicas",
        "spec.selector",
        "spec.template.spec.containers[0].image",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with(r#"Deployment.apps "Bad_Name" is invalid: ["#)
    );

    let kind_mismatch = s
        .http("POST", CM)
        .json(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}))
        .send();
    assert_status(&kind_mismatch, 400, "BadRequest");
}

#[test]
fn updates_are_guarded_by_resource_version() {
    let s = TestServer::start();
    let created = s.http("POST", CM).json(&configmap("guarded")).send().json();
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut next = created.clone();
    next["data"]["k"] = "v2".into();
    let ok = s.http("PUT", &format!("{CM}/guarded")).json(&next).send();
    assert_eq!(ok.code, 200, "{}", ok.body);
    let updated = ok.json();
    assert_ne!(updated["metadata"]["resourceVersion"].as_str().unwrap(), rv);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    // The same stale version again: someone else's write got in between.
    let stale = s.http("PUT", &format!("{CM}/guarded")).json(&next).send();
    let body = assert_status(&stale, 409, "Conflict");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified"),
        "{body}"
    );
    // A merge patch naming an old resourceVersion is a precondition too.
    let patch = json!({"metadata": {"resourceVersion": rv}, "data": {"k": "v3"}});
    let reply = s
        .http("PATCH", &format!("{CM}/guarded"))
        .header("Content-Type: application/merge-patch+json")
        .body(patch.to_string().into_bytes())
        .send();
    assert_status(&reply, 409, "Conflict");
    let reply = s
        .http("PATCH", &format!("{CM}/guarded"))
        .header("Content-Type: application/json-patch+json")
        .body(br#"[{"op":"test","path":"/data/k","value":"nope"}]"#.to_vec())
        .send();
    assert_status(&reply, 422, "Invalid");
    let reply = s
        .http("PATCH", &format!("{CM}/guarded"))
        .header("Content-Type: application/json")
        .body(b"{}".to_vec())
        .send();
    assert_status(&reply, 415, "UnsupportedMediaType");

    let deleted = s
        .http("DELETE", &format!("{CM}/guarded"))
        .json(&json!({"preconditions": {"uid": "not-the-uid"}}))
        .send();
    assert_status(&deleted, 409, "Conflict");
    let deleted = s
        .http("DELETE", &format!("{CM}/guarded"))
        .json(&json!({"propagationPolicy": "Background"}))
        .send();
    assert_eq!(deleted.code, 200);
    assert_eq!(deleted.json()["metadata"]["name"], "guarded");
    assert_status(
        &s.http("GET", &format!("{CM}/guarded")).send(),
        404,
        "NotFound",
    );
}

#[test]
fn lists_paginate_over_one_snapshot() {
    let s = TestServer::start_api_only();
    for i in 0..5 {
        assert_eq!(
            s.http("POST", CM)
                .json(&configmap(&format!("page-{i}")))
                .send()
                .code,
            201
        );
    }
    let first = s.http("GET", &format!("{CM}?limit=2")).send().json();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let rv = first["metadata"]["resourceVersion"].clone();
    let mut token = first["metadata"]["continue"].as_str().unwrap().to_string();
    // Writes after the first page do not show up in later pages.
    s.http("POST", CM).json(&configmap("page-9")).send();
    s.http("DELETE", &format!("{CM}/page-4")).send();
    let mut names: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    loop {
        let page = s
            .http("GET", &format!("{CM}?limit=2&continue={token}"))
            .send()
            .json();
        assert_eq!(page["metadata"]["resourceVersion"], rv);
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["page-0", "page-1", "page-2", "page-3", "page-4"]);
    let garbage = s
        .http("GET", &format!("{CM}?limit=2&continue=garbage"))
        .send();
    assert_status(&garbage, 400, "BadRequest");

    // Once the snapshot is compacted away the token is too old: 410.
    let now = s.block_on(s.store.current_revision()).unwrap();
    s.block_on(s.store.compact(now)).unwrap();
    let expired = s
        .http("GET", &format!("{CM}?limit=2&continue={token}"))
        .send();
    assert_status(&expired, 410, "Expired");
}

#[test]
fn watches_resume_from_a_resource_version_and_expire_when_compacted() {
    // As upstream's, the watch cache (started with the server) serves watches from any
    // revision since it started, whatever the datastore compacted; older ones are the
    // datastore's to answer, and those are what compaction expires.
    let s = TestServer::start_api_only();
    let a = s.http("POST", CM).json(&configmap("w-a")).send().json();
    let rv_a = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    s.http("POST", CM).json(&configmap("w-b")).send();
    s.http("DELETE", &format!("{CM}/w-a")).send();

    // From a's version: b's creation and a's deletion, in order, and then the timeout ends it.
    let reply = s
        .http(
            "GET",
            &format!("{CM}?watch=true&resourceVersion={rv_a}&timeoutSeconds=1"),
        )
        .send();
    assert_eq!(reply.code, 200);
    let events = watch_events(&reply);
    assert_eq!(
        types_and_names(&events),
        [("ADDED", "w-b"), ("DELETED", "w-a")]
    );

    // Label selectors: only matching objects, and a label change that leaves the set is a DELETED.
    let mut labelled = configmap("w-l");
    labelled["metadata"]["labels"] = json!({"app": "x"});
    let created = s.http("POST", CM).json(&labelled).send().json();
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = s
        .http("PATCH", &format!("{CM}/w-l"))
        .header("Content-Type: application/merge-patch+json")
        .body(br#"{"metadata":{"labels":{"app":"y"}}}"#.to_vec())
        .send();
    assert_eq!(reply.code, 200);
    let reply = s
        .http(
            "GET",
            &format!("{CM}?watch=true&resourceVersion=1&labelSelector=app%3Dx&timeoutSeconds=1"),
        )
        .send();
    let events = watch_events(&reply);
    let types: Vec<&str> = types_and_names(&events).iter().map(|(t, _)| *t).collect();
    assert_eq!(types, ["ADDED", "DELETED"], "{}", reply.body);
    let _ = rv;

    // No resourceVersion: the current objects first, as ADDED.
    let reply = s
        .http("GET", &format!("{CM}?watch=true&timeoutSeconds=1"))
        .send();
    let events = watch_events(&reply);
    let names: Vec<&str> = types_and_names(&events).iter().map(|(_, n)| *n).collect();
    assert_eq!(names, ["w-b", "w-l"]);

    // sendInitialEvents ends its initial events with the initial-events-end bookmark.
    let reply = s
        .http("GET", &format!("{CM}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"))
        .send();
    let last: Value = serde_json::from_str(reply.body.lines().nth(2).unwrap()).unwrap();
    assert_eq!(last["type"], "BOOKMARK");
    assert_eq!(
        last["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // History compacted away: the watch answers an ERROR event carrying 410 Expired.
    let now = s.block_on(s.store.current_revision()).unwrap();
    s.block_on(s.store.compact(now)).unwrap();
    let reply = s
        .http(
            "GET",
            &format!("{CM}?watch=true&resourceVersion=1&timeoutSeconds=5"),
        )
        .send();
    let event: Value = serde_json::from_str(reply.body.lines().next().unwrap()).unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
}

#[test]
fn discovery_answers_in_the_format_asked_for() {
    let s = TestServer::start();
    let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let reply = s
        .http("GET", "/apis")
        .header(&format!("Accept: {v2},application/json"))
        .send();
    let doc = reply.json();
    assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
    let v2beta1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";
    let doc = s
        .http("GET", "/api")
        .header(&format!("Accept: {v2beta1},application/json"))
        .send()
        .json();
    assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    assert_eq!(doc["items"][0]["versions"][0]["version"], "v1");
    let legacy = s.http("GET", "/api").send().json();
    assert_eq!(legacy["kind"], "APIVersions");
    let groups = s.http("GET", "/apis").send().json();
    assert_eq!(groups["kind"], "APIGroupList");
    let apps = s.http("GET", "/apis/apps/v1").send().json();
    assert_eq!(apps["kind"], "APIResourceList");
    let index = s.http("GET", "/openapi/v3").send().json();
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = s.http("GET", &url).send().json();
    assert_eq!(doc["openapi"], "3.0.0");
    let v2 = s
        .http("GET", "/openapi/v2")
        .header("Accept: application/json")
        .send()
        .json();
    assert_eq!(v2["swagger"], "2.0");
    assert!(
        v2["definitions"]["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"].is_array()
    );
    let proto = s
        .http("GET", "/openapi/v2")
        .header("Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
        .send();
    assert_eq!(proto.code, 200);
    assert!(
        proto.bytes.starts_with(b"\x0a\x032.0"),
        "swagger: \"2.0\" first"
    );
    assert_status(
        &s.http("GET", "/openapi/v2")
            .header("Accept: text/html")
            .send(),
        406,
        "NotAcceptable",
    );
    // Objects in protobuf for clients that prefer it (kubectl ≥ 1.32 decodes them in
    // describe and rollout; those tests exercise the bytes).
    let ns = s
        .http("GET", "/api/v1/namespaces/default")
        .header("Accept: application/vnd.kubernetes.protobuf,application/json")
        .send();
    assert_eq!(ns.code, 200);
    assert!(
        ns.body.starts_with("k8s\u{0}"),
        "{:?}",
        &ns.body[..ns.body.len().min(20)]
    );
    // Kinds outside the schema (Status, Scale lists …) fall back to JSON.
    let status = s
        .http("GET", "/api/v1/namespaces/default/configmaps/missing")
        .header("Accept: application/vnd.kubernetes.protobuf,application/json")
        .send();
    assert_status(&status, 404, "NotFound");
}

/// Whole lists are served from the watch cache; a list still sees every write acknowledged
/// before it (also when the newest writes were to other types), at a revision no older.
#[test]
fn whole_lists_read_their_writes() {
    let s = TestServer::start_api_only();
    for i in 0..30 {
        let created = s
            .http("POST", CM)
            .json(&configmap(&format!("rw-{i}")))
            .send()
            .json();
        let rv: u64 = created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let secret =
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s-{i}")}});
        let other = s
            .http("POST", "/api/v1/namespaces/default/secrets")
            .json(&secret)
            .send()
            .json();
        let other_rv: u64 = other["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();

        let list = s.http("GET", CM).send().json();
        let list_rv: u64 = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            list_rv >= other_rv && other_rv > rv,
            "list at {list_rv}, writes at {rv} and {other_rv}"
        );
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), i + 1);
        assert!(names.contains(&format!("rw-{i}").as_str()));
        assert_eq!(list["kind"], "ConfigMapList");
        assert!(list["items"][0]["metadata"]["resourceVersion"].is_string());
    }
    // Deletes, label selectors, all-namespace lists and Tables from the cache.
    s.http("DELETE", &format!("{CM}/rw-0")).send();
    let mut labelled = configmap("labelled");
    labelled["metadata"]["labels"] = json!({"tier": "db"});
    s.http("POST", CM).json(&labelled).send();
    let list = s
        .http("GET", &format!("{CM}?labelSelector=tier%3Ddb"))
        .send()
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let all = s
        .http("GET", "/api/v1/configmaps?resourceVersion=0")
        .send()
        .json();
    // Besides the test's, the server's own (kube-public/skiff-registry).
    let ours = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["metadata"]["namespace"] == "default")
        .count();
    assert_eq!(ours, 30);
    let table = s
        .http("GET", "/api/v1/configmaps")
        .header("Accept: application/json;as=Table;v=v1;g=meta.k8s.io")
        .send()
        .json();
    assert_eq!(table["kind"], "Table");
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), all["items"].as_array().unwrap().len());
    let ours = rows
        .iter()
        .filter(|r| r["object"]["metadata"]["namespace"] == "default")
        .count();
    assert_eq!(ours, 30);
    let by_name = s
        .http("GET", &format!("{CM}?fieldSelector=metadata.name%3Drw-5"))
        .send()
        .json();
    assert_eq!(by_name["items"][0]["metadata"]["name"], "rw-5");
}

/// An address in use cannot be taken twice, and a deleted service gives its addresses back.
#[test]
fn service_addresses_are_exclusive_and_released() {
    let s = TestServer::start();
    let svc = |name: &str, ip: &str, node_port: u16| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"type": "NodePort", "clusterIP": ip, "ports": [{"port": 80, "nodePort": node_port}]}})
    };
    const SVC: &str = "/api/v1/namespaces/default/services";
    assert_eq!(
        s.http("POST", SVC)
            .json(&svc("a", "10.43.7.7", 30007))
            .send()
            .code,
        201
    );
    let refused_because = |service: Value, why: &str| {
        let reply = s.http("POST", SVC).json(&service).send();
        let body = assert_status(&reply, 422, "Invalid");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{body}");
    };
    refused_because(
        svc("b", "10.43.7.7", 30008),
        "provided IP is already allocated",
    );
    refused_because(
        svc("b", "10.43.7.8", 30007),
        "provided port is already allocated",
    );
    refused_because(svc("b", "192.168.0.1", 30008), "is not in the valid range");
    refused_because(
        svc("b", "10.43.0.1", 30008),
        "provided IP is already allocated",
    );
    // A refused create holds nothing: the same addresses are free for the next one.
    assert_eq!(
        s.http("POST", SVC)
            .json(&svc("b", "10.43.7.8", 30008))
            .send()
            .code,
        201
    );
    // The cluster IP cannot change; deleting gives both addresses back.
    let mut moved = s.http("GET", &format!("{SVC}/a")).send().json();
    moved["spec"]["clusterIP"] = "10.43.9.9".into();
    moved["spec"]["clusterIPs"] = json!(["10.43.9.9"]);
    assert_status(
        &s.http("PUT", &format!("{SVC}/a")).json(&moved).send(),
        422,
        "Invalid",
    );
    assert_eq!(s.http("DELETE", &format!("{SVC}/a")).send().code, 200);
    assert_eq!(
        s.http("POST", SVC)
            .json(&svc("c", "10.43.7.7", 30007))
            .send()
            .code,
        201
    );
}

/// Watches resuming from a revision the watch cache still holds are served from it, with
/// the same events a datastore watch gives: creates, label changes leaving a selector as
/// DELETED, deletes at their own revision.
#[test]
fn watches_from_recent_revisions_come_from_the_cache() {
    // API only: the namespace's copy of the cluster CA would land in the watch.
    let s = TestServer::start_api_only();
    let mut web = configmap("cw-web");
    web["metadata"]["labels"] = json!({"app": "web"});
    s.http("POST", CM).json(&web).send();
    // A whole list primes the cache and names the revision to watch from.
    let list = s.http("GET", CM).send().json();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let mut other = configmap("cw-other");
    other["metadata"]["labels"] = json!({"app": "web"});
    s.http("POST", CM).json(&other).send();
    s.http("PATCH", &format!("{CM}/cw-web"))
        .header("Content-Type: application/merge-patch+json")
        .body(br#"{"metadata":{"labels":{"app":"db"}}}"#.to_vec())
        .send();
    let deleted = s.http("DELETE", &format!("{CM}/cw-other")).send().json();

    let reply = s
        .http(
            "GET",
            &format!(
                "{CM}?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb&timeoutSeconds=1"
            ),
        )
        .send();
    let events = watch_events(&reply);
    let seen = types_and_names(&events);
    assert_eq!(
        seen,
        [
            ("ADDED", "cw-other"),
            ("DELETED", "cw-web"),
            ("DELETED", "cw-other")
        ]
    );
    assert_eq!(
        events[2]["object"]["metadata"]["resourceVersion"], deleted["metadata"]["resourceVersion"],
        "a deleted object carries the delete's revision"
    );
    // And as a Table, for `kubectl get -w`.
    let reply = s
        .http(
            "GET",
            &format!("{CM}?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        )
        .header("Accept: application/json;as=Table;v=v1;g=meta.k8s.io")
        .send();
    let first: Value = serde_json::from_str(reply.body.lines().next().unwrap()).unwrap();
    assert_eq!(first["object"]["kind"], "Table");
    assert_eq!(first["object"]["rows"][0]["cells"][0], "cw-other");
}

/// The same API over etcd: consistent lists (read from etcd, which reports no watch
/// progress), paginated snapshots, guarded updates, watches from a revision.
#[test]
fn the_api_works_over_etcd() {
    let s = TestServer::start_with_etcd();
    for i in 0..3 {
        assert_eq!(
            s.http("POST", CM)
                .json(&configmap(&format!("e-{i}")))
                .send()
                .code,
            201
        );
        let list = s.http("GET", CM).send().json();
        assert_eq!(
            list["items"].as_array().unwrap().len(),
            i + 1,
            "a list sees the write before it"
        );
    }
    let first = s.http("GET", &format!("{CM}?limit=2")).send().json();
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    s.http("POST", CM).json(&configmap("e-late")).send();
    let rest = s
        .http("GET", &format!("{CM}?limit=2&continue={token}"))
        .send()
        .json();
    assert_eq!(
        rest["items"].as_array().unwrap().len(),
        1,
        "the later create is not in the snapshot"
    );

    let mut stale = s.http("GET", &format!("{CM}/e-0")).send().json();
    s.http("PATCH", &format!("{CM}/e-0"))
        .header("Content-Type: application/merge-patch+json")
        .body(br#"{"data":{"x":"1"}}"#.to_vec())
        .send();
    stale["data"] = json!({"y": "2"});
    assert_status(
        &s.http("PUT", &format!("{CM}/e-0")).json(&stale).send(),
        409,
        "Conflict",
    );

    let reply = s
        .http(
            "GET",
            &format!("{CM}?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
        )
        .send();
    let events = watch_events(&reply);
    let seen = types_and_names(&events);
    assert_eq!(seen, [("ADDED", "e-late"), ("MODIFIED", "e-0")]);
    // The built-in objects were bootstrapped into etcd, and the kubectl view works.
    let k = s.kubectl(33);
    assert!(k.ok(&["get", "ns"]).contains("kube-system"));
    assert!(k.ok(&["get", "cm"]).contains("e-late"));
}

/// Finalizers hold a delete: the object is marked (202, deletionTimestamp) until the last
/// finalizer is removed, which completes the delete. Propagation policies add theirs.
#[test]
fn finalizers_hold_deletes_until_removed() {
    let s = TestServer::start();
    let mut held = configmap("held");
    held["metadata"]["finalizers"] = json!(["example.com/keep"]);
    s.http("POST", CM).json(&held).send();
    let reply = s.http("DELETE", &format!("{CM}/held")).send();
    assert_eq!(reply.code, 202, "{}", reply.body);
    let marked = s.http("GET", &format!("{CM}/held")).send().json();
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 0);
    // Removing the last finalizer completes the delete.
    let reply = s
        .http("PATCH", &format!("{CM}/held"))
        .header("Content-Type: application/merge-patch+json")
        .body(br#"{"metadata":{"finalizers":null}}"#.to_vec())
        .send();
    assert_eq!(reply.code, 200, "{}", reply.body);
    assert_status(
        &s.http("GET", &format!("{CM}/held")).send(),
        404,
        "NotFound",
    );

    s.http("POST", CM).json(&configmap("fg")).send();
    let reply = s
        .http("DELETE", &format!("{CM}/fg"))
        .json(&json!({"propagationPolicy": "Foreground"}))
        .send();
    assert_eq!(reply.code, 202);
    assert_eq!(
        reply.json()["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    s.http("POST", CM).json(&configmap("orphan")).send();
    let reply = s
        .http("DELETE", &format!("{CM}/orphan?propagationPolicy=Orphan"))
        .send();
    assert_eq!(reply.json()["metadata"]["finalizers"], json!(["orphan"]));
    let bad = s
        .http("DELETE", &format!("{CM}/orphan"))
        .json(&json!({"propagationPolicy": "Sideways"}))
        .send();
    assert_status(&bad, 400, "BadRequest");
}

/// Label keys and values are checked as upstream checks them.
#[test]
fn invalid_labels_are_refused_with_their_causes() {
    let s = TestServer::start();
    let mut bad = configmap("labelled-badly");
    bad["metadata"]["labels"] = json!({"bad key": "x", "ok": "not ok!"});
    let reply = s.http("POST", CM).json(&bad).send();
    let body = assert_status(&reply, 422, "Invalid");
    let causes = body["details"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 2, "{body}");
    assert!(
        causes.iter().all(|c| c["field"] == "metadata.labels"),
        "{body}"
    );
}

/// `pods/binding`, the scheduler's write: a pod is bound once, to the named node.
#[test]
fn pods_are_bound_to_nodes_once() {
    let s = TestServer::start();
    const PODS: &str = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                     "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    assert_eq!(s.http("POST", PODS).json(&pod).send().code, 201);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let reply = s
        .http("POST", &format!("{PODS}/p/binding"))
        .json(&binding)
        .send();
    assert_eq!(reply.code, 201, "{}", reply.body);
    assert_eq!(reply.json()["status"], "Success");
    let bound = s.http("GET", &format!("{PODS}/p")).send().json();
    assert_eq!(bound["spec"]["nodeName"], "node-1");
    let scheduled = bound["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap();
    assert_eq!(scheduled["status"], "True");
    let again = s
        .http("POST", &format!("{PODS}/p/binding"))
        .json(&binding)
        .send();
    let body = assert_status(&again, 409, "Conflict");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(r#"already assigned to node "node-1""#),
        "{body}"
    );
    let no_target = s
        .http("POST", &format!("{PODS}/p/binding"))
        .json(&json!({"kind": "Binding", "target": {}}))
        .send();
    assert_status(&no_target, 422, "Invalid");
    let mut elsewhere = binding.clone();
    elsewhere["metadata"]["name"] = "missing".into();
    assert_status(
        &s.http("POST", &format!("{PODS}/missing/binding"))
            .json(&elsewhere)
            .send(),
        404,
        "NotFound",
    );
    assert_status(
        &s.http("POST", &format!("{PODS}/missing/binding"))
            .json(&binding)
            .send(),
        400,
        "BadRequest",
    );
}

/// A JSON body repeating a key: refused under Strict, warned about by default.
#[test]
fn duplicate_fields_follow_field_validation() {
    let s = TestServer::start();
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"dup"},"data":{"a":"1","a":"2"}}"#;
    let strict = s
        .http("POST", &format!("{CM}?fieldValidation=Strict"))
        .header("Content-Type: application/json")
        .body(body.to_vec())
        .send();
    let status = assert_status(&strict, 400, "BadRequest");
    assert!(
        status["message"].as_str().unwrap().ends_with(
            r#"strict decoding error: duplicate field "metadata.name", duplicate field "data.a""#
        ),
        "{status}"
    );
    let warned = s
        .http("POST", CM)
        .header("Content-Type: application/json")
        .body(body.to_vec())
        .send();
    assert_eq!(warned.code, 201, "{}", warned.body);
    assert_eq!(
        warned.json()["data"]["a"],
        "2",
        "the last one wins, as upstream"
    );
}

/// Deleting a namespace makes it Terminating (its `kubernetes` finalizer waits for the
/// namespace controller to empty it); new content is refused; finalizing removes it.
#[test]
fn namespaces_terminate_until_finalized() {
    let s = TestServer::start_api_only();
    const NS: &str = "/api/v1/namespaces";
    s.http("POST", NS)
        .json(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}))
        .send();
    let reply = s.http("DELETE", &format!("{NS}/doomed")).send();
    assert!(reply.code == 200 || reply.code == 202, "{}", reply.body);
    let ns = s.http("GET", &format!("{NS}/doomed")).send().json();
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
    let refused = s
        .http("POST", &format!("{NS}/doomed/configmaps"))
        .json(&configmap("late"))
        .send();
    let body = assert_status(&refused, 403, "Forbidden");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("because it is being terminated"),
        "{body}"
    );

    // The main resource cannot drop the finalizer; the finalize subresource can.
    let mut cleared = ns.clone();
    cleared["spec"]["finalizers"] = json!([]);
    let kept = s
        .http("PUT", &format!("{NS}/doomed"))
        .json(&cleared)
        .send()
        .json();
    assert_eq!(kept["spec"]["finalizers"], json!(["kubernetes"]));
    let mut finalized = kept.clone();
    finalized["spec"]["finalizers"] = json!([]);
    let reply = s
        .http("PUT", &format!("{NS}/doomed/finalize"))
        .json(&finalized)
        .send();
    assert_eq!(reply.code, 200, "{}", reply.body);
    assert_status(
        &s.http("GET", &format!("{NS}/doomed")).send(),
        404,
        "NotFound",
    );
}

/// A watch asked for in protobuf streams length-prefixed WatchEvent frames whose objects
/// are protobuf envelopes.
#[test]
fn protobuf_watches_frame_their_events() {
    let s = TestServer::start_api_only();
    s.http("POST", CM).json(&configmap("pw")).send();
    let reply = s
        .http("GET", &format!("{CM}?watch=true&timeoutSeconds=1"))
        .header("Accept: application/vnd.kubernetes.protobuf;stream=watch")
        .send();
    assert_eq!(reply.code, 200);
    let bytes = &reply.bytes;
    assert!(bytes.len() > 4, "{bytes:?}");
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    let event = &bytes[4..4 + len];
    // WatchEvent{1: type} first: field 1, length, "ADDED".
    assert_eq!(&event[..7], b"\x0a\x05ADDED");
    let envelope_at = event
        .windows(4)
        .position(|w| w == b"k8s\0")
        .expect("an embedded envelope");
    let object = skiff_api::protobuf::decode_object(&event[envelope_at..]).unwrap();
    assert_eq!(object["kind"], "ConfigMap");
    assert_eq!(object["metadata"]["name"], "pw");
    assert_eq!(object["data"]["k"], "v");
}

/// Events expire `--event-ttl` after they were last seen; recent ones stay.
#[test]
fn events_expire_after_their_ttl() {
    let s = TestServer::start_with_event_ttl(std::time::Duration::from_secs(6));
    const EV: &str = "/api/v1/namespaces/default/events";
    let event = |name: &str, last: &str| {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
               "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
               "reason": "Test", "message": "m", "type": "Normal", "lastTimestamp": last})
    };
    assert_eq!(
        s.http("POST", EV)
            .json(&event("old", "2020-01-01T00:00:00Z"))
            .send()
            .code,
        201
    );
    let fresh_at = time_now_rfc3339();
    assert_eq!(
        s.http("POST", EV)
            .json(&event("fresh", &fresh_at))
            .send()
            .code,
        201
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.http("GET", &format!("{EV}/old")).send().code != 404 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired event is still there"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        s.http("GET", &format!("{EV}/fresh")).send().code,
        200,
        "a recent event stays"
    );
}

/// The current time as the API writes it (whole seconds, UTC).
fn time_now_rfc3339() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An update or patch that changes nothing is not written: the answer keeps the
/// resourceVersion and no watcher hears of it (upstream's storage compares first).
#[test]
fn writes_that_change_nothing_are_not_stored() {
    let s = TestServer::start_api_only();
    let created = s.http("POST", CM).json(&configmap("same")).send().json();
    let rv = created["metadata"]["resourceVersion"].clone();
    let patched = s
        .http("PATCH", &format!("{CM}/same"))
        .header("Content-Type: application/merge-patch+json")
        .json(&json!({"data": {"k": "v"}}))
        .send()
        .json();
    assert_eq!(patched["metadata"]["resourceVersion"], rv);
    let replaced = s
        .http("PUT", &format!("{CM}/same"))
        .json(&created)
        .send()
        .json();
    assert_eq!(replaced["metadata"]["resourceVersion"], rv);
    let reply = s
        .http(
            "GET",
            &format!(
                "{CM}?watch=true&resourceVersion={}&timeoutSeconds=1",
                rv.as_str().unwrap()
            ),
        )
        .send();
    assert_eq!(watch_events(&reply).len(), 0, "{}", reply.body);
    // A real change is written.
    let changed = s
        .http("PATCH", &format!("{CM}/same"))
        .header("Content-Type: application/merge-patch+json")
        .json(&json!({"data": {"k": "w"}}))
        .send()
        .json();
    assert_ne!(changed["metadata"]["resourceVersion"], rv);
}
