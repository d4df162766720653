//! The built-in kinds beyond the workloads' (issue 15), with real kubectl: each made from
//! kubectl's own generators and from manifests, read as a table and as YAML, patched,
//! refused with upstream's message when invalid, and deleted.

use serde_json::Value;
use skiff_e2e::{KUBECTL_MINORS, TestServer, eventually};
use std::time::Duration;

/// `kubectl api-resources` rows: (name, apiVersion, namespaced, kind).
fn api_resources(k: &skiff_e2e::Kubectl) -> Vec<(String, String, String, String)> {
    k.ok(&["api-resources", "--no-headers", "-o", "wide"])
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // NAME [SHORTNAMES] APIVERSION NAMESPACED KIND VERBS [CATEGORIES]: find the
            // apiVersion by its shape, the rest follow it.
            let at = w.iter().position(|x| *x == "true" || *x == "false")?;
            Some((
                w[0].to_string(),
                w[at - 1].to_string(),
                w[at].to_string(),
                w[at + 1].to_string(),
            ))
        })
        .collect()
}

#[test]
fn rbac_kinds_are_served_as_upstream() {
    let server = TestServer::start();
    for minor in KUBECTL_MINORS {
        let k = server.kubectl(minor);
        let listed = api_resources(&k);
        for (name, namespaced, kind) in [
            ("clusterrolebindings", "false", "ClusterRoleBinding"),
            ("clusterroles", "false", "ClusterRole"),
            ("rolebindings", "true", "RoleBinding"),
            ("roles", "true", "Role"),
        ] {
            assert!(
                listed.iter().any(|(n, v, ns, k)| n == name
                    && v == "rbac.authorization.k8s.io/v1"
                    && ns == namespaced
                    && k == kind),
                "kubectl 1.{minor}: {name} in {listed:?}"
            );
        }
    }

    let k = server.kubectl(33);
    // kubectl's generators, which check the resources they name against discovery.
    k.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
    ]);
    k.ok(&[
        "create",
        "clusterrole",
        "system:node-reader",
        "--verb=get",
        "--resource=nodes",
        "--non-resource-url=/healthz",
    ]);
    k.ok(&[
        "create",
        "rolebinding",
        "read-pods",
        "--role=pod-reader",
        "--user=jane",
        "--serviceaccount=default:robot",
    ]);
    k.ok(&[
        "create",
        "clusterrolebinding",
        "read-nodes",
        "--clusterrole=system:node-reader",
        "--group=devs",
    ]);

    let wide = k.ok(&["get", "rolebinding", "read-pods", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    );
    let row = wide.lines().nth(1).unwrap();
    assert!(
        row.contains("Role/pod-reader") && row.contains("jane") && row.contains("default/robot"),
        "{wide}"
    );
    let roles = k.ok(&["get", "roles"]);
    assert!(
        roles.starts_with("NAME") && roles.contains("CREATED AT"),
        "{roles}"
    );
    let crb = k.ok(&["get", "clusterrolebinding", "read-nodes"]);
    assert!(crb.contains("ClusterRole/system:node-reader"), "{crb}");

    // Defaults: users and groups are RBAC's, service accounts the core group's.
    let binding: Value = k.json(&["get", "rolebinding", "read-pods"]);
    let subjects = binding["subjects"].as_array().unwrap();
    let group_of = |kind: &str| {
        subjects.iter().find(|s| s["kind"] == kind).unwrap()["apiGroup"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(
        group_of("User").as_deref(),
        Some("rbac.authorization.k8s.io")
    );
    assert_eq!(
        group_of("ServiceAccount"),
        None,
        "the core group's, left out"
    );

    // Refused as upstream refuses them.
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "bad"},
            "rules": [{"apiGroups": [""], "resources": ["pods"]}]}"#,
    );
    assert!(
        err.contains(r#"The Role "bad" is invalid: rules[0].verbs: Required value: verbs must contain at least one value"#),
        "{err}"
    );
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "bad"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot"}]}"#,
    );
    assert!(
        err.contains(r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#)
            && err.contains("subjects[0].namespace: Required value"),
        "{err}"
    );
    let err = k.fails(&[
        "patch",
        "rolebinding",
        "read-pods",
        "--type=merge",
        "-p",
        r#"{"roleRef": {"name": "other"}}"#,
    ]);
    assert!(
        err.contains("roleRef: Invalid value") && err.contains("cannot change roleRef"),
        "{err}"
    );
    // What may change, does.
    k.ok(&[
        "patch",
        "role",
        "pod-reader",
        "--type=json",
        "-p",
        r#"[{"op": "add", "path": "/rules/0/verbs/-", "value": "watch"}]"#,
    ]);
    let role: Value = k.json(&["get", "role", "pod-reader"]);
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list", "watch"])
    );

    for (kind, name) in [
        ("rolebinding", "read-pods"),
        ("clusterrolebinding", "read-nodes"),
        ("role", "pod-reader"),
        ("clusterrole", "system:node-reader"),
    ] {
        k.ok(&["delete", kind, name]);
    }
    assert!(
        k.ok(&["get", "roles"]).trim().is_empty()
            || k.ok(&["get", "roles"]).contains("No resources")
    );
}

