//! CustomResourceDefinitions end to end (issue 15) with real kubectl: a definition with a
//! structural schema, a CEL rule, printer columns and the status and scale subresources is
//! served within a second, listed and explained, its objects defaulted, pruned, validated
//! with the schema's messages, printed with its columns and scaled; a second version is
//! served beside the first; deleting the definition deletes its objects.

use std::time::{Duration, Instant};

use skiff_e2e::{KUBECTL_MINORS, Kubectl, TestServer, eventually};

const CRONTABS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the crontab runs, and how often.
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.replicas
              message: replicas must be at least minReplicas
            properties:
              cronSpec:
                type: string
                description: The schedule, in cron format.
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
              replicas:
                type: integer
                minimum: 0
                maximum: 10
                default: 1
              minReplicas:
                type: integer
                default: 0
          status:
            type: object
            properties:
              replicas:
                type: integer
              selector:
                type: string
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#;

const CRONTAB: &str = "
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: nightly
spec:
  cronSpec: '0 3 * * *'
  image: backup:1
";

/// The definition with a second version, `v2`, served beside `v1` (which stays the
/// storage version).
fn with_v2() -> String {
    let at = CRONTABS.find("  - name: v1").expect("the versions list");
    let v2 = CRONTABS[at..]
        .replace("- name: v1", "- name: v2")
        .replace("storage: true", "storage: false");
    format!("{CRONTABS}{v2}")
}

/// A raw GET's JSON answer.
fn raw(k: &Kubectl, path: &str) -> serde_json::Value {
    serde_json::from_str(&k.ok(&["get", "--raw", path])).expect("JSON")
}

