"""The committed CRDs on the real API server: the harness installed them, every example is accepted, what the
models refuse is refused with the field named (schema, CEL rules, strict field validation), status is
written through the status subresource, and the chart's rendered objects are valid."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from kernel import artefacts
from kernel.errors import PermanentError
from tidescale.local import crds, environment

pytestmark = pytest.mark.integration

GROUP, VERSION = "tidescale.io", "v1alpha1"
EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples" / "policies").glob("*.yaml"))
EMBEDDING = Path(__file__).resolve().parents[3] / "examples" / "policies" / "embedding-worker.yaml"
CHART = Path(__file__).resolve().parents[3] / "helm" / "tidescale"
CAPI = Path(__file__).resolve().parents[4] / "shared" / "crds" / "cluster.x-k8s.io_machinedeployments.yaml"


def example_documents() -> list[Any]:
    return [
        pytest.param(doc, id=f"{path.stem}/{doc['metadata']['name']}")
        for path in EXAMPLES
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def create(kube: client.ApiClient, namespace: str, doc: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Create a ScalingPolicy in `namespace` or a (cluster-scoped) NodePool, strict about unknown fields."""
    api = client.CustomObjectsApi(kube)
    options.setdefault("field_validation", "Strict")
    if doc["kind"] == "NodePool":
        created: dict[str, Any] = api.create_cluster_custom_object(
            GROUP, VERSION, "nodepools", doc, **options
        )
    else:
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        created = api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "scalingpolicies", doc, **options
        )
    return created


def refusal(kube: client.ApiClient, namespace: str, doc: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(ApiException) as refused:
        create(kube, namespace, doc, dry_run="All")
    return int(refused.value.status), json.loads(refused.value.body)["message"]


def embedding_worker() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EMBEDDING.read_text())
    return doc


def test_the_harness_installed_both_crds_and_they_are_established(
    cluster: environment.Environment, kube: client.ApiClient
) -> None:
    api = client.ApiextensionsV1Api(kube)
    for name in ("scalingpolicies.tidescale.io", "nodepools.tidescale.io"):
        conditions = {c.type: c.status for c in api.read_custom_resource_definition(name).status.conditions}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"


def test_installing_again_replaces_the_crds_in_place(cluster: environment.Environment) -> None:
    assert crds.install(cluster.kubeconfig, crds.tidescale_crds()) == [
        "nodepools.tidescale.io",
        "scalingpolicies.tidescale.io",
    ]


def test_the_cluster_api_machine_deployment_crd_installs_through_the_same_function(
    cluster: environment.Environment, kube: client.ApiClient
) -> None:
    if not CAPI.is_file():
        pytest.skip(f"{CAPI} is not here")
    assert crds.install(cluster.kubeconfig, [CAPI]) == ["machinedeployments.cluster.x-k8s.io"]
    names = client.ApiextensionsV1Api(kube).read_custom_resource_definition(
        "machinedeployments.cluster.x-k8s.io"
    )
    assert names.spec.names.kind == "MachineDeployment"


@pytest.mark.parametrize("doc", example_documents())
def test_the_api_server_accepts_every_example(
    kube: client.ApiClient, namespace: str, doc: dict[str, Any]
) -> None:
    created = create(kube, namespace, doc, dry_run="All")

    assert created["kind"] == doc["kind"]
    assert created["spec"] == doc["spec"]  # nothing pruned: every field is in the schema


def _no_max_replicas(doc: dict[str, Any]) -> None:
    del doc["spec"]["maxReplicas"]


def _kafka_lag_without_topic(doc: dict[str, Any]) -> None:
    del doc["spec"]["triggers"][0]["topic"]


def _negative_max_replicas(doc: dict[str, Any]) -> None:
    doc["spec"]["maxReplicas"] = -1


def _negative_target_in_a_trigger(doc: dict[str, Any]) -> None:
    doc["spec"]["triggers"][1]["target"] = -5


def _topic_on_a_gpu_trigger(doc: dict[str, Any]) -> None:
    doc["spec"]["triggers"][1]["topic"] = "docs.chunks"


def _fractional_gpu_target(doc: dict[str, Any]) -> None:
    doc["spec"]["triggers"][1]["target"] = 85.5


def _min_above_max(doc: dict[str, Any]) -> None:
    doc["spec"]["minReplicas"] = 30


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        (_no_max_replicas, 422, ["spec.maxReplicas", "Required value"]),
        (_kafka_lag_without_topic, 422, ["spec.triggers[0].topic", "topic is required for type KafkaLag"]),
        (_negative_max_replicas, 422, ["spec.maxReplicas", "should be greater than or equal to 1"]),
        (_negative_target_in_a_trigger, 422, ["spec.triggers[1].target", "at least 1"]),
        (_topic_on_a_gpu_trigger, 422, ["spec.triggers[1].topic", "not a field of type GPUUtilization"]),
        (_fractional_gpu_target, 422, ["spec.triggers[1].target", "a whole number"]),
        (_min_above_max, 422, ["spec.minReplicas", "must not be above maxReplicas"]),
    ],
    ids=[
        "no-max-replicas",
        "kafka-lag-without-topic",
        "negative-max-replicas",
        "negative-target-in-a-trigger",
        "foreign-field",
        "fraction",
        "min-above-max",
    ],
)
def test_the_api_server_refuses_an_invalid_policy_naming_the_field(
    kube: client.ApiClient,
    namespace: str,
    change: Callable[[dict[str, Any]], None],
    status: int,
    words: list[str],
) -> None:
    doc = embedding_worker()
    change(doc)

    code, message = refusal(kube, namespace, doc)

    assert code == status
    for word in words:
        assert word in message