#[test]
fn jobs_and_cronjobs_are_stored_and_say_they_do_not_run_yet() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    let made = k.run(&[
        "create",
        "job",
        "pi",
        "--image=busybox:1.36",
        "--",
        "echo",
        "3.14",
    ]);
    assert!(made.status.success(), "{made:?}");
    let said = String::from_utf8_lossy(&made.stderr);
    assert!(
        said.contains(r#"Warning: Job "pi" is stored, but skiff runs no Job controller yet"#),
        "{said}"
    );
    let job: Value = k.json(&["get", "job", "pi"]);
    let uid = job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(job["spec"]["backoffLimit"], 6);
    assert_eq!(job["spec"]["completions"], 1);
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(job["metadata"]["labels"]["job-name"], "pi");
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let table = k.ok(&["get", "jobs", "-o", "wide"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "COMPLETIONS",
            "DURATION",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(
        table.lines().nth(1).unwrap().contains("Running   0/1"),
        "{table}"
    );
    // `kubectl get all` lists Jobs and CronJobs too (their category).
    k.ok(&[
        "create",
        "cronjob",
        "nightly",
        "--image=busybox:1.36",
        "--schedule=0 3 * * *",
        "--",
        "date",
    ]);
    let all = k.ok(&["get", "all"]);
    assert!(
        all.contains("job.batch/pi") && all.contains("cronjob.batch/nightly"),
        "{all}"
    );
    let cj = k.ok(&["get", "cj"]);
    let header: Vec<&str> = cj.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"
        ]
    );
    assert!(cj.contains("0 3 * * *") && cj.contains("False"), "{cj}");

    // Refused as upstream refuses them.
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "forever"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#,
    );
    assert!(
        err.contains(r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#),
        "{err}"
    );
    let err = k.fails(&[
        "create",
        "cronjob",
        "bad",
        "--image=busybox:1.36",
        "--schedule=61 * * * *",
    ]);
    assert!(
        err.contains(r#"spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61"#),
        "{err}"
    );
    let err = k.fails(&[
        "patch",
        "job",
        "pi",
        "--type=merge",
        "-p",
        r#"{"spec": {"completions": 3}}"#,
    ]);
    assert!(
        err.contains("spec.completions: Invalid value: 3: field is immutable"),
        "{err}"
    );
    k.ok(&["delete", "job", "pi"]);
    k.ok(&["delete", "cronjob", "nightly"]);
}

/// An ordinary application bundle, one kind of each, as charts ship them.
const BUNDLE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: shop, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: shop-reader, namespace: shop}
rules:
- apiGroups: [""]
  resources: [configmaps, pods]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: shop-reader, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: shop-reader}
subjects:
- {kind: ServiceAccount, name: shop, namespace: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: shop-config, namespace: shop}
data: {greeting: hello}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      serviceAccountName: shop
      containers:
      - name: web
        image: busybox:1.36
        ports: [{containerPort: 8080}]
        resources: {requests: {cpu: 100m}}
---
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: shop}
spec:
  selector: {app: shop}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: shop}
spec:
  rules:
  - host: shop.example
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: shop, port: {number: 80}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: shop}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: busybox:1.36, command: [echo, done]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: shop}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: busybox:1.36, command: [date]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: shop}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: shop, namespace: shop}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: shop}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: shop, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: shop}
  minReplicas: 2
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: shop, namespace: shop}
spec:
  podSelector: {matchLabels: {app: shop}}
  ingress:
  # The protocol stated: the rules are a list kubectl replaces whole, so a defaulted field
  # it does not send would make every apply a change (upstream's servers default it too).
  - ports: [{port: 8080, protocol: TCP}]
"#;

#[test]
fn an_application_bundle_applies_and_reapplies_unchanged() {
    let server = TestServer::start();
    for minor in [31, 33] {
        let k = server.kubectl(minor);
        let first = k.ok_stdin(&["apply", "-f", "-"], BUNDLE);
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(lines.len(), 14, "kubectl 1.{minor}: {first}");
        let version = |kind: &str| {
            k.ok(&[
                "get",
                kind,
                "shop",
                "-n",
                "shop",
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ])
        };
        let pdb_before = version("pdb");
        let again = k.ok_stdin(&["apply", "-f", "-"], BUNDLE);
        for line in again.lines() {
            // A PodDisruptionBudget's selector has the `replace` patch strategy, so kubectl
            // sends it on every apply, against upstream's servers too ("configured"); the
            // server finds nothing changed and stores nothing.
            let expected = if line.starts_with("poddisruptionbudget") {
                " configured"
            } else {
                " unchanged"
            };
            assert!(line.ends_with(expected), "kubectl 1.{minor}: {again}");
        }
        assert_eq!(again.lines().count(), 14, "{again}");
        assert_eq!(
            version("pdb"),
            pdb_before,
            "the PDB's re-apply wrote nothing"
        );
    }
    let k = server.kubectl(33);
    let listed = k.ok(&[
        "get",
        "sa,role,rolebinding,cm,deploy,svc,ing,job,cj,pvc,pdb,hpa,netpol",
        "-n",
        "shop",
        "-o",
        "name",
    ]);
    for name in [
        "serviceaccount/shop",
        "role.rbac.authorization.k8s.io/shop-reader",
        "rolebinding.rbac.authorization.k8s.io/shop-reader",
        "configmap/shop-config",
        "deployment.apps/shop",
        "service/shop",
        "ingress.networking.k8s.io/shop",
        "job.batch/migrate",
        "cronjob.batch/report",
        "persistentvolumeclaim/data",
        "poddisruptionbudget.policy/shop",
        "horizontalpodautoscaler.autoscaling/shop",
        "networkpolicy.networking.k8s.io/shop",
    ] {
        assert!(listed.lines().any(|l| l == name), "{name} in {listed}");
    }
    let hpa = k.ok(&["get", "hpa", "shop", "-n", "shop"]);
    assert!(
        hpa.contains("Deployment/shop") && hpa.contains("cpu: <unknown>/70%"),
        "{hpa}"
    );
    let pvc = k.ok(&["get", "pvc", "data", "-n", "shop"]);
    assert!(pvc.contains("Pending"), "{pvc}");
    k.ok(&["delete", "namespace", "shop", "--wait=false"]);
}

