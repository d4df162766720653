//! `flowcontrol.apiserver.k8s.io/v1`: FlowSchemas and PriorityLevelConfigurations, API
//! Priority and Fairness' configuration. Every cluster has upstream's mandatory and
//! suggested objects (made at start, `bootstrap.rs`, marked `apf.kubernetes.io/autoupdate-spec`);
//! they are stored, defaulted, validated and printed as upstream's, and a FlowSchema says
//! whether its priority level exists (`Dangling`). Requests are not yet queued by them
//! (no request is throttled), and every write says so.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::{Kind, Pending, entry_default, stored_but};
use crate::state::ApiState;

pub static FLOW_SCHEMAS: ResourceType = skiff_api::resource_type!("flowcontrol.apiserver.k8s.io",
    "v1", "FlowSchema", "flowschemas", "flowschema", namespaced: false, short: [],
    categories: [], sub: [Status]);

pub static PRIORITY_LEVELS: ResourceType = skiff_api::resource_type!(
    "flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration",
    "prioritylevelconfigurations", "prioritylevelconfiguration", namespaced: false, short: [],
    categories: [], sub: [Status]);

const AUTO_UPDATE: &str = "apf.kubernetes.io/autoupdate-spec";
const NOT_ENFORCED: &str = "skiff does not queue or throttle requests by priority and fairness yet";

fn all_rules() -> Value {
    json!({
        "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                           "namespaces": ["*"], "clusterScope": true}],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    })
}

fn groups(names: &[&str]) -> Value {
    names
        .iter()
        .map(|n| json!({"kind": "Group", "group": {"name": n}}))
        .collect()
}

fn users(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({"kind": "User", "user": {"name": n}}))
        .collect()
}

fn kube_system_accounts(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({"kind": "ServiceAccount", "serviceAccount": {"name": n, "namespace": "kube-system"}}))
        .collect()
}

fn rule(
    verbs: &[&str],
    group: &str,
    resources: &[&str],
    namespaces: &[&str],
    cluster: bool,
) -> Value {
    json!({"verbs": verbs, "apiGroups": [group], "resources": resources,
           "namespaces": namespaces, "clusterScope": cluster})
}

/// A FlowSchema's status: whether its priority level exists.
fn dangling_status(level: &str, exists: bool) -> Value {
    let (status, reason, how) = if exists {
        ("False", "Found", "and it exists")
    } else {
        ("True", "NotFound", "but there is no such object")
    };
    json!({"conditions": [{"type": "Dangling", "status": status, "reason": reason,
        "lastTransitionTime": skiff_api::object::now_rfc3339(),
        "message": format!("This FlowSchema references the PriorityLevelConfiguration object named {level:?} {how}")}]})
}

/// A bootstrap FlowSchema (its level is made before it).
fn flow_schema(
    name: &str,
    level: &str,
    precedence: i64,
    distinguisher: Option<&str>,
    rules: Value,
) -> Value {
    let mut spec = json!({"priorityLevelConfiguration": {"name": level},
                          "matchingPrecedence": precedence, "rules": [rules]});
    if let Some(d) = distinguisher {
        spec["distinguisherMethod"] = json!({"type": d});
    }
    json!({"metadata": {"name": name, "annotations": {AUTO_UPDATE: "true"}}, "spec": spec,
           "status": dangling_status(level, true)})
}

fn with_subjects(subjects: Value, mut rules: Value) -> Value {
    rules["subjects"] = subjects;
    rules
}

