"""Guard tests for the chart: its values validate against its schema, every value is documented, and what
`helm template` renders runs the controller with the flags from the values, under a role that grants exactly
its work, and no role of the chart holds a wildcard."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.tidescale.chart_render import CHART, render_all


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


def render(helm: Path, *options: str) -> dict[str, dict[str, Any]]:
    """The controller's objects of `helm template demo CHART OPTIONS…` as `{kind: document}` (one document per
    kind); the scheduler's are tested in test_chart_scheduler.py, the dashboards and the monitoring objects in
    test_chart_monitoring.py."""
    docs = [
        d
        for d in render_all(helm, *options)
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") in (None, "controller")
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


# Everything the controller does against the API (its informers, /scale, status, Events, node pools and
# their drain, the pod-deletion-cost annotation before a scale-down), as (group, resource, verb): its
# ClusterRole grants exactly this, and its Lease is left to a namespaced Role.
# tests/tidescale/test_chart_install.py runs the controller with this role's token.
CONTROLLER_GRANTS = {
    (group, resource, verb)
    for group, resource, verbs in [
        ("tidescale.io", "scalingpolicies", "get list watch"),
        ("tidescale.io", "nodepools", "get list watch"),
        ("tidescale.io", "scalingpolicies/status", "patch"),
        ("apps", "deployments", "get list watch"),
        ("apps", "statefulsets", "get list watch"),
        ("apps", "deployments/scale", "get update patch"),
        ("apps", "statefulsets/scale", "get update patch"),
        ("", "pods", "list watch patch"),
        ("", "pods/eviction", "create"),
        ("", "nodes", "list create patch delete"),
        ("events.k8s.io", "events", "create patch"),
        ("cluster.x-k8s.io", "machinedeployments/scale", "get update"),
        ("cluster.x-k8s.io", "machines", "list patch"),
    ]
    for verb in verbs.split()
}


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_cluster_role_grants_exactly_what_the_controller_does(helm: Path) -> None:
    rendered = render(helm)
    rules = rendered["ClusterRole"]["rules"]

    assert grants(rules) == CONTROLLER_GRANTS
    assert not [r for r in rules if "resourceNames" in r or "nonResourceURLs" in r]
    binding = rendered["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == rendered["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": rendered["ServiceAccount"]["metadata"]["name"], "namespace": "ops"}
    ]


def test_a_kind_named_in_scale_targets_gets_its_scale_and_nothing_else(helm: Path) -> None:
    targets = [{"apiGroup": "serving.kserve.io", "resource": "inferenceservices"}]
    rules = render(helm, "--set-json", f"rbac.scaleTargets={json.dumps(targets)}")["ClusterRole"]["rules"]

    assert grants(rules) - CONTROLLER_GRANTS == {
        ("serving.kserve.io", "inferenceservices/scale", verb) for verb in ("get", "update", "patch")
    }


def test_the_cluster_role_changes_workloads_only_through_scale_and_reads_no_secrets(helm: Path) -> None:
    cluster = grants(render(helm)["ClusterRole"]["rules"])
    for group, resource in (("apps", "deployments"), ("apps", "statefulsets"), ("", "pods")):
        for verb in ("update", "patch", "delete", "create"):
            if (resource, verb) == ("pods", "patch"):
                continue  # the pod-deletion-cost annotation, a merge patch of the pod's metadata
            assert (group, resource, verb) not in cluster, f"{verb} {group}/{resource}"
    assert not [t for t in cluster if t[1] in {"secrets", "configmaps", "serviceaccounts/token"}]
    assert not [t for t in cluster if t[0] == "coordination.k8s.io"]


def test_the_controllers_lease_is_granted_by_a_role_in_the_release_namespace_on_its_own_name(
    helm: Path,
) -> None:
    rendered = render(helm)
    role, binding = rendered["Role"], rendered["RoleBinding"]
    (container,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]

    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "ops"
    assert grants(role["rules"]) == {
        ("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")
    }
    named = {
        v
        for r in role["rules"]
        if r.get("resourceNames") == ["demo-tidescale-controller"]
        for v in r["verbs"]
    }
    assert named == {"get", "update"}
    assert "--lease-name=demo-tidescale-controller" in container["args"]
    assert binding["subjects"] == rendered["ClusterRoleBinding"]["subjects"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    without = render(helm, "--set", "leaderElect=false")
    assert "Role" not in without and "RoleBinding" not in without


@pytest.mark.parametrize(
    "options",
    [
        (),
        ("--set", "leaderElect=false", "--set", "scheduler.leaderElect=false"),
        (
            "--set-json",
            'rbac.scaleTargets=[{"apiGroup": "serving.kserve.io", "resource": "inferenceservices"}]',
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
        ),
    ],
    ids=["defaults", "no-leader-election", "everything"],
)
def test_no_role_the_chart_renders_holds_a_wildcard_verb_resource_or_group(
    helm: Path, options: tuple[str, ...]
) -> None:
    roles = [d for d in render_all(helm, *options) if d["kind"] in ("Role", "ClusterRole")]
    assert len([r for r in roles if r["kind"] == "ClusterRole"]) == 2
    for role in roles:
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule, role["metadata"]["name"]
            for field in ("apiGroups", "resources", "verbs"):
                assert not [v for v in rule[field] if "*" in v], (role["metadata"]["name"], field, rule)


def test_a_wildcard_scale_target_is_refused_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for target in ({"apiGroup": "*", "resource": "deployments"}, {"apiGroup": "apps", "resource": "*"}):
        with pytest.raises(jsonschema.ValidationError, match="does not match"):
            jsonschema.validate(values | {"rbac": {"create": True, "scaleTargets": [target]}}, schema)


def test_the_chart_ships_the_committed_crds(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "show", "crds", str(CHART)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    names = sorted(d["metadata"]["name"] for d in yaml.safe_load_all(result.stdout) if d)
    assert names == ["nodepools.tidescale.io", "scalingpolicies.tidescale.io"]


CONSOLE_GRANTS = {
    ("", "configmaps", "list"),
    ("batch", "jobs", "list"),
    ("scheduling.volcano.sh", "podgroups", "list"),
    ("scheduling.volcano.sh", "queues", "list"),
}


def test_the_console_is_off_by_default_and_when_on_adds_only_list_grants_for_its_views(helm: Path) -> None:
    off = render(helm)
    assert "--no-console" in controller_args(off)
    on = render(helm, "--set", "console.enabled=true")
    assert "--no-console" not in controller_args(on)
    assert grants(on["ClusterRole"]["rules"]) - CONTROLLER_GRANTS == CONSOLE_GRANTS