/// Upstream 1.33's default `kubectl api-resources`: name, short names, apiVersion,
/// namespaced, kind.
const UPSTREAM_RESOURCES: &str = "
bindings - v1 true Binding
componentstatuses cs v1 false ComponentStatus
configmaps cm v1 true ConfigMap
endpoints ep v1 true Endpoints
events ev v1 true Event
limitranges limits v1 true LimitRange
namespaces ns v1 false Namespace
nodes no v1 false Node
persistentvolumeclaims pvc v1 true PersistentVolumeClaim
persistentvolumes pv v1 false PersistentVolume
pods po v1 true Pod
podtemplates - v1 true PodTemplate
replicationcontrollers rc v1 true ReplicationController
resourcequotas quota v1 true ResourceQuota
secrets - v1 true Secret
serviceaccounts sa v1 true ServiceAccount
services svc v1 true Service
mutatingwebhookconfigurations - admissionregistration.k8s.io/v1 false MutatingWebhookConfiguration
validatingadmissionpolicies - admissionregistration.k8s.io/v1 false ValidatingAdmissionPolicy
validatingadmissionpolicybindings - admissionregistration.k8s.io/v1 false ValidatingAdmissionPolicyBinding
validatingwebhookconfigurations - admissionregistration.k8s.io/v1 false ValidatingWebhookConfiguration
customresourcedefinitions crd,crds apiextensions.k8s.io/v1 false CustomResourceDefinition
apiservices - apiregistration.k8s.io/v1 false APIService
controllerrevisions - apps/v1 true ControllerRevision
daemonsets ds apps/v1 true DaemonSet
deployments deploy apps/v1 true Deployment
replicasets rs apps/v1 true ReplicaSet
statefulsets sts apps/v1 true StatefulSet
selfsubjectreviews - authentication.k8s.io/v1 false SelfSubjectReview
tokenreviews - authentication.k8s.io/v1 false TokenReview
localsubjectaccessreviews - authorization.k8s.io/v1 true LocalSubjectAccessReview
selfsubjectaccessreviews - authorization.k8s.io/v1 false SelfSubjectAccessReview
selfsubjectrulesreviews - authorization.k8s.io/v1 false SelfSubjectRulesReview
subjectaccessreviews - authorization.k8s.io/v1 false SubjectAccessReview
horizontalpodautoscalers hpa autoscaling/v2 true HorizontalPodAutoscaler
cronjobs cj batch/v1 true CronJob
jobs - batch/v1 true Job
certificatesigningrequests csr certificates.k8s.io/v1 false CertificateSigningRequest
leases - coordination.k8s.io/v1 true Lease
endpointslices - discovery.k8s.io/v1 true EndpointSlice
events ev events.k8s.io/v1 true Event
flowschemas - flowcontrol.apiserver.k8s.io/v1 false FlowSchema
prioritylevelconfigurations - flowcontrol.apiserver.k8s.io/v1 false PriorityLevelConfiguration
ingressclasses - networking.k8s.io/v1 false IngressClass
ingresses ing networking.k8s.io/v1 true Ingress
ipaddresses ip networking.k8s.io/v1 false IPAddress
networkpolicies netpol networking.k8s.io/v1 true NetworkPolicy
servicecidrs - networking.k8s.io/v1 false ServiceCIDR
runtimeclasses - node.k8s.io/v1 false RuntimeClass
poddisruptionbudgets pdb policy/v1 true PodDisruptionBudget
clusterrolebindings - rbac.authorization.k8s.io/v1 false ClusterRoleBinding
clusterroles - rbac.authorization.k8s.io/v1 false ClusterRole
rolebindings - rbac.authorization.k8s.io/v1 true RoleBinding
roles - rbac.authorization.k8s.io/v1 true Role
priorityclasses pc scheduling.k8s.io/v1 false PriorityClass
csidrivers - storage.k8s.io/v1 false CSIDriver
csinodes - storage.k8s.io/v1 false CSINode
csistoragecapacities - storage.k8s.io/v1 true CSIStorageCapacity
storageclasses sc storage.k8s.io/v1 false StorageClass
volumeattachments - storage.k8s.io/v1 false VolumeAttachment
";

/// What issue 15 has yet to serve (its note says which part comes next).
const NOT_YET: &[&str] = &[];

/// Upstream 1.33's default `kubectl api-versions`.
const UPSTREAM_VERSIONS: &str = "
admissionregistration.k8s.io/v1 apiextensions.k8s.io/v1 apiregistration.k8s.io/v1 apps/v1
authentication.k8s.io/v1 authorization.k8s.io/v1 autoscaling/v1 autoscaling/v2 batch/v1
certificates.k8s.io/v1 coordination.k8s.io/v1 discovery.k8s.io/v1 events.k8s.io/v1
flowcontrol.apiserver.k8s.io/v1 networking.k8s.io/v1 node.k8s.io/v1 policy/v1
rbac.authorization.k8s.io/v1 scheduling.k8s.io/v1 storage.k8s.io/v1 v1
";

/// The group versions whose every resource is in `NOT_YET`.
const NOT_YET_VERSIONS: &[&str] = &[];

#[test]
fn autoscalers_are_served_in_v1_and_v2_alike() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    k.ok(&["create", "deployment", "web", "--image=busybox"]);
    // Written through v2 with a metric v1 cannot hold; read through v1, written back.
    k.ok_stdin(
        &["apply", "-f", "-"],
        "
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 500Mi}}
",
    );
    let v1: serde_json::Value = serde_json::from_str(&k.ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web",
    ]))
    .unwrap();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
    assert_eq!(
        v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"],
        r#"[{"resource":{"name":"memory","targetAverageValue":"500Mi"},"type":"Resource"}]"#
    );
    k.ok(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":6,"targetCPUUtilizationPercentage":70}}"#,
    ]);
    let v2 = k.json(&["get", "hpa", "web", "-o", "json"]);
    assert_eq!(v2["spec"]["maxReplicas"], 6);
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    assert_eq!(v2["spec"]["metrics"][1]["resource"]["name"], "memory");
    assert!(
        v2["metadata"]["annotations"]
            .get("autoscaling.alpha.kubernetes.io/metrics")
            .is_none()
    );
    // Created through v1 (as `kubectl autoscale` of old did): v2's CPU default.
    k.ok_stdin(
        &["create", "-f", "-"],
        "
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: old
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 3
",
    );
    let table = k.ok(&["get", "hpa", "old"]);
    assert!(table.contains("cpu: <unknown>/80%"), "{table}");
    let refused = k.fails(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "old",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":0}}"#,
    ]);
    assert!(
        refused.contains("spec.targetCPUUtilizationPercentage: Invalid value: 0: must be greater than or equal to 1"),
        "{refused}"
    );
}