def test_a_cluster_api_pool_without_its_machine_deployment_is_refused(
    kube: client.ApiClient, namespace: str
) -> None:
    pool = yaml.safe_load((EMBEDDING.parent / "gpu-node-pool.yaml").read_text())
    assert pool["kind"] == "NodePool"
    pool["spec"]["provider"] = {"type": "ClusterAPI"}

    code, message = refusal(kube, namespace, pool)

    assert code == 422
    assert "spec.provider.machineDeployment" in message


def test_status_is_written_through_the_status_subresource_and_not_through_the_object(
    kube: client.ApiClient, namespace: str
) -> None:
    api = client.CustomObjectsApi(kube)
    created = create(kube, namespace, embedding_worker())
    name = created["metadata"]["name"]
    status = {
        "observedGeneration": created["metadata"]["generation"],
        "currentReplicas": 2,
        "desiredReplicas": 4,
        "lastScaleTime": "2025-01-01T00:00:00Z",
        "lastDecision": "lag 20000 over 5000 per replica: 2 → 4 replicas",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Reconciled",
                "message": "2 triggers read",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
                "observedGeneration": created["metadata"]["generation"],
            }
        ],
        "state": {"version": 1, "history": {"highs": [[1.0, 4]]}, "failures": []},
    }

    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "scalingpolicies", name, {"status": status}
    )
    # a status sent with the main resource is ignored (the status subresource owns it)
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "scalingpolicies", name, {"status": {"desiredReplicas": 9}}
    )

    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "scalingpolicies", name)
    assert stored["status"] == status  # state kept whole: preserve-unknown-fields
    assert stored["metadata"]["generation"] == created["metadata"]["generation"]


def test_the_api_server_accepts_every_object_the_chart_renders(
    kube: client.ApiClient, namespace: str
) -> None:
    try:
        helm = artefacts.cached_binary("helm")
    except PermanentError as exc:
        pytest.skip(str(exc))
    rendered = subprocess.run(
        [
            str(helm),
            "template",
            "demo",
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            "kafkaBootstrap=k:9092",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    # the controller's and the scheduler's, each with its lease Role, and the four Grafana dashboards
    assert sorted(d["kind"] for d in docs) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "ConfigMap",
        "ConfigMap",
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Deployment",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "Service",
        "ServiceAccount",
        "ServiceAccount",
    ]
    for doc in docs:
        # server-side dry run: the real schemas, defaults and validation (RBAC rules too); nothing stored
        created = utils.create_from_dict(kube, doc, namespace=namespace, dry_run="All")
        assert created


def _misspelt_at_the_top(doc: dict[str, Any]) -> None:
    doc["spec"]["maxReplica"] = 3


def _misspelt_in_a_trigger(doc: dict[str, Any]) -> None:
    doc["spec"]["triggers"][1]["tagret"] = 60


@pytest.mark.parametrize(
    ("change", "kept", "where"),
    [
        (_misspelt_at_the_top, lambda spec: spec["maxReplica"], "spec.maxReplica"),
        (
            _misspelt_in_a_trigger,
            lambda spec: spec["triggers"][1]["tagret"],
            "spec.triggers.1.GPUUtilization.tagret",
        ),
    ],
    ids=["top-level", "in-a-trigger"],
)
def test_a_misspelt_field_sent_without_strict_validation_is_kept_and_the_controller_names_it(
    cluster: environment.Environment,
    kube: client.ApiClient,
    namespace: str,
    change: Callable[[dict[str, Any]], None],
    kept: Callable[[dict[str, Any]], Any],
    where: str,
) -> None:
    from autoscaler.controller.wiring import Options, Running
    from tests.waiting import wait_for

    doc = embedding_worker()
    change(doc)
    # 1. The client's default (no fieldValidation): nothing is refused, and nothing is pruned either.
    created = create(kube, namespace, doc, field_validation=None)
    assert kept(created["spec"]) is not None
    name = created["metadata"]["name"]

    # 2. The real controller reads it with the models and says what is wrong, on the object.
    running = Running(Options(kubeconfig=cluster.kubeconfig, events_topic=None, sync_seconds=2.0)).start()
    api = client.CustomObjectsApi(kube)

    def ready() -> dict[str, Any] | None:
        stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "scalingpolicies", name)
        found = [c for c in (stored.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
        return found[0] if found else None

    try:
        condition = wait_for(ready, 30, f"{name}'s Ready condition")
    finally:
        running.stop()
    assert condition["status"] == "False"
    assert condition["reason"] == "InvalidSpec"
    assert f"{namespace}/{name}: {where}: Extra inputs are not permitted" in condition["message"]


def test_a_strict_client_is_not_refused_a_misspelt_field_since_the_schema_keeps_it(
    kube: client.ApiClient, namespace: str
) -> None:
    # The other side of keeping unknown fields: nothing is pruned, so strict validation has nothing to report
    # (the controller's InvalidSpec above, and `tidescale policy validate` before sending, catch it).
    doc = embedding_worker()
    _misspelt_at_the_top(doc)
    created = create(kube, namespace, doc, dry_run="All")
    assert created["spec"]["maxReplica"] == 3