/// Upstream's mandatory and suggested FlowSchemas (`bootstrap/default.go`).
pub fn bootstrap_flow_schemas() -> Vec<Value> {
    let everyone = groups(&["system:unauthenticated", "system:authenticated"]);
    let get_create_update = ["get", "create", "update"];
    let controllers_and_accounts = [
        users(&["system:kube-controller-manager", "system:kube-scheduler"]),
        kube_system_accounts(&["*"]),
    ]
    .concat();
    let endpoint_controllers = [
        users(&["system:kube-controller-manager"]),
        kube_system_accounts(&["endpoint-controller", "endpointslicemirroring-controller"]),
    ]
    .concat();
    vec![
        flow_schema(
            "exempt",
            "exempt",
            1,
            None,
            with_subjects(groups(&["system:masters"]), all_rules()),
        ),
        flow_schema(
            "probes",
            "exempt",
            2,
            None,
            json!({"subjects": everyone,
            "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}]}),
        ),
        flow_schema(
            "system-leader-election",
            "leader-election",
            100,
            Some("ByUser"),
            json!({
            "subjects": controllers_and_accounts,
            "resourceRules": [rule(&get_create_update, "coordination.k8s.io", &["leases"], &["*"], false)]}),
        ),
        flow_schema(
            "endpoint-controller",
            "workload-high",
            150,
            Some("ByUser"),
            json!({
            "subjects": endpoint_controllers,
            "resourceRules": [rule(&get_create_update, "", &["endpoints"], &["*"], false)]}),
        ),
        flow_schema(
            "workload-leader-election",
            "leader-election",
            200,
            Some("ByUser"),
            json!({
            "subjects": kube_system_accounts(&["*"]),
            "resourceRules": [rule(&get_create_update, "", &["endpoints", "configmaps"], &["*"], false),
                              rule(&get_create_update, "coordination.k8s.io", &["leases"], &["*"], false)]}),
        ),
        flow_schema(
            "system-node-high",
            "node-high",
            400,
            Some("ByUser"),
            json!({
            "subjects": groups(&["system:nodes"]),
            "resourceRules": [rule(&["*"], "", &["nodes", "nodes/status"], &["*"], true),
                              rule(&["*"], "coordination.k8s.io", &["leases"], &["*"], false)]}),
        ),
        flow_schema(
            "system-nodes",
            "system",
            500,
            Some("ByUser"),
            with_subjects(groups(&["system:nodes"]), all_rules()),
        ),
        flow_schema(
            "kube-controller-manager",
            "workload-high",
            800,
            Some("ByNamespace"),
            with_subjects(
                users(&["system:kube-controller-manager"]).into(),
                all_rules(),
            ),
        ),
        flow_schema(
            "kube-scheduler",
            "workload-high",
            800,
            Some("ByNamespace"),
            with_subjects(users(&["system:kube-scheduler"]).into(), all_rules()),
        ),
        flow_schema(
            "kube-system-service-accounts",
            "workload-high",
            900,
            Some("ByNamespace"),
            with_subjects(kube_system_accounts(&["*"]).into(), all_rules()),
        ),
        flow_schema(
            "service-accounts",
            "workload-low",
            9000,
            Some("ByUser"),
            with_subjects(groups(&["system:serviceaccounts"]), all_rules()),
        ),
        flow_schema(
            "global-default",
            "global-default",
            9900,
            Some("ByUser"),
            with_subjects(everyone.clone(), all_rules()),
        ),
        flow_schema(
            "catch-all",
            "catch-all",
            10000,
            Some("ByUser"),
            with_subjects(everyone, all_rules()),
        ),
    ]
}

fn limited(name: &str, shares: i64, lendable: i64, queuing: Option<(i64, i64, i64)>) -> Value {
    let response = match queuing {
        Some((queues, hand, length)) => json!({"type": "Queue",
            "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": length}}),
        None => json!({"type": "Reject"}),
    };
    json!({"metadata": {"name": name, "annotations": {AUTO_UPDATE: "true"}},
        "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": shares,
            "lendablePercent": lendable, "limitResponse": response}}})
}