#[test]
fn api_resources_match_upstream_for_every_kind_served() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    let ours: Vec<String> = k
        .ok(&["api-resources", "--no-headers"])
        .lines()
        .map(|l| {
            // NAME [SHORTNAMES] APIVERSION NAMESPACED KIND, short names written as "-" when
            // there are none, as the table above writes them.
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() == 4 {
                format!("{} - {} {} {}", w[0], w[1], w[2], w[3])
            } else {
                w.join(" ")
            }
        })
        .collect();
    let upstream: Vec<&str> = UPSTREAM_RESOURCES
        .lines()
        .filter(|l| !l.is_empty())
        .collect();
    for row in &ours {
        assert!(
            upstream.contains(&row.as_str()),
            "served as upstream does not: {row}"
        );
    }
    let missing: Vec<&str> = upstream
        .iter()
        .filter(|u| !ours.iter().any(|o| o == *u))
        .map(|u| u.split(' ').next().unwrap())
        .collect();
    assert_eq!(missing, NOT_YET, "upstream resources not served");
    let versions = k.ok(&["api-versions"]);
    let ours: Vec<&str> = versions.lines().collect();
    let expected: Vec<&str> = UPSTREAM_VERSIONS
        .split_whitespace()
        .filter(|v| !NOT_YET_VERSIONS.contains(v))
        .collect();
    assert_eq!(ours, expected, "kubectl api-versions");
    // Every group version served has its Local APIService, available.
    let apiservices = k.ok(&["get", "apiservices"]);
    for name in [
        "v1.",
        "v1.apps",
        "v1.autoscaling",
        "v2.autoscaling",
        "v1.rbac.authorization.k8s.io",
    ] {
        assert!(
            apiservices
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()[..3] == [name, "Local", "True"]),
            "{name} in {apiservices}"
        );
    }
    // Every listable kind answers a list with its table.
    for resource in k
        .ok(&["api-resources", "--verbs=list", "-o", "name"])
        .lines()
    {
        k.ok(&["get", resource, "-A"]);
    }
}

#[test]
fn priority_classes_storage_classes_and_workload_kinds() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    let classes = k.ok(&["get", "priorityclasses"]);
    assert!(
        classes.contains("system-cluster-critical   2000000000")
            && classes.contains("system-node-critical      2000001000"),
        "{classes}"
    );
    k.ok(&[
        "create",
        "priorityclass",
        "high",
        "--value=1000",
        "--description=urgent",
    ]);
    // Priority admission: a pod's class becomes its priority; no class, no default: 0.
    k.ok(&["run", "plain", "--image=busybox:1.36"]);
    let plain: Value = k.json(&["get", "pod", "plain"]);
    assert_eq!(plain["spec"]["priority"], 0);
    assert_eq!(plain["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    let pod = |name: &str, extra: &str| {
        format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
                "spec": {{{extra} "containers": [{{"name": "c", "image": "busybox:1.36"}}]}}}}"#
        )
    };
    k.ok_stdin(
        &["apply", "-f", "-"],
        &pod("urgent", r#""priorityClassName": "high","#),
    );
    assert_eq!(k.json(&["get", "pod", "urgent"])["spec"]["priority"], 1000);
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        &pod("lost", r#""priorityClassName": "missing","#),
    );
    assert!(
        err.contains(r#"pods "lost" is forbidden: no PriorityClass with name missing was found"#),
        "{err}"
    );
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        &pod("claims", r#""priorityClassName": "high", "priority": 5,"#),
    );
    assert!(
        err.contains("the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000"),
        "{err}"
    );
    k.ok(&[
        "create",
        "priorityclass",
        "normal",
        "--value=100",
        "--global-default=true",
    ]);
    k.ok(&["run", "defaulted", "--image=busybox:1.36"]);
    let defaulted: Value = k.json(&["get", "pod", "defaulted"]);
    assert_eq!(defaulted["spec"]["priorityClassName"], "normal");
    assert_eq!(defaulted["spec"]["priority"], 100);
    let err = k.fails(&["create", "priorityclass", "system-mine", "--value=5"]);
    assert!(err.contains("reserved for system use only"), "{err}");
    let err = k.fails(&[
        "patch",
        "priorityclass",
        "high",
        "--type=merge",
        "-p",
        r#"{"value": 2000}"#,
    ]);
    assert!(
        err.contains("value: Forbidden: may not be changed in an update."),
        "{err}"
    );

    k.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path"}"#,
    );
    let sc = k.ok(&["get", "sc"]);
    assert!(
        sc.contains("local (default)") && sc.contains("Delete") && sc.contains("Immediate"),
        "{sc}"
    );

    let ds = k.run_with_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "a", "image": "busybox:1.36"}]}}}}"#,
    );
    assert!(ds.status.success(), "{ds:?}");
    assert!(
        String::from_utf8_lossy(&ds.stderr).contains("no DaemonSet controller yet"),
        "{ds:?}"
    );
    let spec: Value = k.json(&["get", "ds", "agent"]);
    assert_eq!(
        spec["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
    let header = k.ok(&["get", "ds"]);
    assert!(
        header.starts_with(
            "NAME    DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR   AGE"
        ),
        "{header}"
    );
    // The legacy `bindings` resource binds a pod as `pods/binding` does. (Through --raw:
    // kubectl's client-side check of a kind without PATCH lists CRDs, not served yet.)
    const BINDINGS: &str = "/api/v1/namespaces/default/bindings";
    k.ok_stdin(
        &["create", "--raw", BINDINGS, "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "plain"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-7"}}"#,
    );
    assert_eq!(
        k.json(&["get", "pod", "plain"])["spec"]["nodeName"],
        "node-7"
    );
    let err = k.fails_stdin(
        &["create", "--raw", BINDINGS, "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "plain"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-8"}}"#,
    );
    assert!(
        err.contains(r#"already assigned to node "node-7""#),
        "{err}"
    );
    k.ok(&["create", "deployment", "web", "--image=busybox:1.36"]);
    k.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}},
                                  "spec": {"containers": [{"name": "db", "image": "busybox:1.36"}]}}}}"#,
    );
    k.ok(&["scale", "statefulset", "db", "--replicas=3"]);
    assert!(k.ok(&["get", "sts", "db"]).contains("0/3"));
}

