from pathlib import Path

import pytest
import yaml

from autoscaler.api.policy import ScalingPolicy, parse_policy_file, read_policy_file, trigger_name
from kernel.errors import InvalidSpec
from tests.autoscaler.autoscaler_builders import a_policy, gpu_trigger

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples" / "policies").glob("*.yaml"))
LOCAL = sorted((EXAMPLES[0].parent / "local").glob("*.yaml"))
POOL_LABEL = "tidescale.io/node-pool"

HEAD = """apiVersion: tidescale.io/v1alpha1
kind: ScalingPolicy
metadata:
  name: svc
spec:
  targetRef: {name: svc}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(InvalidSpec) as e:
        parse_policy_file(text, "p.yaml")
    assert e.value.file == "p.yaml"
    return e.value.problems


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_policy_validates(path: Path) -> None:
    f = read_policy_file(path)
    assert f.policies or f.pools


def test_the_examples_hold_an_llm_service_a_kafka_worker_and_a_node_pool() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"llm-inference.yaml", "embedding-worker.yaml", "gpu-node-pool.yaml"} <= names
    llm = read_policy_file(EXAMPLES[[p.name for p in EXAMPLES].index("llm-inference.yaml")])
    types = {t.type for t in llm.policies[0].spec.triggers}
    assert {"GPUUtilization", "QueueDepth", "SLO"} <= types
    assert llm.policies[0].spec.scale_to_zero is not None
    assert llm.pools and llm.pools[0].spec.node.gpus == 8


@pytest.mark.parametrize("path", LOCAL, ids=[p.name for p in LOCAL])
def test_a_local_example_deploys_what_its_policy_scales_on_nodes_its_pool_makes(path: Path) -> None:
    policies = read_policy_file(path.parent.parent / path.name)
    (policy,) = policies.policies
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["metadata"]["name"] == policy.spec.target_ref.name
    assert deployment["metadata"]["namespace"] == policy.metadata.namespace
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    requests = {k: str(v) for k, v in container["resources"]["requests"].items()}
    assert requests == {k: str(v) for k, v in (policy.spec.pod_requests or {}).items()}
    # a node selector picks nodes of the policy's pool (its label, or labels every node of it carries)
    pool = policies.pool(policy.spec.node_pool or "") or next(
        (p for p in read_policy_file(path.parent.parent / "gpu-node-pool.yaml").pools), None
    )
    assert pool is not None and pool.metadata.name == policy.spec.node_pool
    labels = {**pool.spec.labels, POOL_LABEL: pool.metadata.name}
    assert pod.get("nodeSelector", {}).items() <= labels.items()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "  maxReplicas: 3\n  triggers:\n    - type: GPUUtil\n      target: 70\n",
            "9: spec.triggers.0: no trigger type 'GPUUtil' (known: GPUUtilization, DCGM, Prometheus,",
        ),
        (
            "  maxReplicas: 3\n  triggers:\n    - type: GPUUtilization\n      target: 170\n",
            "10: spec.triggers.0.target: 170% is above 100% for aggregation mean",
        ),
        (
            "  maxReplicas: 3\n  triggers:\n    - {type: QueueDepth, query: q, targetPerReplica: 4, bogus: 1}"
            "\n",
            "9: spec.triggers.0.bogus: Extra inputs are not permitted",
        ),
        (
            "  minReplicas: 5\n  maxReplicas: 3\n  triggers: [{type: GPUUtilization, target: 70}]\n",
            "7: spec.minReplicas: 5 is above maxReplicas 3",
        ),
        (
            "  minReplicas: 0\n  maxReplicas: 3\n  triggers: [{type: GPUUtilization, target: 70}]\n"
            "  scaleToZero: {idleSeconds: 60}\n",
            "10: spec.scaleToZero: no trigger exists with zero pods",
        ),
        (
            "  minReplicas: 0\n  maxReplicas: 3\n  triggers: [{type: GPUUtilization, target: 70}]\n",
            "7: spec.minReplicas: 0 needs a scaleToZero section",
        ),
        (
            "  maxReplicas: 3\n  triggers:\n    - type: Schedule\n      windows:\n"
            "        - {cron: '0 25 * * *', durationSeconds: 600, replicas: 2}\n",
            "11: spec.triggers.0.windows.0.cron: hour: '25' outside 0-23",
        ),
        (
            "  maxReplicas: 3\n  podRequests: {nvidia.com/gpu: lots}\n"
            "  triggers: [{type: GPUUtilization, target: 70}]\n",
            "8: spec.podRequests: nvidia.com/gpu: not a quantity",
        ),
        (
            "  maxReplicas: 3\n",
            "6: spec.triggers: Field required",
        ),
        (
            "  maxReplicas: 3\n  triggers: [{type: GPUUtilization, target: 70}]\n"
            "  forecast: {headroomPercentile: 90}\n",
            "9: spec.forecast.headroomPercentile: applies to a seasonal forecast; set seasonality to daily,",
        ),
        (
            "  maxReplicas: 3\n  triggers: [{type: GPUUtilization, target: 70}]\n"
            "  forecast: {seasonality: hourly}\n",
            "9: spec.forecast.seasonality: Input should be 'none', 'daily', 'weekly' or 'auto'",
        ),
    ],
    ids=[
        "unknown trigger type",
        "percent above 100",
        "unknown field",
        "min above max",
        "scale to zero without a zero-pod signal",
        "min 0 without scale to zero",
        "bad cron",
        "bad quantity",
        "missing field",
        "headroom without seasonality",
        "unknown seasonality",
    ],
)
def test_a_bad_policy_names_line_field_and_reason(body: str, expected: str) -> None:
    got = problems(HEAD + body)
    assert any(p.startswith(expected) for p in got), got


def test_every_problem_of_a_file_is_reported_with_its_document() -> None:
    pool = (
        "---\napiVersion: tidescale.io/v1alpha1\nkind: NodePool\nmetadata: {name: p}\nspec:\n"
        "  node: {gpuModel: H100, gpus: 8, gpuMemoryMiB: 80000, cpu: '96', memory: 1Ti}\n"
        "  maxNodes: 2\n  hourlyPrice: -1\n  provisioningSeconds: 60\n"
    )
    got = problems(HEAD + "  maxReplicas: 3\n  triggers: [{type: Nope}]\n" + pool)
    assert got[0].startswith("8: [document 1] spec.triggers.0: no trigger type 'Nope'")
    assert got[1] == "16: [document 2] spec.hourlyPrice: Input should be greater than or equal to 0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [\n", "2: (document): not valid YAML"),
        ("", "1: (document): empty"),
        ("apiVersion: tidescale.io/v1alpha1\nkind: Pipeline\n", "2: kind: no kind 'Pipeline'"),
        ("- 1\n- 2\n", "1: (document): a mapping with apiVersion and kind"),
    ],
    ids=["yaml syntax", "empty", "unknown kind", "not a mapping"],
)
def test_a_file_that_is_not_a_policy_is_rejected_with_a_line(text: str, expected: str) -> None:
    assert problems(text)[0].startswith(expected)


def test_a_missing_file_is_reported_as_such(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec, match="file not found"):
        read_policy_file(tmp_path / "nope.yaml")


def test_a_forecast_without_seasonality_keeps_holt_and_a_seasonal_one_takes_a_headroom() -> None:
    holt = a_policy(forecast={}).spec.forecast
    assert holt is not None and (holt.seasonality, holt.headroom_percentile) == ("none", None)
    f = a_policy(forecast={"seasonality": "auto", "headroomPercentile": 90}).spec.forecast
    assert f is not None and (f.seasonality, f.headroom_percentile) == ("auto", 90)
    # written back with every default (as the replay and other clients dump it), it is still valid
    again = ScalingPolicy.model_validate(a_policy(forecast={"seasonality": "auto"}).model_dump(by_alias=True))
    assert again.spec.forecast is not None and again.spec.forecast.seasonality == "auto"


def test_triggers_without_a_name_are_named_by_type_and_position() -> None:
    p = a_policy(triggers=[gpu_trigger(name=None), {"type": "Prometheus", "query": "up", "target": 1}])
    assert [trigger_name(t, i) for i, t in enumerate(p.spec.triggers)] == ["gpuutilization-0", "prometheus-1"]


def test_policies_are_frozen_and_use_camel_case_in_documents() -> None:
    p = a_policy(max_replicas=3)
    assert p.spec.max_replicas == 3
    assert p.model_dump(by_alias=True)["spec"]["maxReplicas"] == 3
    with pytest.raises(ValueError, match="frozen"):
        p.spec.max_replicas = 4  # type: ignore[misc]
