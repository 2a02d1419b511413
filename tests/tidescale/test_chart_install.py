"""The chart installed for real, and its least privilege proven rather than claimed.

`helm install` on the local control plane (after the Prometheus Operator's CRDs from ../shared/crds) creates
the CRDs, the controller's and the scheduler's Deployments, Services, ServiceMonitors, the PrometheusRule and
the dashboards' ConfigMaps. KWOK runs no containers, so the chart's own pods do nothing: the controller and
the scheduler run here as local processes (`tidescale controller run`, `tidescale scheduler run`) with tokens
of the chart's ServiceAccounts (TokenRequest), through a scenario each — the controller reconciles a policy,
scales through /scale, tells Events, writes status and holds its Lease; the scheduler binds a gang, tells
Events and writes PodGroup and Queue status — and the API server refuses none of their requests
(`authorization_attempts_total`), their logs hold no "forbidden", and a verb the chart does not grant is
refused for those tokens. With Prometheus scraping both processes (and the simulated exporter following the
cluster), every panel query of the installed dashboards returns data and every alert of the installed
PrometheusRule evaluates.

One release, one controller and one scheduler serve the module; each test reads what they did.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from autoscaler.core.nodepool import POOL_LABEL
from kernel.kubeclient import api_client
from tests.cluster_harness import SHARED_CRDS, VOLCANO
from tests.kube_objects import a_deployment, a_kwok_node_pool
from tests.waiting import new_namespace, wait_for
from tidescale.local import crds, environment, nodes, prometheus
from tidescale.local.process import Spawned, spawn, stop, wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "tidescale"
MONITORING_CRDS = [
    SHARED_CRDS / "monitoring.coreos.com_servicemonitors.yaml",
    SHARED_CRDS / "monitoring.coreos.com_prometheusrules.yaml",
]
TIDESCALE = ("tidescale.io", "v1alpha1")
MONITORING = ("monitoring.coreos.com", "v1")
# What a Grafana panel's query holds besides PromQL, as the dashboards are evaluated here: the rate window
# Grafana computes (four 1 s scrapes and more), and every template variable at its "All" value.
RATE_INTERVAL = "1m"
ALL = ".*"


@dataclass
class Release:
    """The installed release, an admin client, and the requests the tests meant to be refused."""

    name: str
    namespace: str
    scheduler_name: str
    api: Any
    kubeconfig: str
    refused_on_purpose: list[int] = field(default_factory=list)

    @property
    def fullname(self) -> str:
        return f"{self.name}-tidescale"


@dataclass
class Run:
    """A process of the chart's run here with its ServiceAccount's token, and its scenario's namespace."""

    process: Spawned
    url: str
    namespace: str
    identity: str

    def forbidden_lines(self) -> list[str]:
        text = self.process.log_file.read_text(errors="replace")
        return [line for line in text.splitlines() if "forbidden" in line.lower()]


ATTEMPT = re.compile(r'^authorization_attempts_total\{result="([^"]*)"\} (\S+)$', re.M)


def refusals(api: Any) -> int:
    """Requests the API server has refused so far, whoever sent them: its authorizer's decisions other than
    allowed (RBAC answers no-opinion to what no rule grants, and no authorizer left means 403)."""
    response = api.call_api("/metrics", "GET", _preload_content=False, _return_http_data_only=True)
    attempts = ATTEMPT.findall(response.data.decode())
    assert attempts, "the API server exports no authorization_attempts_total: refusals cannot be counted"
    return int(sum(float(count) for result, count in attempts if result != "allowed"))


# --- the release -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(cluster: environment.Environment) -> environment.Environment:
    """The session's control plane with the exporter and Prometheus (Kafka is not needed here)."""
    return environment.up(["kubernetes", "exporter", "prometheus"], cluster.state_dir)


def unless_missing(call: Callable[[], Any]) -> None:
    """A clean-up call; the object it removes may never have been made."""
    try:
        call()
    except ApiException as exc:
        if exc.status != 404:
            raise


def _gone(api: Any, names: list[str]) -> bool:
    extensions = client.ApiextensionsV1Api(api)
    for name in names:
        try:
            extensions.read_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise
        return False
    return True