#[test]
fn limit_ranges_and_quotas_are_enforced_on_new_objects() {
    let server = TestServer::start_api_only();
    let k = server.kubectl(33);
    k.ok(&["create", "namespace", "team"]);
    k.ok_stdin(
        &["apply", "-n", "team", "-f", "-"],
        "
apiVersion: v1
kind: LimitRange
metadata:
  name: containers
spec:
  limits:
  - type: Container
    max: {cpu: '1', memory: 512Mi}
    min: {cpu: 50m}
    defaultRequest: {cpu: 100m, memory: 64Mi}
",
    );
    // Defaulted as upstream's SetDefaults_LimitRangeItem: the default limit is the max.
    let lr = k.json(&["get", "limits", "containers", "-n", "team", "-o", "json"]);
    assert_eq!(
        lr["spec"]["limits"][0]["default"],
        serde_json::json!({"cpu": "1", "memory": "512Mi"})
    );
    let refused = k.fails_stdin(
        &["apply", "-n", "team", "-f", "-"],
        "
apiVersion: v1
kind: LimitRange
metadata:
  name: upside-down
spec:
  limits:
  - type: Container
    min: {cpu: '2'}
    max: {cpu: '1'}
",
    );
    assert!(
        refused.contains(r#"spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1"#),
        "{refused}"
    );

    // A pod without resources gets the range's defaults, and the annotation says so.
    k.ok(&["run", "plain", "-n", "team", "--image=busybox"]);
    let pod = k.json(&["get", "pod", "plain", "-n", "team", "-o", "json"]);
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(
        resources["requests"],
        serde_json::json!({"cpu": "100m", "memory": "64Mi"})
    );
    assert_eq!(
        resources["limits"],
        serde_json::json!({"cpu": "1", "memory": "512Mi"})
    );
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container plain; cpu, memory limit for container plain"
    );
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    let big = r#"{"spec":{"containers":[{"name":"big","image":"busybox","resources":{"limits":{"cpu":"2"}}}]}}"#;
    let refused = k.fails(&[
        "run",
        "big",
        "-n",
        "team",
        "--image=busybox",
        &format!("--overrides={big}"),
    ]);
    assert!(
        refused.contains(
            r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#
        ),
        "{refused}"
    );

    // A quota: its status counts what exists, and new objects past it are refused.
    k.ok(&[
        "create",
        "quota",
        "compute",
        "-n",
        "team",
        "--hard=requests.cpu=300m,pods=3,count/configmaps=2",
    ]);
    eventually(
        "the quota's status is counted",
        Duration::from_secs(5),
        || {
            let q = k.json(&["get", "quota", "compute", "-n", "team", "-o", "json"]);
            q["status"]["used"]
                == serde_json::json!({"requests.cpu": "100m", "pods": "1", "count/configmaps": "0"})
        },
    );
    k.ok(&["run", "second", "-n", "team", "--image=busybox"]);
    let used = k.json(&["get", "quota", "compute", "-n", "team", "-o", "json"]);
    assert_eq!(
        used["status"]["used"]["requests.cpu"], "200m",
        "admission charged it"
    );
    let refused = k.fails(&[
        "run",
        "third",
        "-n",
        "team",
        "--image=busybox",
        r#"--overrides={"spec":{"containers":[{"name":"third","image":"busybox","resources":{"requests":{"cpu":"200m"}}}]}}"#,
    ]);
    assert!(
        refused.contains(r#"pods "third" is forbidden: exceeded quota: compute, requested: requests.cpu=200m, used: requests.cpu=200m, limited: requests.cpu=300m"#),
        "{refused}"
    );
    k.ok(&["create", "configmap", "one", "-n", "team"]);
    k.ok(&["create", "configmap", "two", "-n", "team"]);
    let refused = k.fails(&["create", "configmap", "three", "-n", "team"]);
    assert!(
        refused.contains(r#"configmaps "three" is forbidden: exceeded quota: compute, requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2"#),
        "{refused}"
    );
    // Deleting gives the usage back.
    k.ok(&["delete", "configmap", "one", "-n", "team"]);
    eventually("the quota is recalculated", Duration::from_secs(5), || {
        let q = k.json(&["get", "quota", "compute", "-n", "team", "-o", "json"]);
        q["status"]["used"]["count/configmaps"] == "1"
    });
    k.ok(&["create", "configmap", "three", "-n", "team"]);
    let table = k.ok(&["get", "quota", "-n", "team"]);
    assert!(
        table.contains("count/configmaps: 2/2, pods: 2/3, requests.cpu: 200m/300m"),
        "{table}"
    );

    // Creates racing for the last units: exactly as many as the quota holds get through.
    k.ok(&["create", "namespace", "race"]);
    k.ok(&[
        "create",
        "quota",
        "few",
        "-n",
        "race",
        "--hard=count/secrets=3",
    ]);
    eventually("the quota is counted", Duration::from_secs(5), || {
        k.json(&["get", "quota", "few", "-n", "race", "-o", "json"])["status"]["used"]["count/secrets"]
            == "0"
    });
    let created: usize = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..8)
            .map(|i| {
                let k = &k;
                scope.spawn(move || {
                    let name = format!("s{i}");
                    k.run(&["create", "secret", "generic", &name, "-n", "race"])
                        .status
                        .success()
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap())
            .filter(|ok| *ok)
            .count()
    });
    assert_eq!(created, 3, "creates past the quota got through");
}

#[test]
fn priority_and_fairness_configuration_is_upstreams() {
    let server = TestServer::start_api_only();
    let k = server.kubectl(33);
    let schemas = k.ok(&["get", "flowschemas"]);
    let rows: Vec<Vec<&str>> = schemas
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "PRIORITYLEVEL",
            "MATCHINGPRECEDENCE",
            "DISTINGUISHERMETHOD",
            "AGE",
            "MISSINGPL"
        ]
    );
    assert_eq!(rows.len(), 14, "{schemas}");
    let exempt = rows.iter().find(|r| r[0] == "exempt").unwrap();
    assert_eq!(
        (exempt[1], exempt[2], exempt[3], exempt[5]),
        ("exempt", "1", "<none>", "False")
    );
    let levels = k.ok(&["get", "prioritylevelconfigurations"]);
    let global = levels
        .lines()
        .find(|l| l.starts_with("global-default"))
        .unwrap();
    assert_eq!(
        global.split_whitespace().collect::<Vec<_>>()[..6],
        ["global-default", "Limited", "20", "128", "6", "50"]
    );
    // A schema naming a level that does not exist is dangling; a bad level is refused.
    k.ok_stdin(
        &["apply", "-f", "-"],
        "
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata:
  name: batch-jobs
spec:
  priorityLevelConfiguration: {name: batch}
  rules:
  - subjects: [{kind: Group, group: {name: batch-runners}}]
    resourceRules: [{verbs: ['*'], apiGroups: ['*'], resources: ['*'], namespaces: ['*']}]
",
    );
    let fs = k.json(&["get", "flowschema", "batch-jobs", "-o", "json"]);
    assert_eq!(fs["spec"]["matchingPrecedence"], 1000);
    assert_eq!(fs["status"]["conditions"][0]["reason"], "NotFound");
    let refused = k.fails_stdin(
        &["apply", "-f", "-"],
        "
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata:
  name: batch
spec:
  type: Limited
  limited:
    limitResponse: {type: Queue, queuing: {queues: 4, handSize: 9}}
",
    );
    assert!(
        refused.contains("spec.limited.limitResponse.queuing.handSize: Invalid value: 9: should not be greater than queues (4)"),
        "{refused}"
    );
}

