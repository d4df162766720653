"""The official Python client (kubernetes 33.1.0) against a skiff server: it decodes every
answer into its typed models, whose constructors refuse missing required fields, so each
kind's objects must look as upstream's do. Run by python_client.rs with the kubeconfig."""

import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_kube_config(sys.argv[1])
core = client.CoreV1Api()
rbac = client.RbacAuthorizationV1Api()
batch = client.BatchV1Api()
apps = client.AppsV1Api()
net = client.NetworkingV1Api()
policy = client.PolicyV1Api()
hpas = client.AutoscalingV2Api()
scheduling = client.SchedulingV1Api()
meta = client.V1ObjectMeta

NS = "py"
core.create_namespace(client.V1Namespace(metadata=meta(name=NS)))

role = rbac.create_namespaced_role(NS, client.V1Role(
    metadata=meta(name="reader"),
    rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])]))
assert role.rules[0].verbs == ["get", "list"], role
binding = rbac.create_namespaced_role_binding(NS, client.V1RoleBinding(
    metadata=meta(name="reader"),
    role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="reader"),
    subjects=[client.RbacV1Subject(kind="User", name="jane")]))
assert binding.subjects[0].api_group == "rbac.authorization.k8s.io", binding

template = client.V1PodTemplateSpec(spec=client.V1PodSpec(
    restart_policy="Never",
    containers=[client.V1Container(name="c", image="busybox:1.36", command=["true"])]))
job = batch.create_namespaced_job(NS, client.V1Job(
    metadata=meta(name="once"), spec=client.V1JobSpec(template=template)))
assert job.spec.backoff_limit == 6 and job.spec.completions == 1, job.spec
assert job.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == job.metadata.uid
cron = batch.create_namespaced_cron_job(NS, client.V1CronJob(
    metadata=meta(name="nightly"),
    spec=client.V1CronJobSpec(schedule="0 3 * * *", job_template=client.V1JobTemplateSpec(
        spec=client.V1JobSpec(template=template)))))
assert cron.spec.concurrency_policy == "Allow", cron.spec

labels = {"app": "web"}
apps.create_namespaced_stateful_set(NS, client.V1StatefulSet(
    metadata=meta(name="db"),
    spec=client.V1StatefulSetSpec(
        service_name="db", selector=client.V1LabelSelector(match_labels=labels),
        template=client.V1PodTemplateSpec(
            metadata=meta(labels=labels),
            spec=client.V1PodSpec(containers=[client.V1Container(name="db", image="busybox:1.36")])))))
apps.create_namespaced_daemon_set(NS, client.V1DaemonSet(
    metadata=meta(name="agent"),
    spec=client.V1DaemonSetSpec(
        selector=client.V1LabelSelector(match_labels=labels),
        template=client.V1PodTemplateSpec(
            metadata=meta(labels=labels),
            spec=client.V1PodSpec(containers=[client.V1Container(name="a", image="busybox:1.36")])))))

pdb = policy.create_namespaced_pod_disruption_budget(NS, client.V1PodDisruptionBudget(
    metadata=meta(name="web"),
    spec=client.V1PodDisruptionBudgetSpec(min_available=1,
                                          selector=client.V1LabelSelector(match_labels=labels))))
assert pdb.status.disruptions_allowed == 0, pdb.status
hpa = hpas.create_namespaced_horizontal_pod_autoscaler(NS, client.V2HorizontalPodAutoscaler(
    metadata=meta(name="web"),
    spec=client.V2HorizontalPodAutoscalerSpec(
        max_replicas=4,
        scale_target_ref=client.V2CrossVersionObjectReference(
            api_version="apps/v1", kind="Deployment", name="web"))))
assert hpa.spec.min_replicas == 1 and hpa.spec.metrics[0].resource.name == "cpu", hpa.spec
# The same object through autoscaling/v1.
old = client.AutoscalingV1Api().read_namespaced_horizontal_pod_autoscaler("web", NS)
assert old.spec.target_cpu_utilization_percentage == 80 and old.spec.max_replicas == 4, old.spec
net.create_namespaced_network_policy(NS, client.V1NetworkPolicy(
    metadata=meta(name="web"),
    spec=client.V1NetworkPolicySpec(pod_selector=client.V1LabelSelector(match_labels=labels))))
ing = net.create_namespaced_ingress(NS, client.V1Ingress(
    metadata=meta(name="web"),
    spec=client.V1IngressSpec(rules=[client.V1IngressRule(
        host="web.example",
        http=client.V1HTTPIngressRuleValue(paths=[client.V1HTTPIngressPath(
            path="/", path_type="Prefix",
            backend=client.V1IngressBackend(service=client.V1IngressServiceBackend(
                name="web", port=client.V1ServiceBackendPort(number=80))))]))])))
assert ing.spec.rules[0].http.paths[0].backend.service.port.number == 80, ing.spec
core.create_namespaced_persistent_volume_claim(NS, client.V1PersistentVolumeClaim(
    metadata=meta(name="data"),
    spec=client.V1PersistentVolumeClaimSpec(
        access_modes=["ReadWriteOnce"],
        resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}))))

# Lists decode into the typed list models.
for lister in (rbac.list_namespaced_role, rbac.list_namespaced_role_binding,
               batch.list_namespaced_job, batch.list_namespaced_cron_job,
               apps.list_namespaced_stateful_set, apps.list_namespaced_daemon_set,
               policy.list_namespaced_pod_disruption_budget,
               hpas.list_namespaced_horizontal_pod_autoscaler,
               net.list_namespaced_network_policy, net.list_namespaced_ingress,
               core.list_namespaced_persistent_volume_claim):
    items = lister(NS).items
    assert len(items) == 1, (lister.__name__, items)
classes = [c.metadata.name for c in scheduling.list_priority_class().items]
assert "system-cluster-critical" in classes, classes

# Refusals arrive as ApiException with upstream's Status.
try:
    batch.create_namespaced_job(NS, client.V1Job(
        metadata=meta(name="bad"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            containers=[client.V1Container(name="c", image="busybox:1.36")])))))
    raise AssertionError("a Job whose pods restart Always was accepted")
except ApiException as e:
    assert e.status == 422 and "restartPolicy" in e.body, (e.status, e.body)

core.delete_namespace(NS)
print("ok")