def _delete_crds(api: Any, names: list[str]) -> None:
    extensions = client.ApiextensionsV1Api(api)
    for name in names:
        try:
            extensions.delete_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    wait_for(lambda: _gone(api, names), 120, f"CRDs {', '.join(names)} deleted")


def _restore_crds(env: environment.Environment, api: Any, names: list[str]) -> None:
    """tidescale's CRDs as the harness installs them, once no deletion of them is in progress."""
    extensions = client.ApiextensionsV1Api(api)

    def settled() -> bool:
        for name in names:
            try:
                if extensions.read_custom_resource_definition(name).metadata.deletion_timestamp:
                    return False
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return True

    wait_for(settled, 120, f"CRDs {', '.join(names)} deleted or kept")
    crds.install(env.kubeconfig, crds.tidescale_crds())


@pytest.fixture(scope="module")
def release(
    env: environment.Environment, helm: Path, volcano_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    api = config.new_client_from_config(config_file=env.kubeconfig)
    crds.install(env.kubeconfig, MONITORING_CRDS)
    # the harness created tidescale's CRDs with the control plane: deleted, `helm install` creates them
    # as on a fresh cluster (and whatever happens, the session has them again at the end)
    ours = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in crds.tidescale_crds()]
    suffix = uuid.uuid4().hex[:6]
    rel = Release(f"ts{suffix}", f"tidescale-{suffix}", f"chart-{suffix}", api, env.kubeconfig)
    home = tmp_path_factory.mktemp("helm")
    helm_env = os.environ | {f"HELM_{d}_HOME": str(home / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}

    def run_helm(*arguments: str) -> subprocess.CompletedProcess[str]:
        argv = [str(helm), *arguments, "--kubeconfig", env.kubeconfig, "--namespace", rel.namespace]
        return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=helm_env, check=False)

    try:
        _delete_crds(api, ours)
        installed = run_helm(
            "install",
            rel.name,
            str(CHART),
            "--create-namespace",
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            f"scheduler.schedulerName={rel.scheduler_name}",
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
        yield rel
    finally:
        run_helm("uninstall", rel.name, "--wait", "--timeout", "60s")
        # no namespace when the install failed: that failure is the error to see
        unless_missing(lambda: client.CoreV1Api(api).delete_namespace(rel.namespace))
        _restore_crds(env, api, ours)


@pytest.fixture(scope="module")
def kubeconfigs(release: Release, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A kubeconfig per component that authenticates as the ServiceAccount its Deployment names, with a token
    from the TokenRequest API (as the kubelet mounts one into the pod)."""
    admin = yaml.safe_load(Path(release.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    apps, core = client.AppsV1Api(release.api), client.CoreV1Api(release.api)
    out = {}
    folder = tmp_path_factory.mktemp("tokens")
    for component, deployment in (
        ("controller", f"{release.fullname}-controller"),
        ("scheduler", f"{release.fullname}-scheduler"),
    ):
        account = apps.read_namespaced_deployment(deployment, release.namespace).spec.template.spec
        name = account.service_account_name
        token = core.create_namespaced_service_account_token(
            name, release.namespace, {"spec": {"expirationSeconds": 3600}}
        ).status.token
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}],
            "current-context": name,
        }
        path = folder / f"{component}.kubeconfig"
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        out[component] = path
    return out


@pytest.fixture(scope="module")
def before(release: Release) -> int:
    """The API server's refusals before either process starts."""
    return refusals(release.api)


def start(
    component: str, arguments: list[str], folder: Path, env: environment.Environment
) -> tuple[Spawned, str]:
    """`tidescale COMPONENT run ARGUMENTS…` as a process of its own, logging at INFO; once it serves,
    Prometheus scrapes its /metrics."""
    ready = folder / "ready.json"
    argv = [sys.executable, "-m", "tidescale", component, "run", *arguments]
    process = spawn(
        component, [*argv, "--ready-file", str(ready), "--log-level", "INFO"], folder / "log", cwd=REPO
    )
    try:
        wait_until(process, ready.exists, 60, "serving")
    except BaseException:
        stop(process.pid, component)
        raise
    url = str(json.loads(ready.read_text())["url"])
    target = prometheus.ScrapeTarget(f"tidescale-{component}", url.removeprefix("http://"))
    prometheus.add_scrape_target(env.state_dir, env.prometheus_url, target)
    return process, url


@pytest.fixture(scope="module")
def controller(
    env: environment.Environment,
    release: Release,
    kubeconfigs: dict[str, Path],
    before: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    """The controller with the chart's token and its flags, and its scenario: `web` scaled 1 → 3 by a
    Prometheus trigger; `chat`, whose query Prometheus rejects, at its fallback with MetricsUnavailable;
    `trainer`, whose GPU pod fits no node, given a node by its KWOK NodePool."""
    apps, core = client.AppsV1Api(release.api), client.CoreV1Api(release.api)
    custom = client.CustomObjectsApi(release.api)
    namespace = new_namespace(core, "chart-app")
    identity = f"controller-{uuid.uuid4().hex[:6]}"
    pool = f"{release.name}-pool"
    process: Spawned | None = None
    try:
        custom.create_cluster_custom_object(*TIDESCALE, "nodepools", a_kwok_node_pool(pool))
        for name in ("web", "chat"):
            apps.create_namespaced_deployment(namespace, a_deployment(name))
        trainer = a_deployment("trainer", gpus=4, node_selector={POOL_LABEL: pool})
        apps.create_namespaced_deployment(namespace, trainer)
        fallback = {"fallback": {"failureThreshold": 1, "replicas": 2}}
        gpus = {"nodePool": pool, "podRequests": {"nvidia.com/gpu": 4, "cpu": "8", "memory": "64Gi"}}
        policies = {
            "web": ({"query": "vector(300)", "target": 100}, fallback),
            "chat": ({"query": "rate(tidescale_no_such_series[1m]", "target": 1}, fallback),  # refused
            "trainer": ({"query": "vector(1)", "target": 1}, gpus),
        }
        for name, (trigger, extra) in policies.items():
            spec = {
                "targetRef": {"kind": "Deployment", "name": name},
                "minReplicas": 1,
                "maxReplicas": 5,
                "triggers": [{"type": "Prometheus", "name": "q", "pollSeconds": 1, **trigger}],
                **extra,
            }
            body = {
                "apiVersion": "tidescale.io/v1alpha1",
                "kind": "ScalingPolicy",
                "metadata": {"name": name},
            }
            custom.create_namespaced_custom_object(
                *TIDESCALE, namespace, "scalingpolicies", body | {"spec": spec}
            )
        # as the chart's Deployment runs it (templates/deployment.yaml), but on loopback and without Kafka
        process, url = start(
            "controller",
            [
                f"--kubeconfig={kubeconfigs['controller']}",
                f"--prometheus-url={env.prometheus_url}",
                "--events-topic=",
                "--leader-elect",
                f"--lease-namespace={release.namespace}",
                f"--lease-name={release.fullname}-controller",
                f"--identity={identity}",
                "--prometheus-scrape-seconds=1",
            ],
            tmp_path_factory.mktemp("controller"),
            env,
        )
        yield Run(process, url, namespace, identity)
    finally:
        if process is not None:
            stop(process.pid, "controller")
        prometheus.remove_scrape_target(env.state_dir, env.prometheus_url, "tidescale-controller")
        core.delete_namespace(namespace)
        unless_missing(lambda: custom.delete_cluster_custom_object(*TIDESCALE, "nodepools", pool))
        for node in core.list_node(label_selector=f"{POOL_LABEL}={pool}").items:
            core.delete_node(node.metadata.name)


def a_pod(name: str, scheduler: str, group: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"scheduling.k8s.io/group-name": group}},
        "spec": {
            "schedulerName": scheduler,
            "containers": [
                {
                    "name": "main",
                    "image": "trainer:1",
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def scheduler(
    env: environment.Environment,
    release: Release,
    kubeconfigs: dict[str, Path],
    before: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    """The scheduler with the chart's token and its flags (its nodes: a KWOK GPU pool of its own), and its
    scenario: gang `train` (2 pods) bound, gang `waiting` (1 of its 3 pods) held, both in a Volcano Queue."""
    core, custom = client.CoreV1Api(release.api), client.CustomObjectsApi(release.api)
    folder = tmp_path_factory.mktemp("scheduler")
    pool = f"{release.scheduler_name}-gpu"
    added = nodes.add(release.kubeconfig, nodes.gpu_pool(2, pool))
    namespace = new_namespace(core, "chart-jobs")
    queue = f"{release.scheduler_name}-research"
    identity = f"scheduler-{uuid.uuid4().hex[:6]}"
    process: Spawned | None = None
    try:
        custom.create_cluster_custom_object(
            *VOLCANO,
            "queues",
            {
                "apiVersion": "scheduling.volcano.sh/v1beta1",
                "kind": "Queue",
                "metadata": {"name": queue},
                "spec": {"weight": 1},
            },
        )
        for group, size, pods in (("train", 2, 2), ("waiting", 3, 1)):
            body = {
                "apiVersion": "scheduling.volcano.sh/v1beta1",
                "kind": "PodGroup",
                "metadata": {"name": group},
                "spec": {"minMember": size, "queue": queue},
            }
            custom.create_namespaced_custom_object(*VOLCANO, namespace, "podgroups", body)
            for i in range(pods):
                core.create_namespaced_pod(namespace, a_pod(f"{group}-{i}", release.scheduler_name, group))
        settings = folder / "config.yaml"
        settings.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "tidescale.io/v1alpha1",
                    "kind": "SchedulerConfig",
                    "schedulerName": release.scheduler_name,
                    "nodeSelector": {POOL_LABEL: pool},
                }
            )
        )
        # as the chart's Deployment runs it (templates/scheduler-deployment.yaml), but on loopback
        process, url = start(
            "scheduler",
            [
                f"--kubeconfig={kubeconfigs['scheduler']}",
                f"--config={settings}",
                "--leader-elect",
                f"--lease-namespace={release.namespace}",
                f"--identity={identity}",
            ],
            folder,
            env,
        )
        yield Run(process, url, namespace, identity)
    finally:
        if process is not None:
            stop(process.pid, "scheduler")
        prometheus.remove_scrape_target(env.state_dir, env.prometheus_url, "tidescale-scheduler")
        core.delete_namespace(namespace)
        unless_missing(lambda: custom.delete_cluster_custom_object(*VOLCANO, "queues", queue))
        nodes.delete(release.kubeconfig, added)


# --- what `helm install` created ---------------------------------------------------------------------------


def test_helm_install_creates_the_crds_workloads_services_monitors_alerts_and_dashboards(
    release: Release,
) -> None:
    ns, full = release.namespace, release.fullname
    extensions = client.ApiextensionsV1Api(release.api)
    apps, core = client.AppsV1Api(release.api), client.CoreV1Api(release.api)
    custom, rbac = client.CustomObjectsApi(release.api), client.RbacAuthorizationV1Api(release.api)

    for crd in ("scalingpolicies.tidescale.io", "nodepools.tidescale.io"):
        conditions = {
            c.type: c.status for c in extensions.read_custom_resource_definition(crd).status.conditions
        }
        assert conditions.get("Established") == "True", (crd, conditions)
    assert {d.metadata.name for d in apps.list_namespaced_deployment(ns).items} == {
        f"{full}-controller",
        f"{full}-scheduler",
    }
    services = {
        s.metadata.name: {p.name for p in s.spec.ports} for s in core.list_namespaced_service(ns).items
    }
    assert services == {f"{full}-controller": {"webhook", "metrics"}, f"{full}-scheduler": {"metrics"}}
    monitors = custom.list_namespaced_custom_object(*MONITORING, ns, "servicemonitors")["items"]
    assert sorted(m["metadata"]["name"] for m in monitors) == [f"{full}-controller", f"{full}-scheduler"]
    (rule,) = custom.list_namespaced_custom_object(*MONITORING, ns, "prometheusrules")["items"]
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"TidescalePolicyInFallback", "TidescaleMetricsUnavailable", "TidescaleGangPending"} <= alerts
    assert "TidescaleNodePoolAtMax" in alerts
    dashboards = core.list_namespaced_config_map(ns, label_selector="grafana_dashboard=1").items
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(name for d in dashboards for name in d.data) == files
    for d in dashboards:
        for name, text in d.data.items():
            assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())
    accounts = {a.metadata.name for a in core.list_namespaced_service_account(ns).items}
    assert {full, f"{full}-scheduler"} <= accounts
    assert {f"{full}-controller", f"{full}-scheduler"} <= {
        r.metadata.name
        for r in rbac.list_cluster_role(label_selector=f"app.kubernetes.io/instance={release.name}").items
    }


# --- the controller and the scheduler with the chart's tokens ----------------------------------------------


def events_about(api: Any, namespace: str, name: str, reporter: str) -> list[dict[str, Any]]:
    """events.k8s.io Events about `name` that `reporter` wrote (raw: core Events have no eventTime)."""
    response = client.EventsV1Api(api).list_namespaced_event(namespace, _preload_content=False)
    items = json.loads(response.data)["items"]
    return [
        e
        for e in items
        if (e.get("regarding") or {}).get("name") == name and e.get("reportingController") == reporter
    ]


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def lease_holder(api: Any, namespace: str, name: str) -> str:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


def test_the_controller_with_the_charts_token_scales_tells_writes_status_and_leads(
    controller: Run, release: Release
) -> None:
    api, ns = release.api, controller.namespace
    apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)

    def policy(name: str) -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object(*TIDESCALE, ns, "scalingpolicies", name))

    def replicas(name: str) -> int:
        return int(apps.read_namespaced_deployment(name, ns).spec.replicas)

    # its Lease, in the release namespace, named as the chart's Role allows
    wait_for(
        lambda: lease_holder(api, release.namespace, f"{release.fullname}-controller") == controller.identity,
        30,
        "the controller holding its Lease",
    )
    # reconciled and scaled through /scale, with its status written
    wait_for(lambda: replicas("web") == 3, 60, "web scaled 1 → 3 through /scale")
    status = wait_for(
        lambda: (s := policy("web").get("status") or {}).get("desiredReplicas") == 3 and s, 30, "web's status"
    )
    assert status["lastScaleTime"]
    assert condition(policy("web"), "Ready")["status"] == "True"
    # the Event names the Deployment by its uid (read with the chart's `get deployments`)
    (scaled, *_) = wait_for(
        lambda: events_about(api, ns, "web", "tidescale.io/controller"), 30, "a scaling Event on web"
    )
    assert "1 → 3" in scaled["note"] and scaled["regarding"].get("uid"), scaled["regarding"]
    # a query Prometheus refuses: the fallback replicas, MetricsAvailable=False, a Warning Event on the policy
    wait_for(lambda: replicas("chat") == 2, 60, "chat at its fallback replicas")
    unavailable = wait_for(
        lambda: (c := condition(policy("chat"), "MetricsAvailable")).get("status") == "False" and c,
        30,
        "chat's MetricsAvailable=False",
    )
    assert unavailable["reason"] == "MetricsUnavailable"
    told = wait_for(
        lambda: events_about(api, ns, "chat", "tidescale.io/controller"), 30, "an Event on the chat policy"
    )
    assert {"MetricsUnavailable"} <= {e["reason"] for e in told}
    # a GPU pod no node fits: the policy's KWOK NodePool gets a node (created with the chart's token)
    pool = f"{release.name}-pool"
    core = client.CoreV1Api(api)
    added = wait_for(
        lambda: core.list_node(label_selector=f"{POOL_LABEL}={pool}").items, 60, f"a node in NodePool {pool}"
    )
    assert all(n.status.capacity["nvidia.com/gpu"] == "4" for n in added)
    wait_for(
        lambda: [
            p
            for p in core.list_namespaced_pod(ns, label_selector="app=trainer").items
            if p.status.phase == "Running"
        ],
        60,
        "the trainer pod running on the pool's node",
    )
    assert controller.forbidden_lines() == []