#[test]
fn component_statuses_tell_the_control_planes_health() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    // The scheduler and the controllers hold their leader leases; the datastore answers.
    eventually("both leases are held", Duration::from_secs(5), || {
        k.ok(&["get", "leases", "-n", "kube-system"])
            .contains("kube-scheduler")
    });
    let out = k.run(&["get", "componentstatuses"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: v1 ComponentStatus is deprecated in v1.19+"),
        "{stderr}"
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "STATUS", "MESSAGE", "ERROR"]);
    for name in ["scheduler", "controller-manager", "etcd-0"] {
        assert!(rows.contains(&vec![name, "Healthy", "ok"]), "{stdout}");
    }
    let etcd = k.json(&["get", "cs", "etcd-0", "-o", "json"]);
    assert_eq!(etcd["conditions"][0]["type"], "Healthy");
    // Not stored: nothing can write or watch them.
    let refused = k.fails(&["delete", "cs", "etcd-0"]);
    assert!(
        refused.contains("MethodNotAllowed") || refused.contains("not allow"),
        "{refused}"
    );
}

#[test]
fn reviews_answer_who_a_token_is_and_what_it_may_do() {
    let server = TestServer::start_api_only();
    let k = server.kubectl(33);
    let me = k.ok(&["auth", "whoami"]);
    assert!(
        me.contains("system:admin") && me.contains("[system:masters system:authenticated]"),
        "{me}"
    );
    k.ok(&["create", "serviceaccount", "robot"]);
    let token = k.ok(&["create", "token", "robot"]).trim().to_string();
    let robot = k.ok(&["--token", &token, "auth", "whoami"]);
    assert!(
        robot.contains("system:serviceaccount:default:robot"),
        "{robot}"
    );
    assert!(
        robot.contains(
            "[system:serviceaccounts system:serviceaccounts:default system:authenticated]"
        ),
        "{robot}"
    );

    let ask = |body: String| -> Value {
        let out = k.ok_stdin(&["create", "-f", "-", "-o", "json"], &body);
        serde_json::from_str::<Value>(&out).unwrap()["status"].clone()
    };
    let token_review = |token: &str, audiences: &str| {
        ask(format!(
            r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"{audiences}}}}}"#
        ))
    };
    let valid = token_review(&token, "");
    assert_eq!(valid["authenticated"], true);
    assert_eq!(
        valid["user"]["username"],
        "system:serviceaccount:default:robot"
    );
    let invalid = token_review("not-a-token", "");
    assert_eq!(
        (
            invalid["authenticated"].as_bool(),
            invalid["error"].as_str()
        ),
        (Some(false), Some("invalid bearer token"))
    );
    let elsewhere = token_review(&token, r#","audiences":["vault"]"#);
    assert_eq!(elsewhere["authenticated"], false, "{elsewhere}");

    let sar = ask(r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"system:serviceaccount:default:robot","groups":["system:serviceaccounts","system:authenticated"],"resourceAttributes":{"verb":"list","resource":"pods","namespace":"default"}}}"#.to_string());
    assert_eq!(sar["allowed"], true, "{sar}");
    let refused = k.fails_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"resourceAttributes":{"verb":"list","resource":"pods"}}}"#,
    );
    assert!(
        refused.contains("at least one of user or group must be specified"),
        "{refused}"
    );
    let refused = k.fails_stdin(
        &["create", "-n", "default", "-f", "-"],
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"LocalSubjectAccessReview","metadata":{"namespace":"default"},"spec":{"user":"jane","resourceAttributes":{"verb":"get","resource":"pods","namespace":"other"}}}"#,
    );
    assert!(refused.contains("spec.resourceAttributes.namespace: Invalid value: \"other\": must match metadata.namespace"), "{refused}");
    let rules = k.ok(&["auth", "can-i", "--list"]);
    assert!(
        rules
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["*.*", "[]", "[]", "[*]"]),
        "{rules}"
    );
}

#[test]
fn cluster_ips_are_ip_address_objects_from_the_service_cidr() {
    let server = TestServer::start_api_only();
    let k = server.kubectl(33);
    let cidrs = k.ok(&["get", "servicecidrs"]);
    let row: Vec<&str> = cidrs.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..2], ["kubernetes", "10.43.0.0/16"], "{cidrs}");
    let ips = k.ok(&["get", "ipaddresses"]);
    assert!(
        ips.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["10.43.0.1", "services/default/kubernetes"]),
        "{ips}"
    );
    // A Service's cluster IP is an IPAddress naming it, for as long as the Service lives.
    k.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let ip = k.json(&["get", "service", "web", "-o", "json"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let address = k.json(&["get", "ipaddress", &ip, "-o", "json"]);
    assert_eq!(address["spec"]["parentRef"]["name"], "web");
    assert_eq!(
        address["metadata"]["labels"]["ipaddress.kubernetes.io/managed-by"],
        "ipallocator.k8s.io"
    );
    k.ok(&["delete", "service", "web"]);
    assert!(k.fails(&["get", "ipaddress", &ip]).contains("NotFound"));
    // An address taken by hand is not handed to a Service.
    k.ok_stdin(
        &["create", "-f", "-"],
        "
apiVersion: networking.k8s.io/v1
kind: IPAddress
metadata:
  name: 10.43.0.200
spec:
  parentRef: {group: '', resource: services, namespace: default, name: elsewhere}
",
    );
    let refused = k.fails_stdin(
        &["create", "-f", "-"],
        "
apiVersion: v1
kind: Service
metadata:
  name: wants-it
spec:
  clusterIP: 10.43.0.200
  ports: [{port: 80}]
",
    );
    assert!(refused.contains("10.43.0.200"), "{refused}");
    let refused = k.fails_stdin(
        &["create", "-f", "-"],
        "
apiVersion: networking.k8s.io/v1
kind: IPAddress
metadata:
  name: 10.43.0.0200
spec:
  parentRef: {resource: services, name: x}
",
    );
    assert!(refused.contains("metadata.name"), "{refused}");
}

/// A PEM certificate request for `cn` in `org`, base64-encoded as the API carries it.
fn certificate_request(cn: &str, org: &str) -> String {
    use base64::Engine;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, org);
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    base64::engine::general_purpose::STANDARD.encode(pem)
}

