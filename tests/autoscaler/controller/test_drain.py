"""Draining nodes: which pods are evicted, which are left, how long the drain waits, and how API errors are
sorted into temporary and permanent ones."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autoscaler.controller.pools.drain import NodeDrainer, api_error
from autoscaler.controller.pools.node_manifest import kwok_node
from kernel.errors import Conflict, NotFound, PermanentError, TemporaryError
from tests.waiting import wait_for


@pytest.mark.parametrize(
    ("status", "kind", "sort"),
    [
        (409, Conflict, TemporaryError),
        (429, TemporaryError, TemporaryError),
        (500, TemporaryError, TemporaryError),
        (503, TemporaryError, TemporaryError),
        (403, PermanentError, PermanentError),
        (404, NotFound, PermanentError),
        (422, PermanentError, PermanentError),
    ],
    ids=["conflict", "throttled", "server-error", "unavailable", "forbidden", "not-found", "invalid"],
)
def test_api_errors_are_temporary_or_permanent_by_status(
    status: int, kind: type[Exception], sort: type[Exception]
) -> None:
    error = api_error(ApiException(status=status, reason="Because"), "scale MachineDeployment ns/md")

    assert type(error) is kind and isinstance(error, sort)
    assert str(error).startswith(f"scale MachineDeployment ns/md: HTTP {status}")


def test_a_transport_timeout_is_temporary() -> None:
    timeout = urllib3.exceptions.ReadTimeoutError(None, "/api/v1/nodes", "read timed out")  # type: ignore[arg-type]

    error = api_error(timeout, "list nodes")

    assert isinstance(error, TemporaryError) and "ReadTimeoutError" in str(error)


# --- on the control plane ---------------------------------------------------------------------------------


@pytest.fixture
def node(kube: client.ApiClient) -> Iterator[str]:
    """One Ready KWOK node of its own, deleted afterwards."""
    core = client.CoreV1Api(kube)
    name = f"drain-{uuid.uuid4().hex[:6]}"
    core.create_node(
        kwok_node(name, {"tidescale.io/test": name}, {"cpu": "8", "memory": "64Gi", "pods": 110})
    )
    wait_for(
        lambda: any(
            c.type == "Ready" and c.status == "True" for c in core.read_node(name).status.conditions or ()
        ),
        30,
        f"node {name} Ready",
    )
    yield name
    core.delete_node(name)


def a_pod(name: str, node: str, **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, **metadata},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }


def running(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    return bool(core.read_namespaced_pod(name, namespace).status.phase == "Running")


@pytest.mark.integration
def test_draining_evicts_ordinary_pods_and_leaves_daemonset_and_mirror_pods(
    kube: client.ApiClient, namespace: str, node: str
) -> None:
    core = client.CoreV1Api(kube)
    client.AppsV1Api(kube).create_namespaced_daemon_set(
        namespace,
        {
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {
                        "nodeSelector": {"tidescale.io/test": node},
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [{"name": "a", "image": "agent"}],
                    },
                },
            },
        },
    )
    core.create_namespaced_pod(namespace, a_pod("server", node))
    core.create_namespaced_pod(
        namespace, a_pod("static", node, annotations={"kubernetes.io/config.mirror": "checksum"})
    )
    wait_for(
        lambda: (
            len([p for p in core.list_namespaced_pod(namespace).items if p.status.phase == "Running"]) == 3
        ),
        60,
        "the DaemonSet pod, the server pod and the static pod Running",
    )
    drainer = NodeDrainer(kube, timeout=30)

    drainer.cordon(node)
    result = drainer.drain(node)

    assert result.drained
    assert result.evicted == (f"{namespace}/server",)
    left = sorted(p.metadata.name for p in core.list_namespaced_pod(namespace).items)
    assert len(left) == 2 and "static" in left and any(n.startswith("agent-") for n in left)
    assert core.read_node(node).spec.unschedulable is True


@pytest.mark.integration
def test_a_pod_that_outlives_the_deadline_leaves_the_node_not_drained(
    kube: client.ApiClient, namespace: str, node: str
) -> None:
    core = client.CoreV1Api(kube)
    finalizer = "tidescale.io/hold"
    core.create_namespaced_pod(namespace, a_pod("held", node, finalizers=[finalizer]))
    wait_for(lambda: running(core, namespace, "held"), 30, "pod held Running")
    try:
        result = NodeDrainer(kube, timeout=2).drain(node)

        assert not result.drained
        assert result.remaining == (f"{namespace}/held",)
        assert "still terminating" in result.why_not()
    finally:
        core.patch_namespaced_pod(
            "held",
            namespace,
            {"metadata": {"finalizers": None}},
            _content_type="application/merge-patch+json",
        )


@pytest.mark.integration
def test_uncordoning_clears_the_unschedulable_flag(kube: client.ApiClient, node: str) -> None:
    drainer = NodeDrainer(kube)
    core = client.CoreV1Api(kube)

    drainer.cordon(node)
    assert core.read_node(node).spec.unschedulable is True
    drainer.cordon(node, cordoned=False)

    assert not core.read_node(node).spec.unschedulable


@pytest.mark.integration
def test_cordoning_a_node_that_does_not_exist_is_a_permanent_error(kube: client.ApiClient) -> None:
    with pytest.raises(PermanentError, match="cordon node no-such-node: HTTP 404"):
        NodeDrainer(kube).cordon("no-such-node")