/// Upstream's mandatory and suggested PriorityLevelConfigurations.
pub fn bootstrap_priority_levels() -> Vec<Value> {
    vec![
        json!({"metadata": {"name": "exempt", "annotations": {AUTO_UPDATE: "true"}},
            "spec": {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}}),
        limited("catch-all", 5, 0, None),
        limited("system", 30, 33, Some((64, 6, 50))),
        limited("node-high", 40, 25, Some((64, 6, 50))),
        limited("leader-election", 10, 0, Some((16, 4, 50))),
        limited("workload-high", 40, 50, Some((128, 6, 50))),
        limited("workload-low", 100, 90, Some((128, 6, 50))),
        limited("global-default", 20, 50, Some((128, 6, 50))),
    ]
}

pub struct FlowSchemas;

impl Kind for FlowSchemas {
    fn resource(&self) -> &ResourceType {
        &FLOW_SCHEMAS
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            entry_default(spec, "matchingPrecedence", json!(1000));
        }
    }

    /// Upstream's configuration controller says whether the named priority level exists
    /// (`Dangling`); here it is judged when the schema is written.
    fn admit<'a>(
        &'a self,
        state: &'a ApiState,
        _user: &'a crate::authn::UserInfo,
        obj: &'a mut Value,
    ) -> Pending<'a, ()> {
        Box::pin(async move {
            let level = field_str(obj, &["spec", "priorityLevelConfiguration", "name"])
                .unwrap_or_default()
                .to_string();
            let exists = state
                .caches
                .lookup(&PRIORITY_LEVELS, None, &level)
                .await
                .is_some()
                || state
                    .objects
                    .get(&PRIORITY_LEVELS, None, &level)
                    .await
                    .is_ok();
            obj["status"] = dangling_status(&level, exists);
            Ok(())
        })
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if field_str(obj, &["spec", "priorityLevelConfiguration", "name"]).is_none_or(str::is_empty)
        {
            causes.push(Cause::required("spec.priorityLevelConfiguration.name"));
        }
        if let Some(p) = field(obj, &["spec", "matchingPrecedence"]).and_then(Value::as_i64)
            && !(1..=10000).contains(&p)
        {
            causes.push(Cause::invalid(
                "spec.matchingPrecedence",
                &p.into(),
                "must be between 1 and 10000, inclusive",
            ));
        }
        if let Some(d) = field(obj, &["spec", "distinguisherMethod", "type"])
            && !matches!(d.as_str(), Some("ByUser" | "ByNamespace"))
        {
            causes.push(Cause::not_supported(
                "spec.distinguisherMethod.type",
                d,
                &["ByNamespace", "ByUser"],
            ));
        }
        let rules = field(obj, &["spec", "rules"]).and_then(Value::as_array);
        for (i, r) in rules.into_iter().flatten().enumerate() {
            if r["subjects"].as_array().is_none_or(Vec::is_empty) {
                causes.push(Cause::required(format!("spec.rules[{i}].subjects")));
            }
            let kinds = ["Group", "ServiceAccount", "User"];
            for (j, s) in r["subjects"].as_array().into_iter().flatten().enumerate() {
                if !s["kind"].as_str().is_some_and(|k| kinds.contains(&k)) {
                    causes.push(Cause::not_supported(
                        format!("spec.rules[{i}].subjects[{j}].kind"),
                        &s["kind"],
                        &kinds,
                    ));
                }
            }
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(obj, "FlowSchema", NOT_ENFORCED)
    }
}

impl Printer for FlowSchemas {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "PriorityLevel",
                "string",
                0,
                "The name of the PriorityLevelConfiguration this FlowSchema refers to.",
            ),
            Column::new(
                "MatchingPrecedence",
                "string",
                0,
                "The matching precedence of this FlowSchema.",
            ),
            Column::new(
                "DistinguisherMethod",
                "string",
                0,
                "The distinguisher method of this FlowSchema.",
            ),
            AGE,
            Column::new(
                "MissingPL",
                "string",
                0,
                "Whether the PriorityLevelConfiguration this FlowSchema refers to is missing.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let distinguisher =
            field_str(obj, &["spec", "distinguisherMethod", "type"]).unwrap_or("<none>");
        let dangling = field(obj, &["status", "conditions"])
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Dangling"))
            .and_then(|c| c["status"].as_str())
            .unwrap_or("?");
        vec![
            text(meta_str(obj, "name")),
            text(field_str(
                obj,
                &["spec", "priorityLevelConfiguration", "name"],
            )),
            field(obj, &["spec", "matchingPrecedence"])
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .into(),
            distinguisher.into(),
            age_cell(obj, now),
            dangling.into(),
        ]
    }
}