def test_the_scheduler_with_the_charts_token_binds_a_gang_tells_and_writes_status(
    scheduler: Run, release: Release
) -> None:
    api, ns = release.api, scheduler.namespace
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)

    wait_for(
        lambda: (
            lease_holder(api, release.namespace, f"{release.scheduler_name}-scheduler") == scheduler.identity
        ),
        30,
        "the scheduler holding its Lease",
    )

    def bound() -> dict[str, str]:
        return {
            p.metadata.name: p.spec.node_name for p in core.list_namespaced_pod(ns).items if p.spec.node_name
        }

    placed = wait_for(lambda: len(bound()) == 2 and bound(), 60, "gang train's two pods bound")
    assert sorted(placed) == ["train-0", "train-1"]
    assert all(node.startswith(f"{release.scheduler_name}-gpu") for node in placed.values())

    def group_status(name: str) -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object(*VOLCANO, ns, "podgroups", name).get("status") or {})

    wait_for(lambda: group_status("train").get("phase") == "Running", 30, "PodGroup train Running")
    wait_for(
        lambda: all(
            "Scheduled" in {e["reason"] for e in events_about(api, ns, pod, "tidescale.io/scheduler")}
            for pod in ("train-0", "train-1")
        ),
        30,
        "a Scheduled Event on each pod of train",
    )
    # the gang still missing pods: its pod's PodScheduled=False, its PodGroup's status, its Queue's
    waiting = wait_for(
        lambda: next(
            (
                c
                for c in core.read_namespaced_pod("waiting-0", ns).status.conditions or []
                if c.type == "PodScheduled"
            ),
            None,
        ),
        30,
        "waiting-0's PodScheduled condition",
    )
    assert waiting.status == "False" and "1/3 pods" in waiting.message
    assert (
        wait_for(lambda: group_status("waiting").get("phase"), 30, "PodGroup waiting's status") == "Pending"
    )
    queue = f"{release.scheduler_name}-research"
    wait_for(
        lambda: custom.get_cluster_custom_object(*VOLCANO, "queues", queue).get("status"),
        30,
        "the Queue's status",
    )
    assert scheduler.forbidden_lines() == []


