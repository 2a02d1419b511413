"""Guard tests for the chart's secondary scheduler: what `helm template` renders runs `tidescale scheduler
run` with the flags from the values, under its own ServiceAccount, with a ClusterRole of exactly what the
scheduler does and its Lease in a namespaced Role; `scheduler.enabled=false` renders none of it, and the
schema refuses what the templates do not read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.tidescale.chart_render import CHART, render_all

COMPONENT = "app.kubernetes.io/component"

# Everything the scheduler does against the API, as (group, resource, verb): its ClusterRole grants exactly
# this, and the Lease is left to the namespaced Role. tests/tidescale/test_chart_install.py runs the scheduler
# with this role's token.
CLUSTER_GRANTS = {
    (group, resource, verb)
    for group, resource, verbs in [
        ("", "nodes", "list watch"),
        ("", "pods", "list watch"),
        ("", "pods/status", "patch"),
        ("", "pods/binding", "create"),
        ("", "pods/eviction", "create"),
        ("events.k8s.io", "events", "create patch"),
        ("scheduling.volcano.sh", "podgroups", "list watch patch"),
        ("scheduling.volcano.sh", "queues", "list watch"),
        ("scheduling.volcano.sh", "queues/status", "patch"),
    ]
    for verb in verbs.split()
}


def helm_run(helm: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *arguments], capture_output=True, text=True, timeout=120, check=False)


def render(helm: Path, *options: str) -> dict[str, dict[str, Any]]:
    """The scheduler's objects (those labelled with its component) as `{kind: document}`, one per kind."""
    docs = [d for d in render_all(helm, *options) if d["metadata"]["labels"].get(COMPONENT) == "scheduler"]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), [d["kind"] for d in docs]
    return by_kind


def controller(helm: Path, *options: str) -> dict[str, dict[str, Any]]:
    """The controller's objects as `{kind: document}`."""
    docs = [
        d
        for d in render_all(helm, *options)
        if d["metadata"]["labels"].get(COMPONENT) in (None, "controller")
    ]
    return {d["kind"]: d for d in docs}


def set_json(key: str, value: object) -> tuple[str, str]:
    """`--set-json KEY=VALUE`, VALUE written as JSON."""
    return "--set-json", f"{key}={json.dumps(value)}"