pub struct PriorityLevelConfigurations;

impl Kind for PriorityLevelConfigurations {
    fn resource(&self) -> &ResourceType {
        &PRIORITY_LEVELS
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    /// Upstream's v1 defaults: 30 shares and nothing lendable for a limited level, a
    /// queue of 64 queues dealt hands of 8 and 50 long; an exempt level shares nothing.
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(exempt) = spec.get_mut("exempt").and_then(Value::as_object_mut) {
            entry_default(exempt, "nominalConcurrencyShares", json!(0));
            entry_default(exempt, "lendablePercent", json!(0));
        }
        if let Some(limited) = spec.get_mut("limited").and_then(Value::as_object_mut) {
            entry_default(limited, "nominalConcurrencyShares", json!(30));
            entry_default(limited, "lendablePercent", json!(0));
            if let Some(response) = limited
                .get_mut("limitResponse")
                .and_then(Value::as_object_mut)
                && response.get("type").and_then(Value::as_str) == Some("Queue")
            {
                let queuing = response.entry("queuing").or_insert_with(|| json!({}));
                if let Some(q) = queuing.as_object_mut() {
                    entry_default(q, "queues", json!(64));
                    entry_default(q, "handSize", json!(8));
                    entry_default(q, "queueLengthLimit", json!(50));
                }
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let name = meta_str(obj, "name").unwrap_or_default();
        let ty = field(obj, &["spec", "type"])
            .cloned()
            .unwrap_or(Value::Null);
        match ty.as_str() {
            Some("Exempt") => {
                if field(obj, &["spec", "limited"]).is_some() {
                    causes.push(Cause::forbidden(
                        "spec.limited",
                        "must be nil if the type is not Limited",
                    ));
                }
            }
            Some("Limited") => match field(obj, &["spec", "limited"]) {
                None => causes.push(Cause::required("spec.limited")),
                Some(l) => validate_limited(l, &mut causes),
            },
            _ => causes.push(Cause::not_supported(
                "spec.type",
                &ty,
                &["Exempt", "Limited"],
            )),
        }
        if name == "exempt" && ty != "Exempt" {
            causes.push(Cause::invalid(
                "spec.type",
                &ty,
                "type must be 'Exempt' if and only if name is 'exempt'",
            ));
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(obj, "PriorityLevelConfiguration", NOT_ENFORCED)
    }
}

fn validate_limited(l: &Value, causes: &mut Vec<Cause>) {
    if let Some(p) = l["lendablePercent"].as_i64()
        && !(0..=100).contains(&p)
    {
        causes.push(Cause::invalid(
            "spec.limited.lendablePercent",
            &p.into(),
            "must be between 0 and 100, inclusive",
        ));
    }
    let response = &l["limitResponse"];
    match response["type"].as_str() {
        Some("Reject") => {}
        Some("Queue") => {
            let q = &response["queuing"];
            let (queues, hand) = (
                q["queues"].as_i64().unwrap_or(0),
                q["handSize"].as_i64().unwrap_or(0),
            );
            if queues <= 0 {
                causes.push(Cause::invalid(
                    "spec.limited.limitResponse.queuing.queues",
                    &queues.into(),
                    "must be positive",
                ));
            }
            if hand <= 0 || hand > queues {
                causes.push(Cause::invalid(
                    "spec.limited.limitResponse.queuing.handSize",
                    &hand.into(),
                    &format!("should not be greater than queues ({queues})"),
                ));
            }
        }
        _ => causes.push(Cause::not_supported(
            "spec.limited.limitResponse.type",
            &response["type"],
            &["Queue", "Reject"],
        )),
    }
}

impl Printer for PriorityLevelConfigurations {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Type",
                "string",
                0,
                "The type of the PriorityLevelConfiguration.",
            ),
            Column::new(
                "NominalConcurrencyShares",
                "string",
                0,
                "The nominal concurrency shares of the PriorityLevelConfiguration.",
            ),
            Column::new(
                "Queues",
                "string",
                0,
                "The number of queues of the PriorityLevelConfiguration.",
            ),
            Column::new(
                "HandSize",
                "string",
                0,
                "The hand size of the PriorityLevelConfiguration.",
            ),
            Column::new(
                "QueueLengthLimit",
                "string",
                0,
                "The queue length limit of the PriorityLevelConfiguration.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let none = || Value::from("<none>");
        let limited = field(obj, &["spec", "limited"]);
        let shares = limited
            .and_then(|l| l["nominalConcurrencyShares"].as_i64())
            .map_or_else(none, Value::from);
        let queuing = limited
            .map(|l| &l["limitResponse"]["queuing"])
            .filter(|q| q.is_object());
        let q = |k: &str| {
            queuing
                .and_then(|q| q[k].as_i64())
                .map_or_else(none, Value::from)
        };
        vec![
            text(meta_str(obj, "name")),
            text(field_str(obj, &["spec", "type"])),
            shares,
            q("queues"),
            q("handSize"),
            q("queueLengthLimit"),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_bootstrap_objects_are_valid_and_print_as_upstreams() {
        for mut pl in bootstrap_priority_levels() {
            PriorityLevelConfigurations.default(&mut pl);
            assert!(
                PriorityLevelConfigurations.validate(&pl, None).is_empty(),
                "{pl}"
            );
        }
        let levels = bootstrap_priority_levels();
        let cells = PriorityLevelConfigurations.cells(&levels[2], OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            cells[1..6],
            [json!("Limited"), json!(30), json!(64), json!(6), json!(50)]
        );
        let exempt = PriorityLevelConfigurations.cells(&levels[0], OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            exempt[1..6],
            [
                json!("Exempt"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        for mut fs in bootstrap_flow_schemas() {
            FlowSchemas.default(&mut fs);
            assert!(FlowSchemas.validate(&fs, None).is_empty(), "{fs}");
        }
        let schemas = bootstrap_flow_schemas();
        let names: Vec<&str> = schemas
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 13);
        let exempt = FlowSchemas.cells(&schemas[0], OffsetDateTime::UNIX_EPOCH);
        assert_eq!(exempt[1..4], [json!("exempt"), json!(1), json!("<none>")]);
    }

    #[test]
    fn bad_levels_and_schemas_are_refused() {
        let mut pl = json!({"metadata": {"name": "exempt"}, "spec": {"type": "Limited",
            "limited": {"limitResponse": {"type": "Queue", "queuing": {"queues": 4, "handSize": 9}}}}});
        PriorityLevelConfigurations.default(&mut pl);
        let fields: Vec<String> = PriorityLevelConfigurations
            .validate(&pl, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            ["spec.limited.limitResponse.queuing.handSize", "spec.type"]
        );
        let fs = json!({"metadata": {"name": "x"}, "spec": {"matchingPrecedence": 0,
            "priorityLevelConfiguration": {"name": ""}, "rules": [{"subjects": [{"kind": "Robot"}]}]}});
        let fields: Vec<String> = FlowSchemas
            .validate(&fs, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.priorityLevelConfiguration.name",
                "spec.matchingPrecedence",
                "spec.rules[0].subjects[0].kind"
            ]
        );
    }
}