def test_the_api_server_refused_no_request_of_either(
    controller: Run, scheduler: Run, release: Release, before: int
) -> None:
    # what the tests above waited for has happened; and whatever the other tests refused on purpose
    wait_for(lambda: bound_pods(release.api, scheduler.namespace) == 2, 60, "the scheduler's scenario")
    wait_for(
        lambda: (
            client.AppsV1Api(release.api)
            .read_namespaced_deployment("web", controller.namespace)
            .spec.replicas
            == 3
        ),
        60,
        "the controller's scenario",
    )
    refused = refusals(release.api) - before - sum(release.refused_on_purpose)
    assert refused == 0, (
        f"the API server refused {refused} requests while the controller and the scheduler ran with the "
        f"chart's tokens; their logs: {controller.process.log_file}, {scheduler.process.log_file}"
    )
    assert controller.forbidden_lines() == [] and scheduler.forbidden_lines() == []


def bound_pods(api: Any, namespace: str) -> int:
    return sum(1 for p in client.CoreV1Api(api).list_namespaced_pod(namespace).items if p.spec.node_name)


def as_account(path: Path) -> Any:
    """A client as the processes make theirs (it sends the token)."""
    return api_client(str(path))


def status_of(call: Callable[[], Any]) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_a_verb_the_chart_does_not_grant_is_refused_for_its_tokens(
    release: Release, kubeconfigs: dict[str, Path], before: int
) -> None:
    # `before` is taken first, so that these refusals fall after it and are subtracted from the count there
    controller, scheduler = as_account(kubeconfigs["controller"]), as_account(kubeconfigs["scheduler"])
    ns = release.namespace
    node = {"metadata": {"name": f"{release.name}-forbidden"}}
    refused: dict[str, Callable[[], Any]] = {
        "controller: list secrets": lambda: client.CoreV1Api(controller).list_secret_for_all_namespaces(),
        "controller: patch a Deployment (not /scale)": lambda: client.AppsV1Api(
            controller
        ).patch_namespaced_deployment(
            f"{release.fullname}-controller", ns, {"metadata": {"labels": {"x": "y"}}}
        ),
        "controller: read another Lease": lambda: client.CoordinationV1Api(controller).read_namespaced_lease(
            f"{release.scheduler_name}-scheduler", ns
        ),
        "scheduler: list secrets": lambda: client.CoreV1Api(scheduler).list_secret_for_all_namespaces(),
        "scheduler: create a node": lambda: client.CoreV1Api(scheduler).create_node(node),
        "scheduler: delete a node": lambda: client.CoreV1Api(scheduler).delete_node(node["metadata"]["name"]),
        "scheduler: delete a pod": lambda: client.CoreV1Api(scheduler).delete_namespaced_pod("any", ns),
    }
    granted: dict[str, Callable[[], Any]] = {
        "controller: list nodes": lambda: client.CoreV1Api(controller).list_node(limit=1),
        "scheduler: list pods": lambda: client.CoreV1Api(scheduler).list_pod_for_all_namespaces(limit=1),
    }
    start = refusals(release.api)
    answers = {what: status_of(call) for what, call in refused.items()}
    counted = refusals(release.api) - start
    release.refused_on_purpose.append(counted)

    assert answers == dict.fromkeys(refused, 403)
    assert counted == len(refused)  # the API server counts each refusal: the check above is not blind
    assert {what: status_of(call) for what, call in granted.items()} == dict.fromkeys(granted, 200)


