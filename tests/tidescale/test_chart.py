"""Guard tests for the chart: its values validate against its schema, every value is documented, and what
`helm template` renders runs the controller with the flags from the values, under a role that allows its
work."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kernel import artefacts
from kernel.errors import PermanentError

CHART = Path(__file__).resolve().parents[2] / "helm" / "tidescale"


def test_the_default_values_validate_against_the_values_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(values, schema)


def test_every_top_level_value_is_documented_by_a_comment_starting_with_its_name() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.match(r"^([a-zA-Z]\w*):", line))]
    assert keys
    for index, key in keys:
        assert index > 0
        assert lines[index - 1].startswith(f"# {key} "), (
            f"values.yaml: {key} has no comment starting with its name"
        )


def test_an_unknown_value_is_refused_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text()) | {"replicas": 2}
    try:
        jsonschema.validate(values, schema)
    except jsonschema.ValidationError as error:
        assert "replicas" in error.message
    else:
        raise AssertionError("an unknown top-level value passed the schema")


# --- every value documented, at every depth ----------------------------------------------------------------


def test_every_nested_value_is_documented_by_a_comment_starting_with_its_dotted_name() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    parents: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        m = re.match(r"^( *)([a-zA-Z]\w*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        parents = [(i, k) for i, k in parents if i < indent]
        path = ".".join([k for _, k in parents] + [m.group(2)])
        parents.append((indent, m.group(2)))
        if "resources" in [k for _, k in parents[:-1]]:
            continue  # Kubernetes' own resource requirements, documented by Kubernetes
        assert lines[index - 1].strip().startswith(f"# {path} "), (
            f"values.yaml: {path} has no comment starting with its name"
        )


def test_more_than_one_replica_without_leader_election_is_refused_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values | {"replicaCount": 2}, schema)
    try:
        jsonschema.validate(values | {"replicaCount": 2, "leaderElect": False}, schema)
    except jsonschema.ValidationError as error:
        assert "True" in error.message
    else:
        raise AssertionError("two replicas without leader election passed the schema")


# --- what `helm template` renders --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return artefacts.cached_binary("helm")
    except PermanentError as exc:
        pytest.skip(str(exc))


def render(helm: Path, *options: str) -> dict[str, dict[str, Any]]:
    """The controller's objects of `helm template demo CHART OPTIONS…` as `{kind: document}` (one document per
    kind); the scheduler's, labelled with its component, are tested in test_chart_scheduler.py."""
    result = subprocess.run(
        [str(helm), "template", "demo", str(CHART), "--namespace", "ops", *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    docs = [
        d
        for d in yaml.safe_load_all(result.stdout)
        if d and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "scheduler"
    ]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), [d["kind"] for d in docs]
    return by_kind


def controller_args(rendered: dict[str, dict[str, Any]]) -> list[str]:
    (container,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]
    args: list[str] = container["args"]
    return args


def test_the_deployment_runs_the_controller_with_the_flags_from_the_values(helm: Path) -> None:
    rendered = render(helm, "--set", "kafkaBootstrap=kafka.data:9092", "--set", "eventsTopic=scaling")
    args = controller_args(rendered)

    assert args[:2] == ["controller", "run"]
    assert "--prometheus-url=http://prometheus-server.monitoring:80" in args
    assert "--kafka-bootstrap=kafka.data:9092" in args
    assert "--events-topic=scaling" in args
    assert "--leader-elect" in args
    assert "--webhook-port=8080" in args
    assert "--metrics-port=9090" in args
    assert "--host=0.0.0.0" in args
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == rendered["ServiceAccount"]["metadata"]["name"]
    ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert ports == {"webhook": 8080, "metrics": 9090}


def test_without_kafka_leader_election_or_a_separate_metrics_port_those_flags_are_left_out(
    helm: Path,
) -> None:
    rendered = render(helm, "--set", "leaderElect=false", "--set", "metricsPort=8080")
    args = controller_args(rendered)

    assert not [a for a in args if a.startswith(("--kafka-bootstrap", "--leader-elect", "--metrics-port"))]
    assert "--webhook-port=8080" in args
    service_ports = {p["name"]: p["targetPort"] for p in rendered["Service"]["spec"]["ports"]}
    assert service_ports == {"webhook": "webhook", "metrics": "webhook"}


def test_the_service_selects_the_controller_pods_and_exposes_the_webhook_and_metrics(helm: Path) -> None:
    rendered = render(helm)
    selector = rendered["Service"]["spec"]["selector"]
    labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]

    assert selector.items() <= labels.items()
    assert selector == rendered["Deployment"]["spec"]["selector"]["matchLabels"]
    assert {p["name"]: p["port"] for p in rendered["Service"]["spec"]["ports"]} == {
        "webhook": 8080,
        "metrics": 9090,
    }


def allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        (group in r["apiGroups"] or "*" in r["apiGroups"])
        and (
            resource in r["resources"]
            or ("/" in resource and f"*/{resource.split('/', 1)[1]}" in r["resources"])
        )
        and verb in r["verbs"]
        for r in rules
    )


@pytest.mark.parametrize(
    ("group", "resource", "verbs"),
    [
        ("tidescale.io", "scalingpolicies", "get list watch"),
        ("tidescale.io", "nodepools", "get list watch"),
        ("tidescale.io", "scalingpolicies/status", "get update patch"),
        ("tidescale.io", "nodepools/status", "get update patch"),
        ("apps", "deployments/scale", "get update patch"),
        ("apps", "statefulsets/scale", "get update patch"),
        ("serving.example.com", "inferenceservices/scale", "get update patch"),
        ("", "pods", "list watch"),
        ("", "pods/eviction", "create"),
        ("", "nodes", "get list watch create delete patch"),
        ("", "events", "create patch"),
        ("coordination.k8s.io", "leases", "get create update"),
        ("policy", "poddisruptionbudgets", "list"),
        ("cluster.x-k8s.io", "machinedeployments", "get"),
        ("cluster.x-k8s.io", "machinedeployments/scale", "get update patch"),
        ("cluster.x-k8s.io", "machines", "patch"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else None,
)
def test_the_cluster_role_allows_what_the_controller_does(
    helm: Path, group: str, resource: str, verbs: str
) -> None:
    rendered = render(helm)
    rules = rendered["ClusterRole"]["rules"]
    for verb in verbs.split():
        assert allows(rules, group, resource, verb), f"{verb} {group}/{resource}"
    binding = rendered["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == rendered["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": rendered["ServiceAccount"]["metadata"]["name"], "namespace": "ops"}
    ]


def test_the_cluster_role_changes_workloads_only_through_scale_and_reads_no_secrets(helm: Path) -> None:
    rules = render(helm)["ClusterRole"]["rules"]
    for group, resource in (("apps", "deployments"), ("apps", "statefulsets"), ("", "pods")):
        for verb in ("update", "patch", "delete"):
            assert not allows(rules, group, resource, verb), f"{verb} {group}/{resource}"
    assert not allows(rules, "", "secrets", "get")


def test_the_chart_ships_the_committed_crds(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "show", "crds", str(CHART)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    names = sorted(d["metadata"]["name"] for d in yaml.safe_load_all(result.stdout) if d)
    assert names == ["nodepools.tidescale.io", "scalingpolicies.tidescale.io"]