#[test]
fn certificate_requests_are_approved_and_signed_by_the_cluster_ca() {
    let server = TestServer::start_api_only();
    let k = server.kubectl(33);
    let csr = |name: &str, request: &str, signer: &str, usages: &str| {
        format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {request}\n  signerName: {signer}\n  expirationSeconds: 86400\n  usages: [{usages}]\n"
        )
    };
    k.ok_stdin(
        &["create", "-f", "-"],
        &csr(
            "jane",
            &certificate_request("jane", "devs"),
            "kubernetes.io/kube-apiserver-client",
            "client auth",
        ),
    );
    let pending = k.ok(&["get", "csr", "jane"]);
    let row: Vec<&str> = pending.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[2..],
        [
            "kubernetes.io/kube-apiserver-client",
            "system:admin",
            "24h",
            "Pending"
        ],
        "{pending}"
    );
    k.ok(&["certificate", "approve", "jane"]);
    eventually("the certificate is issued", Duration::from_secs(5), || {
        k.ok(&["get", "csr", "jane"]).contains("Approved,Issued")
    });
    let issued = k.json(&["get", "csr", "jane", "-o", "json"]);
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(issued["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let pem = String::from_utf8(pem).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    // Signed by the cluster CA: the kubeconfig's CA verifies it.
    let ca = std::fs::read_to_string(server.ca_file()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, cert_path) = (dir.path().join("ca.crt"), dir.path().join("jane.crt"));
    std::fs::write(&ca_path, ca).unwrap();
    std::fs::write(&cert_path, &pem).unwrap();
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca_path)
        .arg(&cert_path)
        .output()
        .expect("openssl (scripts/install-deps.sh installs it)");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let refused = k.fails(&["certificate", "deny", "jane"]);
    assert!(refused.contains("already Approved"), "{refused}");

    // A serving certificate for a node must name the node; its signer refuses others.
    k.ok_stdin(
        &["create", "-f", "-"],
        &csr(
            "not-a-node",
            &certificate_request("web", "devs"),
            "kubernetes.io/kubelet-serving",
            "digital signature, server auth",
        ),
    );
    k.ok(&["certificate", "approve", "not-a-node"]);
    eventually("the signer refuses it", Duration::from_secs(5), || {
        k.ok(&["get", "csr", "not-a-node"])
            .contains("Approved,Failed")
    });
    // Denied requests are never signed; bad requests are refused.
    k.ok_stdin(
        &["create", "-f", "-"],
        &csr(
            "later",
            &certificate_request("later", "devs"),
            "kubernetes.io/kube-apiserver-client",
            "client auth",
        ),
    );
    k.ok(&["certificate", "deny", "later"]);
    assert!(k.ok(&["get", "csr", "later"]).contains("Denied"));
    let refused = k.fails_stdin(
        &["create", "-f", "-"],
        &csr("bad", "bm90IGEgcmVxdWVzdA==", "example", "flying"),
    );
    assert!(
        refused.contains("spec.signerName") && refused.contains("spec.usages[0]"),
        "{refused}"
    );
}