# --- the installed dashboards and alerts against Prometheus ------------------------------------------------


def promql(url: str, expr: str) -> tuple[list[dict[str, Any]], str]:
    """An instant query's result, or "" and the error Prometheus gave."""
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        return [], f"{body.get('errorType')}: {body.get('error')}"
    return list(body["data"]["result"]), ""


def concrete(expr: str, variables: list[str]) -> str:
    """A panel's query as Grafana sends it with every variable at All."""
    out = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name in sorted(variables, key=len, reverse=True):
        out = out.replace(f"${{{name}}}", ALL).replace(f"${name}", ALL)
    assert not re.search(r"\$\{|\$[A-Za-z_]", out), f"an unknown variable in {expr!r}"
    return out


def dashboard_queries(release: Release) -> list[tuple[str, str, str]]:
    """(dashboard, panel, query) of every panel target and variable of the installed dashboards."""
    maps = client.CoreV1Api(release.api).list_namespaced_config_map(
        release.namespace, label_selector="grafana_dashboard=1"
    )
    out = []
    for item in maps.items:
        for text in item.data.values():
            board = json.loads(text)
            variables = [v for v in board["templating"]["list"] if v["type"] == "query"]
            names = [v["name"] for v in board["templating"]["list"]]
            for v in variables:
                m = re.fullmatch(r"label_values\((.+), *(\w+)\)", v["definition"])
                assert m, (board["title"], v["name"], v["definition"])
                out.append((board["title"], f"variable {v['name']}", f"count by ({m[2]}) ({m[1]})"))
            for panel in board["panels"]:
                for target in panel["targets"]:
                    out.append((board["title"], panel["title"], concrete(target["expr"], names)))
    return out


