"""The official Python client (kubernetes 33.1.0) and CustomResourceDefinitions: a
definition made through ApiextensionsV1Api (whose models refuse a status missing what
upstream's carries), then its objects through CustomObjectsApi — create, get, list, patch,
the status and scale subresources, a refused invalid object, delete. Run by
python_client.rs with the kubeconfig."""

import sys
import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_kube_config(sys.argv[1])
ext = client.ApiextensionsV1Api()
objects = client.CustomObjectsApi()

GROUP, VERSION, PLURAL, NS = "ships.example.com", "v1", "boats", "default"
schema = client.V1JSONSchemaProps(
    type="object",
    properties={
        "spec": client.V1JSONSchemaProps(
            type="object",
            required=["length"],
            properties={
                "length": client.V1JSONSchemaProps(type="integer", minimum=1),
                "crew": client.V1JSONSchemaProps(type="integer", default=2),
            },
        ),
        "status": client.V1JSONSchemaProps(
            type="object",
            properties={"crew": client.V1JSONSchemaProps(type="integer")},
        ),
    },
)
ext.create_custom_resource_definition(client.V1CustomResourceDefinition(
    metadata=client.V1ObjectMeta(name=f"{PLURAL}.{GROUP}"),
    spec=client.V1CustomResourceDefinitionSpec(
        group=GROUP,
        scope="Namespaced",
        names=client.V1CustomResourceDefinitionNames(plural=PLURAL, kind="Boat"),
        versions=[client.V1CustomResourceDefinitionVersion(
            name=VERSION, served=True, storage=True,
            schema=client.V1CustomResourceValidation(open_apiv3_schema=schema),
            subresources=client.V1CustomResourceSubresources(
                status={},
                scale=client.V1CustomResourceSubresourceScale(
                    spec_replicas_path=".spec.crew", status_replicas_path=".status.crew")),
        )],
    ),
))

deadline = time.time() + 5
while True:
    crd = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    conditions = {c.type: c.status for c in (crd.status.conditions or [])}
    if conditions.get("Established") == "True":
        break
    assert time.time() < deadline, crd.status
    time.sleep(0.05)
assert crd.status.accepted_names.kind == "Boat", crd.status
assert crd.spec.names.singular == "boat" and crd.spec.names.list_kind == "BoatList", crd.spec.names

boat = objects.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "Boat",
    "metadata": {"name": "dinghy"}, "spec": {"length": 3}})
assert boat["spec"]["crew"] == 2, boat

try:
    objects.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Boat",
        "metadata": {"name": "raft"}, "spec": {"length": 0}})
    raise AssertionError("an invalid boat was created")
except ApiException as e:
    assert e.status == 422, e
    assert "spec.length in body should be greater than or equal to 1" in e.body, e.body

listed = objects.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
assert [b["metadata"]["name"] for b in listed["items"]] == ["dinghy"], listed
assert listed["kind"] == "BoatList", listed["kind"]
patched = objects.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "dinghy",
                                                 {"spec": {"length": 4}})
assert patched["spec"]["length"] == 4 and patched["metadata"]["generation"] == 2, patched
status = objects.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "dinghy",
                                                       {"status": {"crew": 2}})
assert status["status"] == {"crew": 2}, status
scale = objects.patch_namespaced_custom_object_scale(GROUP, VERSION, NS, PLURAL, "dinghy",
                                                     {"spec": {"replicas": 5}})
assert scale["spec"]["replicas"] == 5 and scale["status"]["replicas"] == 2, scale
assert objects.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "dinghy")["spec"]["crew"] == 5

objects.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "dinghy")
assert objects.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"] == []
ext.delete_custom_resource_definition(f"{PLURAL}.{GROUP}")
print("ok")
