//! kube-rs (the client skiff's own controllers will use) against a real server: typed create,
//! get, list with selectors, merge and strategic patches, the scale subresource, errors, and the
//! runtime's watcher (list + watch with resourceVersions and bookmarks).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;
use skiff_e2e::TestServer;

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn client(server: &TestServer) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

fn configmap(name: &str, app: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

#[test]
fn typed_crud_patches_and_errors() {
    let server = TestServer::start();
    client_runtime().block_on(async {
        let client = client(&server).await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let created = cms
            .create(&PostParams::default(), &configmap("a", "x"))
            .await
            .unwrap();
        assert!(created.metadata.uid.is_some());
        cms.create(&PostParams::default(), &configmap("b", "y"))
            .await
            .unwrap();

        let listed = cms
            .list(&ListParams::default().labels("app=x"))
            .await
            .unwrap();
        let names: Vec<_> = listed
            .items
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        assert_eq!(names, ["a"]);
        let paged = cms.list(&ListParams::default().limit(1)).await.unwrap();
        assert_eq!(paged.items.len(), 1);
        assert!(paged.metadata.continue_.is_some());

        let merge = Patch::Merge(json!({"data": {"m": "1"}}));
        cms.patch("a", &PatchParams::default(), &merge)
            .await
            .unwrap();
        let strategic = Patch::Strategic(json!({"metadata": {"labels": {"s": "1"}}}));
        cms.patch("a", &PatchParams::default(), &strategic)
            .await
            .unwrap();
        let a = cms.get("a").await.unwrap();
        assert_eq!(a.data.unwrap()["m"], "1");
        assert_eq!(a.metadata.labels.unwrap()["s"], "1");

        match cms.get("missing").await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 404);
                assert_eq!(status.reason, "NotFound");
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        match cms
            .create(&PostParams::default(), &configmap("a", "x"))
            .await
        {
            Err(kube::Error::Api(status)) => assert_eq!(
                (status.code, status.reason.as_str()),
                (409, "AlreadyExists")
            ),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }

        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}}
        }))
        .unwrap();
        deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        let scale = deployments.get_scale("web").await.unwrap();
        assert_eq!(scale.spec.unwrap().replicas, Some(1));
        deployments
            .patch_scale(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 3}})),
            )
            .await
            .unwrap();
        let web = deployments.get("web").await.unwrap();
        assert_eq!(web.spec.unwrap().replicas, Some(3));
        assert_eq!(web.metadata.generation, Some(2));

        // Controllers apply the status they observed through the status subresource.
        let status = Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                                         "status": {"replicas": 3, "observedGeneration": 2}}));
        deployments
            .patch_status(
                "web",
                &PatchParams::apply("skiff-controller").force(),
                &status,
            )
            .await
            .unwrap();
        let web = deployments.get("web").await.unwrap();
        assert_eq!(web.status.as_ref().unwrap().replicas, Some(3));
        assert_eq!(
            web.spec.as_ref().unwrap().replicas,
            Some(3),
            "the spec is untouched"
        );
        let owners: Vec<_> = web
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                (
                    e.manager.unwrap_or_default(),
                    e.subresource.unwrap_or_default(),
                )
            })
            .collect();
        assert!(
            owners.contains(&("skiff-controller".to_string(), "status".to_string())),
            "{owners:?}"
        );

        cms.delete("b", &DeleteParams::default()).await.unwrap();
        assert!(cms.get_opt("b").await.unwrap().is_none());
    });
}

