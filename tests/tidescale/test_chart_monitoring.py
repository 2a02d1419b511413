"""Guard tests for what the chart ships for monitoring: ServiceMonitors that select the controller's and the
scheduler's Services, a PrometheusRule whose alerts fire when they should and not otherwise (promtool's rule
unit tests), and Grafana dashboards as ConfigMaps for the dashboard sidecar, well formed and reading only
series the code exports. That their queries return data on a live Prometheus is tested in
test_chart_install.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.controller.sinks.metrics import ControllerMetrics
from exporter.reading import FIELDS
from jobs.scheduler.metrics import SchedulerMetrics
from kernel import artefacts
from kernel.errors import PermanentError
from tests.tidescale.chart_render import CHART, render_all

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
COMPONENT = "app.kubernetes.io/component"
METRIC = re.compile(r"\b(tidescale_[a-z0-9_]+|DCGM_[A-Z0-9_]+)\b")
MONITORED = ("--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true")


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        path = artefacts.prometheus_binary().with_name("promtool")
    except PermanentError as exc:
        pytest.skip(str(exc))
    if not path.is_file():
        pytest.skip(f"promtool not found beside Prometheus at {path}: run `make setup`")
    return path


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# --- ServiceMonitors ---------------------------------------------------------------------------------------


def test_without_the_operator_values_no_service_monitor_or_rule_is_rendered(helm: Path) -> None:
    kinds = {d["kind"] for d in render_all(helm)}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}


def test_each_service_monitor_selects_its_components_service_and_scrapes_its_metrics_port(helm: Path) -> None:
    options = (
        "--set",
        "serviceMonitor.interval=30s",
        "--set-json",
        'serviceMonitor.labels={"release": "kps"}',
    )
    docs = render_all(helm, *MONITORED, *options)
    monitors, services = of_kind(docs, "ServiceMonitor"), of_kind(docs, "Service")

    assert sorted(m["metadata"]["labels"][COMPONENT] for m in monitors.values()) == [
        "controller",
        "scheduler",
    ]
    for monitor in monitors.values():
        component = monitor["metadata"]["labels"][COMPONENT]
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()]
        assert service["metadata"]["labels"][COMPONENT] == component
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
        assert monitor["metadata"]["labels"]["release"] == "kps"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "30s"}
        assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


def test_without_the_scheduler_only_the_controller_is_monitored(helm: Path) -> None:
    docs = render_all(helm, *MONITORED, "--set", "scheduler.enabled=false")
    assert [m["metadata"]["labels"][COMPONENT] for m in of_kind(docs, "ServiceMonitor").values()] == [
        "controller"
    ]


# --- the PrometheusRule ------------------------------------------------------------------------------------


def rule_groups(helm: Path, *options: str) -> list[dict[str, Any]]:
    (rule,) = of_kind(render_all(helm, *MONITORED, *options), "PrometheusRule").values()
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def expand(text: str, labels: dict[str, str], value: str) -> str:
    """An annotation as Prometheus writes it: `$labels.x` replaced, and the templated `$value`."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], text)
    return re.sub(r"\{\{ \$value[^}]*\}\}", value, text)