def test_every_panel_of_the_installed_dashboards_returns_data(
    env: environment.Environment, controller: Run, scheduler: Run, release: Release
) -> None:
    queries = dashboard_queries(release)
    assert len({d for d, _, _ in queries}) == 4

    def failing() -> list[str]:
        out = []
        for board, panel, expr in queries:
            result, error = promql(env.prometheus_url, expr)
            if error or not result:
                out.append(f"{board} / {panel}: {expr}: {error or 'no data'}")
        return out

    # the scenarios' series reach Prometheus within a few scrapes; then every panel must have data
    try:
        wait_for(lambda: not failing(), 90, "every panel query to return data", interval=2)
    except AssertionError:
        raise AssertionError("\n".join(failing())) from None


def test_every_alert_of_the_installed_rule_evaluates(
    env: environment.Environment, controller: Run, scheduler: Run, release: Release
) -> None:
    custom = client.CustomObjectsApi(release.api)
    rule = custom.get_namespaced_custom_object(
        *MONITORING, release.namespace, "prometheusrules", release.fullname
    )
    errors = {}
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            _, error = promql(env.prometheus_url, r["expr"])
            if error:
                errors[r["alert"]] = error
    assert errors == {}
    # the scenario's broken query holds `chat` MetricsUnavailable and in fallback: those alerts' expressions
    # see it
    for alert in ("TidescaleMetricsUnavailable", "TidescalePolicyInFallback"):
        (expr,) = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == alert]
        found = wait_for(
            lambda e=expr: promql(env.prometheus_url, e)[0], 60, f"{alert}'s expression to match"
        )
        assert [s["metric"]["policy"] for s in found] == [f"{controller.namespace}/chat"], alert