/// One manifest for every stored kind a user creates (the object is named `sample`, in
/// namespace `kinds` when namespaced). What makes each valid is upstream's minimum.
const EVERY_KIND: &[(&str, &str)] = &[
    (
        "configmaps",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sample}\ndata: {k: v}",
    ),
    (
        "secrets",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: sample}\nstringData: {k: v}",
    ),
    (
        "services",
        "apiVersion: v1\nkind: Service\nmetadata: {name: sample}\nspec: {ports: [{port: 80}]}",
    ),
    (
        "serviceaccounts",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sample}",
    ),
    (
        "endpoints",
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: sample}\nsubsets: [{addresses: [{ip: 203.0.113.9}], ports: [{port: 80}]}]",
    ),
    (
        "events",
        "apiVersion: v1\nkind: Event\nmetadata: {name: sample}\ninvolvedObject: {kind: Pod, name: p, namespace: kinds}\nreason: Tested\nmessage: hi\ntype: Normal",
    ),
    (
        "limitranges",
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: sample}\nspec: {limits: [{type: Container, max: {cpu: '2'}}]}",
    ),
    (
        "persistentvolumeclaims",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: sample}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}",
    ),
    (
        "persistentvolumes",
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: sample}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /tmp/sample}}",
    ),
    (
        "pods",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: sample}\nspec: {containers: [{name: c, image: busybox}]}",
    ),
    (
        "podtemplates",
        "apiVersion: v1\nkind: PodTemplate\nmetadata: {name: sample}\ntemplate: {spec: {containers: [{name: c, image: busybox}]}}",
    ),
    (
        "replicationcontrollers",
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: sample}\nspec: {replicas: 0, selector: {app: s}, template: {metadata: {labels: {app: s}}, spec: {containers: [{name: c, image: busybox}]}}}",
    ),
    (
        "resourcequotas",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: sample}\nspec: {hard: {pods: '100'}}",
    ),
    (
        "mutatingwebhookconfigurations",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: sample}\nwebhooks: []",
    ),
    (
        "validatingwebhookconfigurations",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: sample}\nwebhooks: []",
    ),
    (
        "validatingadmissionpolicies",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: sample}\nspec: {matchConstraints: {resourceRules: [{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}]}, validations: [{expression: 'object.spec.replicas <= 5'}]}",
    ),
    (
        "validatingadmissionpolicybindings",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: sample}\nspec: {policyName: sample, validationActions: [Deny]}",
    ),
    (
        "customresourcedefinitions",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: samples.kinds.example.com}\nspec: {group: kinds.example.com, scope: Namespaced, names: {plural: samples, kind: Sample}, versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]}",
    ),
    (
        "apiservices",
        "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {name: v1.sample.example.com}\nspec: {group: sample.example.com, version: v1, groupPriorityMinimum: 100, versionPriority: 10}",
    ),
    (
        "controllerrevisions",
        "apiVersion: apps/v1\nkind: ControllerRevision\nmetadata: {name: sample}\nrevision: 1\ndata: {}",
    ),
    (
        "daemonsets",
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: sample}\nspec: {selector: {matchLabels: {app: s}}, template: {metadata: {labels: {app: s}}, spec: {containers: [{name: c, image: busybox}]}}}",
    ),
    (
        "deployments",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: sample}\nspec: {replicas: 0, selector: {matchLabels: {app: s}}, template: {metadata: {labels: {app: s}}, spec: {containers: [{name: c, image: busybox}]}}}",
    ),
    (
        "replicasets",
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: sample}\nspec: {replicas: 0, selector: {matchLabels: {app: r}}, template: {metadata: {labels: {app: r}}, spec: {containers: [{name: c, image: busybox}]}}}",
    ),
    (
        "statefulsets",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: sample}\nspec: {serviceName: sample, selector: {matchLabels: {app: t}}, template: {metadata: {labels: {app: t}}, spec: {containers: [{name: c, image: busybox}]}}}",
    ),
    (
        "horizontalpodautoscalers",
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: sample}\nspec: {maxReplicas: 3, scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: sample}}",
    ),
    (
        "cronjobs",
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: sample}\nspec: {schedule: '*/5 * * * *', jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}}}",
    ),
    (
        "jobs",
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: sample}\nspec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}",
    ),
    (
        "leases",
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: sample}\nspec: {holderIdentity: me, leaseDurationSeconds: 10}",
    ),
    (
        "endpointslices",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: sample}\naddressType: IPv4\nendpoints: [{addresses: [203.0.113.9]}]",
    ),
    (
        "flowschemas",
        "apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata: {name: sample}\nspec: {priorityLevelConfiguration: {name: workload-low}, rules: [{subjects: [{kind: Group, group: {name: samples}}], nonResourceRules: [{verbs: ['*'], nonResourceURLs: ['*']}]}]}",
    ),
    (
        "prioritylevelconfigurations",
        "apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: PriorityLevelConfiguration\nmetadata: {name: sample}\nspec: {type: Limited, limited: {limitResponse: {type: Reject}}}",
    ),
    (
        "ingressclasses",
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: sample}\nspec: {controller: example.com/ingress}",
    ),
    (
        "ingresses",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: sample}\nspec: {defaultBackend: {service: {name: sample, port: {number: 80}}}}",
    ),
    (
        "ipaddresses",
        "apiVersion: networking.k8s.io/v1\nkind: IPAddress\nmetadata: {name: 10.43.0.250}\nspec: {parentRef: {resource: services, namespace: kinds, name: sample}}",
    ),
    (
        "networkpolicies",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: sample}\nspec: {podSelector: {}}",
    ),
    (
        "servicecidrs",
        "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: sample}\nspec: {cidrs: [10.96.0.0/24]}",
    ),
    (
        "runtimeclasses",
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: sample}\nhandler: runc",
    ),
    (
        "poddisruptionbudgets",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: sample}\nspec: {minAvailable: 1, selector: {matchLabels: {app: s}}}",
    ),
    (
        "clusterrolebindings",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: sample}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects: [{kind: User, name: jane}]",
    ),
    (
        "clusterroles",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: sample}\nrules: [{apiGroups: [''], resources: [pods], verbs: [get]}]",
    ),
    (
        "rolebindings",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: sample}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: sample}\nsubjects: [{kind: User, name: jane}]",
    ),
    (
        "roles",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: sample}\nrules: [{apiGroups: [''], resources: [pods], verbs: [get]}]",
    ),
    (
        "priorityclasses",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: sample}\nvalue: 1000",
    ),
    (
        "csidrivers",
        "apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: sample.example.com}\nspec: {}",
    ),
    (
        "csinodes",
        "apiVersion: storage.k8s.io/v1\nkind: CSINode\nmetadata: {name: sample}\nspec: {drivers: []}",
    ),
    (
        "csistoragecapacities",
        "apiVersion: storage.k8s.io/v1\nkind: CSIStorageCapacity\nmetadata: {name: sample}\nstorageClassName: sample",
    ),
    (
        "storageclasses",
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: sample}\nprovisioner: example.com/sample",
    ),
    (
        "volumeattachments",
        "apiVersion: storage.k8s.io/v1\nkind: VolumeAttachment\nmetadata: {name: sample}\nspec: {attacher: example.com/sample, nodeName: n1, source: {persistentVolumeName: sample}}",
    ),
    ("certificatesigningrequests", "CSR"),
    (
        "namespaces",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: sample}",
    ),
    (
        "nodes",
        "apiVersion: v1\nkind: Node\nmetadata: {name: sample}",
    ),
];

#[test]
fn every_kind_is_created_read_patched_and_deleted() {
    let server = TestServer::start_api_only();
    let k = server.kubectl(33);
    k.ok(&["create", "namespace", "kinds"]);
    let csr = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: sample}}\nspec: {{request: {}, signerName: example.com/sample, usages: [client auth]}}",
        certificate_request("sample", "samples")
    );
    let creatable: Vec<String> = k
        .ok(&["api-resources", "--verbs=create,delete,patch", "-o", "name"])
        .lines()
        .map(|l| l.split('.').next().unwrap().to_string())
        .collect();
    for (resource, manifest) in EVERY_KIND {
        let manifest = if *manifest == "CSR" {
            csr.as_str()
        } else {
            manifest
        };
        let name = k.ok_stdin(
            &["create", "-n", "kinds", "-f", "-", "-o", "name"],
            manifest,
        );
        let name = name.trim();
        assert!(name.contains('/'), "{resource}: created {name}");
        let table = k.ok(&["get", "-n", "kinds", name]);
        assert!(table.lines().count() == 2, "{resource}: {table}");
        let yaml = k.ok(&["get", "-n", "kinds", name, "-o", "yaml"]);
        assert!(yaml.contains("resourceVersion:"), "{resource}: {yaml}");
        k.ok(&["label", "-n", "kinds", name, "checked=yes"]);
        let labelled = k.json(&["get", "-n", "kinds", name, "-o", "json"]);
        assert_eq!(
            labelled["metadata"]["labels"]["checked"], "yes",
            "{resource}"
        );
        k.ok(&["delete", "-n", "kinds", name, "--wait=false"]);
    }
    // Every kind that can be created, patched and deleted has its line above.
    let covered: Vec<&str> = EVERY_KIND.iter().map(|(r, _)| *r).collect();
    let missing: Vec<&String> = creatable
        .iter()
        .filter(|r| !covered.contains(&r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "kinds without a manifest here: {missing:?}"
    );
}