fn established(k: &Kubectl, name: &str) -> bool {
    let crd = k.json(&["get", "crd", name, "-o", "json"]);
    crd["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

#[test]
fn a_custom_resource_definition_is_served_validated_scaled_and_cleaned_up() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    let started = Instant::now();
    k.ok_stdin(&["apply", "-f", "-"], CRONTABS);
    eventually(
        "the definition is established",
        Duration::from_secs(1),
        || established(&k, "crontabs.stable.example.com"),
    );
    eprintln!("CRD create → Established: {:?}", started.elapsed());
    let crd = k.json(&["get", "crd", "crontabs.stable.example.com", "-o", "json"]);
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab");
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "CronTabList");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));
    let names = crd["status"]["conditions"][0].clone();
    assert_eq!(
        (names["type"].as_str(), names["reason"].as_str()),
        (Some("NamesAccepted"), Some("NoConflicts"))
    );

    // Discovery, for every kubectl: the resource with its short name and category.
    for minor in KUBECTL_MINORS {
        let listed = server.kubectl(minor).ok(&[
            "api-resources",
            "--api-group=stable.example.com",
            "--no-headers",
        ]);
        let words: Vec<&str> = listed.split_whitespace().collect();
        assert_eq!(
            words,
            ["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"],
            "kubectl 1.{minor}"
        );
    }
    let explained = k.ok(&["explain", "crontab.spec.cronSpec"]);
    assert!(
        explained.contains("The schedule, in cron format."),
        "{explained}"
    );
    assert!(
        k.ok(&["explain", "crontabs.spec"])
            .contains("replicas\t<integer>")
    );

    // Created, defaulted and printed with the definition's columns.
    k.ok_stdin(&["apply", "-f", "-"], CRONTAB);
    let obj = k.json(&["get", "ct", "nightly", "-o", "json"]);
    assert_eq!(obj["spec"]["replicas"], 1, "defaulted: {obj}");
    assert_eq!(obj["spec"]["minReplicas"], 0);
    assert_eq!(obj["metadata"]["generation"], 1);
    let table = k.ok(&["get", "crontabs"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    assert_eq!(
        &lines[1][..7],
        ["nightly", "0", "3", "*", "*", "*", "1"],
        "{table}"
    );
    assert!(
        k.ok(&["get", "all"])
            .contains("crontab.stable.example.com/nightly")
    );
    // Applied again, unchanged.
    assert!(
        k.ok_stdin(&["apply", "-f", "-"], CRONTAB)
            .contains("unchanged")
    );

    // Unknown fields: refused under kubectl's strict validation, pruned without it.
    let with_unknown = format!("{CRONTAB}  color: blue\n");
    let refused = k.fails_stdin(&["apply", "-f", "-"], &with_unknown);
    assert!(
        refused.contains(r#"CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: unknown field "spec.color""#),
        "{refused}"
    );
    k.ok_stdin(&["apply", "--validate=false", "-f", "-"], &with_unknown);
    assert!(
        k.json(&["get", "ct", "nightly", "-o", "json"])["spec"]
            .get("color")
            .is_none()
    );

    // The schema's and the CEL rule's messages.
    let bad = "
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: broken
spec:
  cronSpec: '* * * *'
  replicas: 11
";
    let refused = k.fails_stdin(&["create", "-f", "-"], bad);
    assert!(
        refused.contains(r#"The CronTab "broken" is invalid"#),
        "{refused}"
    );
    assert!(
        refused.contains(r#"spec.cronSpec: Invalid value: "* * * *": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#),
        "{refused}"
    );
    assert!(
        refused.contains("spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"),
        "{refused}"
    );
    let refused = k.fails(&[
        "patch",
        "ct",
        "nightly",
        "--type=merge",
        "-p",
        r#"{"spec":{"minReplicas":5}}"#,
    ]);
    assert!(
        refused.contains(r#"spec: Invalid value: "object": replicas must be at least minReplicas"#),
        "{refused}"
    );
    // No strategic merge for custom resources, as upstream.
    let refused = k.fails(&["patch", "ct", "nightly", "-p", r#"{"spec":{"replicas":2}}"#]);
    assert!(
        refused.contains("application/strategic-merge-patch+json is not supported"),
        "{refused}"
    );

    // Scale and status.
    k.ok(&["scale", "crontab", "nightly", "--replicas=3"]);
    let obj = k.json(&["get", "ct", "nightly", "-o", "json"]);
    assert_eq!(obj["spec"]["replicas"], 3);
    assert_eq!(obj["metadata"]["generation"], 2);
    let status = r#"{"status":{"replicas":3,"selector":"app=nightly"},"spec":{"image":"ignored"}}"#;
    k.ok(&[
        "patch",
        "ct",
        "nightly",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    let obj = k.json(&["get", "ct", "nightly", "-o", "json"]);
    assert_eq!(
        obj["spec"]["image"], "backup:1",
        "status writes change only status"
    );
    assert_eq!(obj["metadata"]["generation"], 2, "status is not the spec");
    let scale = raw(
        &k,
        "/apis/stable.example.com/v1/namespaces/default/crontabs/nightly/scale",
    );
    assert_eq!(
        scale["status"],
        serde_json::json!({"replicas": 3, "selector": "app=nightly"})
    );
    k.ok(&[
        "patch",
        "ct",
        "nightly",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":9}}"#,
    ]);
    assert_eq!(
        k.json(&["get", "ct", "nightly", "-o", "json"])["status"]["replicas"],
        3,
        "main writes keep status"
    );

    // A second version, served beside the first and preferred; objects are one.
    k.ok_stdin(&["apply", "-f", "-"], &with_v2());
    eventually("v2 is served", Duration::from_secs(2), || {
        k.ok(&["api-versions"]).contains("stable.example.com/v2")
    });
    let v2 = k.json(&[
        "get",
        "crontabs.v2.stable.example.com",
        "nightly",
        "-o",
        "json",
    ]);
    assert_eq!(v2["apiVersion"], "stable.example.com/v2");
    assert_eq!(v2["spec"]["replicas"], 3);
    let v1 = k.json(&[
        "get",
        "crontabs.v1.stable.example.com",
        "nightly",
        "-o",
        "json",
    ]);
    assert_eq!(v1["apiVersion"], "stable.example.com/v1");
    let group = raw(&k, "/apis/stable.example.com");
    assert_eq!(group["preferredVersion"]["version"], "v2");
    assert!(
        k.ok(&["get", "apiservices"])
            .contains("v2.stable.example.com")
    );

    // Deleting the definition deletes its objects first, in every namespace.
    k.ok(&["create", "namespace", "crons"]);
    k.ok_stdin(&["apply", "-n", "crons", "-f", "-"], CRONTAB);
    k.ok(&["delete", "crd", "crontabs.stable.example.com"]);
    eventually("the definition is gone", Duration::from_secs(5), || {
        k.fails(&["get", "crd", "crontabs.stable.example.com"])
            .contains("NotFound")
    });
    assert!(!k.ok(&["api-versions"]).contains("stable.example.com"));
    assert!(!k.ok(&["get", "apiservices"]).contains("stable.example.com"));
    k.ok_stdin(&["apply", "-f", "-"], CRONTABS);
    eventually("established again", Duration::from_secs(1), || {
        established(&k, "crontabs.stable.example.com")
    });
    assert_eq!(
        k.ok(&["get", "ct", "-A", "-o", "name"]).trim(),
        "",
        "no objects survived"
    );
}

#[test]
fn contested_names_and_bad_definitions_are_refused() {
    let server = TestServer::start_api_only();
    let k = server.kubectl(33);
    k.ok_stdin(&["apply", "-f", "-"], CRONTABS);
    // Another definition of the same group claiming the short name `ct`.
    let rival = CRONTABS
        .replace(
            "crontabs.stable.example.com",
            "cronjobs2.stable.example.com",
        )
        .replace("plural: crontabs", "plural: cronjobs2")
        .replace("singular: crontab", "singular: cronjob2")
        .replace("kind: CronTab", "kind: CronJob2");
    k.ok_stdin(&["apply", "-f", "-"], &rival);
    eventually("the rival is judged", Duration::from_secs(2), || {
        let crd = k.json(&["get", "crd", "cronjobs2.stable.example.com", "-o", "json"]);
        crd["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["type"] == "NamesAccepted"
                    && c["status"] == "False"
                    && c["reason"] == "ShortNamesConflict"
                    && c["message"] == "\"ct\" is already in use"
            })
        })
    });
    assert!(
        !k.ok(&["api-resources", "--api-group=stable.example.com"])
            .contains("cronjobs2")
    );

    let refused = k.fails_stdin(
        &["apply", "-f", "-"],
        &CRONTABS.replace(
            "name: crontabs.stable.example.com",
            "name: wrong.stable.example.com",
        ),
    );
    assert!(
        refused.contains(r#"metadata.name: Invalid value: "wrong.stable.example.com": must be spec.names.plural+"."+spec.group"#),
        "{refused}"
    );
    let refused = k.fails_stdin(
        &["apply", "-f", "-"],
        &rival.replace(
            "type: integer\n                minimum: 0",
            "type: int\n                minimum: 0",
        ),
    );
    assert!(refused.contains("Unsupported value: \"int\""), "{refused}");
    let refused = k.fails_stdin(
        &["apply", "-f", "-"],
        &rival.replace("self.minReplicas <= self.replicas", "self.minReplicas <=="),
    );
    assert!(refused.contains("does not compile"), "{refused}");
}

const GATEWAYS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gateways.net.example.com
spec:
  group: net.example.com
  scope: Namespaced
  names: {plural: gateways, kind: Gateway}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              listeners:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
              hosts:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
              addresses:
                type: array
                items: {type: string}
"#;

fn gateway(listener: &str, port: u16, host: &str, address: &str) -> String {
    format!(
        "apiVersion: net.example.com/v1\nkind: Gateway\nmetadata:\n  name: edge\nspec:\n  listeners: [{{name: {listener}, port: {port}}}]\n  hosts: [{host}]\n  addresses: [{address}]\n"
    )
}

#[test]
fn server_side_apply_merges_custom_lists_by_their_schema() {
    let server = TestServer::start_api_only();
    let k = server.kubectl(33);
    k.ok_stdin(&["apply", "-f", "-"], GATEWAYS);
    eventually("established", Duration::from_secs(1), || {
        established(&k, "gateways.net.example.com")
    });
    let apply = |manager: &str, manifest: String| {
        k.run_with_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager",
                manager,
                "-f",
                "-",
            ],
            &manifest,
        )
    };
    assert!(
        apply("team-a", gateway("http", 80, "a.example.com", "10.0.0.1"))
            .status
            .success()
    );
    // Another manager's listener and host join the first's (map and set lists merge);
    // the atomic list is contested.
    let contested = apply("team-b", gateway("https", 443, "b.example.com", "10.0.0.2"));
    let stderr = String::from_utf8_lossy(&contested.stderr);
    assert!(
        stderr.contains("conflict with \"team-a\"") && stderr.contains(".spec.addresses"),
        "{stderr}"
    );
    let manifest_b = "apiVersion: net.example.com/v1\nkind: Gateway\nmetadata:\n  name: edge\nspec:\n  listeners: [{name: https, port: 443}]\n  hosts: [b.example.com]\n";
    assert!(apply("team-b", manifest_b.to_string()).status.success());
    let gw = k.json(&["get", "gateway", "edge", "-o", "json"]);
    let names: Vec<&str> = gw["spec"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["http", "https"], "{gw}");
    assert_eq!(
        gw["spec"]["hosts"],
        serde_json::json!(["a.example.com", "b.example.com"])
    );
    let owned = k.json(&[
        "get",
        "gateway",
        "edge",
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    let b = owned["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "team-b")
        .unwrap()
        .clone();
    assert!(
        b["fieldsV1"]["f:spec"]["f:listeners"]["k:{\"name\":\"https\"}"].is_object(),
        "{b}"
    );
    // A manager that stops applying its listener removes it, and only it.
    let manifest_a = "apiVersion: net.example.com/v1\nkind: Gateway\nmetadata:\n  name: edge\nspec:\n  hosts: [a.example.com]\n  addresses: [10.0.0.1]\n";
    assert!(apply("team-a", manifest_a.to_string()).status.success());
    let gw = k.json(&["get", "gateway", "edge", "-o", "json"]);
    assert_eq!(
        gw["spec"]["listeners"],
        serde_json::json!([{"name": "https", "port": 443}])
    );
}