/// The runtime's watcher: an initial list, then the changes, resuming across the server's
/// watch timeouts without losing events.
#[test]
fn the_runtime_watcher_sees_the_initial_state_and_every_change() {
    let server = TestServer::start();
    client_runtime().block_on(async {
        let client = client(&server).await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        cms.create(&PostParams::default(), &configmap("before", "w"))
            .await
            .unwrap();

        let config = watcher::Config::default().labels("app=w").timeout(1);
        let mut events = watcher(cms.clone(), config).boxed();
        let mut seen_init = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
                Ok(Some(Ok(watcher::Event::InitApply(cm)))) => {
                    seen_init.push(cm.metadata.name.unwrap())
                }
                Ok(Some(Ok(watcher::Event::InitDone))) => break,
                Ok(Some(Ok(_))) => {}
                other => panic!("watcher failed during its initial list: {other:?}"),
            }
        }
        assert_eq!(seen_init, ["before"]);

        // Changes after the server ended the first watch (timeout 1s) still arrive.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cms.create(&PostParams::default(), &configmap("after", "w"))
            .await
            .unwrap();
        cms.create(&PostParams::default(), &configmap("unrelated", "other"))
            .await
            .unwrap();
        cms.delete("before", &DeleteParams::default())
            .await
            .unwrap();
        let mut applied = Vec::new();
        let mut deleted = Vec::new();
        while applied.is_empty() || deleted.is_empty() {
            match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
                Ok(Some(Ok(watcher::Event::Apply(cm)))) => applied.push(cm.metadata.name.unwrap()),
                Ok(Some(Ok(watcher::Event::Delete(cm)))) => deleted.push(cm.metadata.name.unwrap()),
                Ok(Some(Ok(_))) => {}
                other => panic!("watcher failed: {other:?}"),
            }
        }
        assert_eq!(applied, ["after"]);
        assert_eq!(deleted, ["before"]);
    });
}

/// A custom resource as operators write them: `#[derive(CustomResource)]`, its definition
/// generated by kube-rs (schemars' schema) and created through the API.
#[derive(
    kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, schemars::JsonSchema,
)]
#[kube(
    group = "fleet.example.com",
    version = "v1",
    kind = "Ship",
    namespaced,
    status = "ShipStatus",
    scale = r#"{"specReplicasPath":".spec.crew", "statusReplicasPath":".status.crew"}"#,
    printcolumn = r#"{"name":"Crew", "type":"integer", "jsonPath":".spec.crew"}"#
)]
struct ShipSpec {
    crew: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<String>,
}

#[derive(serde::Deserialize, serde::Serialize, Clone, Debug, Default, schemars::JsonSchema)]
struct ShipStatus {
    crew: i32,
}

#[test]
fn derived_custom_resources_are_served() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;

    let server = TestServer::start();
    client_runtime().block_on(async {
        let client = client(&server).await;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &Ship::crd())
            .await
            .unwrap();
        let established = kube::runtime::wait::await_condition(
            crds.clone(),
            "ships.fleet.example.com",
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(2), established)
            .await
            .expect("established within 2 s")
            .unwrap();

        let ships: Api<Ship> = Api::namespaced(client.clone(), "default");
        let mut ship = Ship::new(
            "argo",
            ShipSpec {
                crew: 50,
                port: None,
            },
        );
        ship.spec.port = Some("Iolcus".into());
        let created = ships.create(&PostParams::default(), &ship).await.unwrap();
        assert_eq!(created.spec.crew, 50);
        assert_eq!(created.metadata.generation, Some(1));
        let listed = ships.list(&ListParams::default()).await.unwrap();
        assert_eq!(listed.items.len(), 1);

        let status = json!({"status": {"crew": 48}});
        let patched = ships
            .patch_status("argo", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        assert_eq!(patched.status.unwrap().crew, 48);
        let scale = ships.get_scale("argo").await.unwrap();
        assert_eq!(scale.status.unwrap().replicas, 48);
        ships
            .patch_scale(
                "argo",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"replicas": 40}})),
            )
            .await
            .unwrap();
        assert_eq!(ships.get("argo").await.unwrap().spec.crew, 40);

        // Server-side apply of the typed object, as controllers do.
        let mut applied = Ship::new(
            "argo",
            ShipSpec {
                crew: 40,
                port: Some("Colchis".into()),
            },
        );
        applied.metadata.namespace = Some("default".into());
        let ssa = PatchParams::apply("fleet-controller").force();
        let after = ships
            .patch("argo", &ssa, &Patch::Apply(&applied))
            .await
            .unwrap();
        assert_eq!(after.spec.port.as_deref(), Some("Colchis"));

        let err = ships
            .create(
                &PostParams::default(),
                &Ship::new(
                    "argo",
                    ShipSpec {
                        crew: 1,
                        port: None,
                    },
                ),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref e) if e.code == 409),
            "{err:?}"
        );
        ships
            .delete("argo", &DeleteParams::default())
            .await
            .unwrap();
        assert!(
            ships
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );
    });
}