class Alerts:
    """promtool's rule unit tests over the rendered rule: series, and at which times which alerts fire."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        self.rules = {r["alert"]: r for g in groups for r in g["rules"]}
        self.series: list[dict[str, str]] = []
        self.checks: list[dict[str, Any]] = []

    def given(self, series: str, values: str) -> Alerts:
        self.series.append({"series": series, "values": values})
        return self

    def at(self, minutes: int, alert: str, *firing: tuple[dict[str, str], str]) -> Alerts:
        """At `minutes`, `alert` fires once per (labels, the annotations' $value text), for nothing else."""
        annotations = self.rules[alert]["annotations"]
        expected = [
            {
                "exp_labels": labels | self.rules[alert]["labels"],
                "exp_annotations": {k: expand(v, labels, value) for k, v in annotations.items()},
            }
            for labels, value in firing
        ]
        self.checks.append({"eval_time": f"{minutes}m", "alertname": alert, "exp_alerts": expected})
        return self

    def check(self, promtool: Path, folder: Path) -> None:
        (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": list(self._groups())}))
        test = {
            "rule_files": ["rules.yaml"],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": self.series, "alert_rule_test": self.checks}],
        }
        (folder / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
        result = subprocess.run(
            [str(promtool), "test", "rules", "test.yaml"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def _groups(self) -> list[dict[str, Any]]:
        return [{"name": "tidescale", "rules": list(self.rules.values())}]


def test_the_rule_passes_promtools_check(helm: Path, promtool: Path, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(helm)}))
    result = subprocess.run(
        [str(promtool), "check", "rules", "rules.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in rule_groups(helm) for r in g["rules"]}
    assert alerts == {
        "TidescalePolicyInFallback",
        "TidescaleMetricsUnavailable",
        "TidescaleNodePoolAtMax",
        "TidescaleScaleFailing",
        "TidescaleGangPending",
    }


LEADER = 'tidescale_is_leader{job="controller", instance="a"}'
FORMER = 'tidescale_is_leader{job="controller", instance="b"}'  # lost the Lease, keeps its last values


def test_a_policy_in_fallback_alerts_after_for_minutes_and_only_from_the_leader(
    helm: Path, promtool: Path, tmp_path: Path
) -> None:
    (
        Alerts(rule_groups(helm))
        .given(LEADER, "1x20")
        .given(FORMER, "0x20")
        .given('tidescale_fallback_active{policy="ml/chat", job="controller", instance="a"}', "0 0 1x18")
        .given('tidescale_fallback_active{policy="ml/web", job="controller", instance="a"}', "0x20")
        .given('tidescale_fallback_active{policy="ml/old", job="controller", instance="b"}', "1x20")
        .at(6, "TidescalePolicyInFallback")  # in fallback since 2 m: not 5 m yet
        .at(8, "TidescalePolicyInFallback", ({"policy": "ml/chat"}, ""))
        .check(promtool, tmp_path)
    )


def test_metrics_unavailable_and_a_node_pool_at_max_alert_per_policy(
    helm: Path, promtool: Path, tmp_path: Path
) -> None:
    problem = (
        "tidescale_policy_problem{{policy={!r}, condition={!r}, reason={!r}, "
        "job='controller', instance={!r}}}"
    )
    (
        Alerts(rule_groups(helm))
        .given(LEADER, "1x20")
        .given(FORMER, "0x20")
        .given(problem.format("ml/chat", "MetricsAvailable", "MetricsUnavailable", "a"), "1x20")
        .given(problem.format("ml/train", "PodsScheduled", "NodePoolAtMax", "a"), "1x20")
        .given(problem.format("ml/batch", "PodsScheduled", "PodsPending", "a"), "1x20")
        .given(problem.format("ml/old", "MetricsAvailable", "MetricsUnavailable", "b"), "1x20")
        .at(4, "TidescaleMetricsUnavailable")
        .at(6, "TidescaleMetricsUnavailable", ({"policy": "ml/chat"}, ""))
        .at(6, "TidescaleNodePoolAtMax", ({"policy": "ml/train"}, ""))
        .check(promtool, tmp_path)
    )


def test_refused_act_steps_alert_and_conflicts_do_not(helm: Path, promtool: Path, tmp_path: Path) -> None:
    failures = "tidescale_scale_failures_total{{reason={!r}, job='controller', instance='a'}}"
    (
        Alerts(rule_groups(helm))
        .given(failures.format("Permanent"), "0 0 0 1x20")
        .given(failures.format("Conflict"), "0+1x20")
        .at(2, "TidescaleScaleFailing")
        .at(5, "TidescaleScaleFailing", ({"job": "controller", "instance": "a"}, "1"))
        .at(15, "TidescaleScaleFailing")  # no refusal in the last 10 minutes
        .check(promtool, tmp_path)
    )


@pytest.mark.parametrize(
    ("minutes", "before", "after"), [(15, 14, 16), (5, 4, 6)], ids=["default", "5-minutes"]
)
def test_a_gang_waiting_longer_than_the_values_minutes_alerts(
    helm: Path, promtool: Path, tmp_path: Path, minutes: int, before: int, after: int
) -> None:
    since = (
        "tidescale_scheduler_pending_gang_since_seconds"
        "{{podgroup={!r}, queue='research', job='s', instance={!r}}}"
    )
    (
        Alerts(rule_groups(helm, "--set", f"prometheusRule.pendingGangMinutes={minutes}"))
        .given("tidescale_scheduler_leader{job='s', instance='a'}", "1x30")
        .given("tidescale_scheduler_leader{job='s', instance='b'}", "0x30")
        .given(since.format("ml/train", "a"), "0x30")  # waiting since time 0
        .given(since.format("ml/late", "a"), f"{60 * (before - 1)}x30")  # since a minute before `before`
        .given(since.format("ml/old", "b"), "0x30")
        .at(before, "TidescaleGangPending")
        .at(after, "TidescaleGangPending", ({"podgroup": "ml/train", "queue": "research"}, f"{after}m 0s"))
        .check(promtool, tmp_path)
    )


def test_for_minutes_comes_from_the_values(helm: Path, promtool: Path, tmp_path: Path) -> None:
    (
        Alerts(rule_groups(helm, "--set", "prometheusRule.forMinutes=1"))
        .given(LEADER, "1x10")
        .given('tidescale_fallback_active{policy="ml/chat", job="controller", instance="a"}', "1x10")
        .at(2, "TidescalePolicyInFallback", ({"policy": "ml/chat"}, ""))
        .check(promtool, tmp_path)
    )


def test_the_rules_labels_come_from_the_values(helm: Path) -> None:
    docs = render_all(helm, *MONITORED, "--set-json", 'prometheusRule.labels={"release": "kps"}')
    (rule,) = of_kind(docs, "PrometheusRule").values()
    assert rule["metadata"]["labels"]["release"] == "kps"


# --- dashboards --------------------------------------------------------------------------------------------


def test_each_dashboard_is_a_config_map_the_grafana_sidecar_loads(helm: Path) -> None:
    maps = [d for d in render_all(helm) if d["metadata"]["labels"].get(COMPONENT) == "dashboards"]

    assert sorted(name for m in maps for name in m["data"]) == [p.name for p in DASHBOARDS]
    for m in maps:
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m["metadata"]["namespace"] == "ops"
        ((name, text),) = m["data"].items()
        assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())


def test_dashboards_go_where_the_values_say_with_their_labels_and_annotations(helm: Path) -> None:
    options = (
        "--set",
        "dashboards.namespace=monitoring",
        "--set-json",
        'dashboards.labels={"grafana_dashboard": "tidescale"}',
        "--set-json",
        'dashboards.annotations={"grafana_folder": "GPU"}',
    )
    maps = [d for d in render_all(helm, *options) if d["metadata"]["labels"].get(COMPONENT) == "dashboards"]
    assert len(maps) == len(DASHBOARDS)
    for m in maps:
        assert m["metadata"]["namespace"] == "monitoring"
        assert m["metadata"]["labels"]["grafana_dashboard"] == "tidescale"
        assert m["metadata"]["annotations"] == {"grafana_folder": "GPU"}
    assert not [d for d in render_all(helm, "--set", "dashboards.enabled=false") if d["kind"] == "ConfigMap"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_a_dashboard_is_grafana_json_with_a_prometheus_data_source_variable(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["schemaVersion"] >= 39 and board["uid"] == f"tidescale-{path.stem}"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    source = {"type": "prometheus", "uid": "${datasource}"}
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == source and v["allValue"] == ".*", v["name"]
            assert re.fullmatch(r"label_values\(.+, *\w+\)", v["definition"]), v["name"]
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        where = f"{path.name}: {p['title']}"
        assert p["datasource"] == source, where
        assert p["description"], where
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, where
        assert p["targets"] and len({t["refId"] for t in p["targets"]}) == len(p["targets"]), where
        for t in p["targets"]:
            assert t["datasource"] == source and t["expr"].strip(), where
            used = set(re.findall(r"\$\{?(\w+)", t["expr"])) - {"__rate_interval", "1"}
            assert used <= variables.keys(), (where, used)


def the_code_exports() -> set[str]:
    """Every series name the controller, the scheduler and the exporter expose."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    names = {field.name for field in FIELDS}
    for registry in (ControllerMetrics().registry, SchedulerMetrics().registry):
        for family in registry.collect():
            names |= {family.name + s for s in suffixes[family.type]}
    return names


def test_every_series_the_dashboards_and_alerts_read_is_one_the_code_exports(helm: Path) -> None:
    used: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        texts = [t["expr"] for p in board["panels"] for t in p["targets"]]
        texts += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
        for text in texts:
            for name in METRIC.findall(text):
                used.setdefault(name, set()).add(path.name)
    for group in rule_groups(helm):
        for rule in group["rules"]:
            for name in METRIC.findall(rule["expr"]):
                used.setdefault(name, set()).add(rule["alert"])
    exported = the_code_exports()

    assert {"tidescale_reaction_seconds_bucket", "tidescale_scheduler_pending_pods"} <= used.keys()
    assert {name: where for name, where in used.items() if name not in exported} == {}