def container(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = rendered["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# --- the Deployment ----------------------------------------------------------------------------------------


def test_the_deployment_runs_the_scheduler_with_the_flags_from_the_values(helm: Path) -> None:
    rendered = render(helm)
    scheduler = container(rendered)
    args = scheduler["args"]

    assert args[:2] == ["scheduler", "run"]
    assert "--scheduler-name=tidescale" in args
    assert "--leader-elect" in args
    assert "--lease-namespace=ops" in args
    assert "--metrics-address=0.0.0.0" in args
    assert "--metrics-port=10259" in args
    assert "--qps=50" in args
    assert "--burst=100" in args
    assert not [a for a in args if a.startswith("--config")]
    assert rendered["Deployment"]["spec"]["replicas"] == 1
    assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in (
        scheduler["env"]
    )
    assert scheduler["ports"] == [{"name": "metrics", "containerPort": 10259, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert scheduler[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_the_scheduler_runs_the_controllers_image_under_a_service_account_of_its_own(helm: Path) -> None:
    options = ("--set", "image.tag=1.2.3", "--set", "image.pullPolicy=Always")
    rendered = render(helm, *options)
    controller_objects = controller(helm, *options)
    (controller_container,) = controller_objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    scheduler = container(rendered)

    assert scheduler["image"] == controller_container["image"] == "ghcr.io/tidescale/tidescale:1.2.3"
    assert scheduler["imagePullPolicy"] == "Always"
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == rendered["ServiceAccount"]["metadata"]["name"]
    assert pod["serviceAccountName"] != controller_objects["ServiceAccount"]["metadata"]["name"]
    assert "schedulerName" not in pod  # its own pods are placed by kube-scheduler
    assert scheduler["securityContext"] == controller_container["securityContext"]


def test_more_replicas_and_another_name_run_with_leader_election_on_that_names_lease(helm: Path) -> None:
    rendered = render(helm, "--set", "scheduler.replicas=3", "--set", "scheduler.schedulerName=gpu")
    args = container(rendered)["args"]

    assert rendered["Deployment"]["spec"]["replicas"] == 3
    assert "--scheduler-name=gpu" in args
    assert "--leader-elect" in args
    lease_rules = [r for r in rendered["Role"]["rules"] if "resourceNames" in r]
    assert lease_rules and all(r["resourceNames"] == ["gpu-scheduler"] for r in lease_rules)


def test_without_leader_election_no_lease_is_used_and_a_rollout_never_runs_two_schedulers(helm: Path) -> None:
    rendered = render(helm, "--set", "scheduler.leaderElect=false")
    args = container(rendered)["args"]

    assert not [a for a in args if a.startswith(("--leader-elect", "--lease-namespace"))]
    assert rendered["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}
    assert "Role" not in rendered and "RoleBinding" not in rendered
    assert "strategy" not in render(helm)["Deployment"]["spec"]


def test_more_than_one_replica_without_leader_election_is_refused(helm: Path) -> None:
    result = helm_run(
        helm,
        "template",
        "demo",
        str(CHART),
        "--set",
        "scheduler.replicas=2",
        "--set",
        "scheduler.leaderElect=false",
    )
    assert result.returncode != 0
    assert "leaderElect" in result.stderr


def test_a_scheduler_config_is_mounted_from_a_config_map_and_rolls_the_pods(helm: Path) -> None:
    assert "ConfigMap" not in render(helm)

    config = {"apiVersion": "tidescale.io/v1alpha1", "kind": "SchedulerConfig", "scorer": "fgd"}
    rendered = render(helm, *set_json("scheduler.config", config))
    scheduler = container(rendered)
    pod = rendered["Deployment"]["spec"]["template"]

    assert yaml.safe_load(rendered["ConfigMap"]["data"]["config.yaml"]) == config
    assert "--config=/etc/tidescale/scheduler/config.yaml" in scheduler["args"]
    assert scheduler["volumeMounts"] == [
        {"name": "config", "mountPath": "/etc/tidescale/scheduler", "readOnly": True}
    ]
    assert pod["spec"]["volumes"] == [
        {"name": "config", "configMap": {"name": rendered["ConfigMap"]["metadata"]["name"]}}
    ]
    checksum = pod["metadata"]["annotations"]["checksum/config"]
    changed = render(helm, *set_json("scheduler.config", config | {"scorer": "bestfit"}))
    assert changed["Deployment"]["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != checksum


def test_pod_placement_and_annotations_come_from_the_values(helm: Path) -> None:
    node_selector = {"node-role.kubernetes.io/control-plane": ""}
    tolerations = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    pod = render(
        helm,
        *set_json("scheduler.nodeSelector", node_selector),
        *set_json("scheduler.tolerations", tolerations),
        *set_json("scheduler.affinity", affinity),
        *set_json("scheduler.podAnnotations", {"prometheus.io/scrape": "true"}),
    )["Deployment"]["spec"]["template"]

    assert pod["spec"]["nodeSelector"] == node_selector
    assert pod["spec"]["tolerations"] == tolerations
    assert pod["spec"]["affinity"] == affinity
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert (
        not {"nodeSelector", "tolerations", "affinity"}
        & render(helm)["Deployment"]["spec"]["template"]["spec"].keys()
    )


# --- the Service -------------------------------------------------------------------------------------------


def test_the_service_selects_the_scheduler_pods_only_and_exposes_metrics(helm: Path) -> None:
    rendered = render(helm)
    selector = rendered["Service"]["spec"]["selector"]
    labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]
    controller_labels = controller(helm)["Deployment"]["spec"]["template"]["metadata"]["labels"]

    assert selector.items() <= labels.items()
    assert selector == rendered["Deployment"]["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= controller_labels.items()
    assert not controller(helm)["Service"]["spec"]["selector"].items() <= labels.items()
    assert rendered["Service"]["spec"]["ports"] == [
        {"name": "metrics", "port": 10259, "targetPort": "metrics", "protocol": "TCP"}
    ]


# --- RBAC --------------------------------------------------------------------------------------------------


def test_the_cluster_role_grants_exactly_what_the_scheduler_does(helm: Path) -> None:
    rendered = render(helm)
    rules = rendered["ClusterRole"]["rules"]

    assert grants(rules) == CLUSTER_GRANTS
    assert not [r for r in rules if "resourceNames" in r or "nonResourceURLs" in r]
    binding = rendered["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": rendered["ClusterRole"]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": rendered["ServiceAccount"]["metadata"]["name"], "namespace": "ops"}
    ]


def test_the_scheduler_binds_but_writes_no_nodes_reads_no_secrets_and_holds_no_wildcards(helm: Path) -> None:
    rendered = render(helm)
    cluster = grants(rendered["ClusterRole"]["rules"])

    assert ("", "pods/binding", "create") in cluster
    assert not {(g, r, v) for g, r, v in cluster if r == "nodes" and v not in {"get", "list", "watch"}}
    assert not {(g, r, v) for g, r, v in cluster if r == "pods" and v in {"create", "update", "delete"}}
    assert not [t for t in cluster if t[1] in {"secrets", "configmaps", "serviceaccounts/token"}]
    for kind in ("ClusterRole", "Role"):
        for g, r, v in grants(rendered[kind]["rules"]):
            assert "*" not in (g, r, v) and not r.startswith("*/"), (kind, g, r, v)
    assert not [t for t in cluster if t[0] == "coordination.k8s.io"]


def test_the_lease_is_granted_by_a_role_in_the_release_namespace(helm: Path) -> None:
    rendered = render(helm)
    role, binding = rendered["Role"], rendered["RoleBinding"]

    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "ops"
    assert grants(role["rules"]) == {
        ("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")
    }
    named = {
        v for r in role["rules"] if r.get("resourceNames") == ["tidescale-scheduler"] for v in r["verbs"]
    }
    assert named == {"get", "update"}
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == rendered["ClusterRoleBinding"]["subjects"]


def test_an_existing_service_account_is_bound_when_none_is_created(helm: Path) -> None:
    rendered = render(
        helm, "--set", "scheduler.serviceAccount.create=false", "--set", "scheduler.serviceAccount.name=sched"
    )

    assert "ServiceAccount" not in rendered
    assert rendered["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == "sched"
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        assert rendered[kind]["subjects"] == [{"kind": "ServiceAccount", "name": "sched", "namespace": "ops"}]


def test_without_rbac_the_scheduler_gets_no_roles(helm: Path) -> None:
    rendered = render(helm, "--set", "rbac.create=false")
    assert sorted(rendered) == ["Deployment", "Service", "ServiceAccount"]


# --- disabled, schema and lint -----------------------------------------------------------------------------


def test_a_disabled_scheduler_renders_none_of_its_objects(helm: Path) -> None:
    config = set_json("scheduler.config", {"kind": "SchedulerConfig"})
    enabled = render_all(helm, *config)
    assert sorted(d["kind"] for d in enabled if d["metadata"]["labels"].get(COMPONENT) == "scheduler") == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]

    monitored = ("--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true")
    docs = render_all(helm, "--set", "scheduler.enabled=false", *config, *monitored)
    assert not [d for d in docs if d["metadata"]["labels"].get(COMPONENT) == "scheduler"]
    assert not [d for d in docs if "scheduler" in d["metadata"]["name"]]
    assert sorted(d["kind"] for d in docs if d["metadata"]["labels"].get(COMPONENT) != "dashboards") == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert [g["name"] for g in rule["spec"]["groups"]] == ["tidescale-autoscaler"]  # no scheduler alerts


def test_an_unknown_scheduler_value_is_refused_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema)
    with pytest.raises(jsonschema.ValidationError, match="replicaCount"):
        jsonschema.validate(values | {"scheduler": values["scheduler"] | {"replicaCount": 2}}, schema)


def test_more_than_one_scheduler_replica_without_leader_election_is_refused_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values | {"scheduler": values["scheduler"] | {"replicas": 2}}, schema)
    with pytest.raises(jsonschema.ValidationError, match="True"):
        jsonschema.validate(
            values | {"scheduler": values["scheduler"] | {"replicas": 2, "leaderElect": False}}, schema
        )


@pytest.mark.parametrize("command", [("template", "demo"), ("lint",)], ids=["template", "lint"])
def test_helm_refuses_an_unknown_scheduler_value(helm: Path, command: tuple[str, ...]) -> None:
    result = helm_run(helm, *command, str(CHART), "--set", "scheduler.replicaCount=2")
    assert result.returncode != 0, result.stdout
    assert "replicaCount" in result.stdout + result.stderr


def test_the_chart_lints(helm: Path) -> None:
    for options in ((), ("--set", "scheduler.enabled=false"), ("--set", "scheduler.replicas=2")):
        result = helm_run(helm, "lint", str(CHART), "--strict", *options)
        assert result.returncode == 0, (options, result.stdout + result.stderr)
