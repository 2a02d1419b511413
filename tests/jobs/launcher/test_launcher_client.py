"""The launcher's shell against a recording fake of the API client: the paths it reads, a log streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from jobs.launcher.client import JobNotFound, NoLogs, logs

NS = "ml"


class FakeResponse:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.released = False

    def stream(self, size: int) -> Iterator[bytes]:
        yield from self.chunks

    def release_conn(self) -> None:
        self.released = True


class FakeApi:
    """`ApiClient.call_api` over a dict of path -> JSON; records every call."""

    def __init__(self, objects: dict[str, Any], log: list[bytes]) -> None:
        self.objects = objects
        self.response = FakeResponse(log)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def call_api(self, path: str, method: str, query_params: Any = None, **_: Any) -> Any:
        self.calls.append((method, path, dict(query_params or [])))
        if path.endswith("/log"):
            return self.response
        if path in self.objects:
            return self.objects[path]
        if path.rsplit("/", 1)[-1] in ("jobs", "deployments", "pods", "podgroups", "events"):
            return {"items": []}
        raise ApiException(status=404, reason="Not Found")


def _pod(name: str, index: str, node: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"tidescale.io/role": "worker"},
            "annotations": {"batch.kubernetes.io/job-completion-index": index},
        },
        "spec": {"nodeName": node, "containers": [{"name": "worker"}]},
        "status": {"phase": "Running"},
    }


def an_api(node: dict[str, Any], log: list[bytes]) -> FakeApi:
    root = {
        "metadata": {"name": "tidescale-job-ft", "namespace": NS, "labels": {"tidescale.io/job": "ft"}},
        "data": {"job.json": json.dumps({"kind": "TrainingJob", "spec": {}})},
    }
    return FakeApi(
        {
            f"/api/v1/namespaces/{NS}/configmaps/tidescale-job-ft": root,
            f"/api/v1/namespaces/{NS}/pods": {
                "items": [_pod("ft-1-b", "1", "n1"), _pod("ft-0-a", "0", "n1")]
            },
            "/api/v1/nodes/n1": node,
        },
        log,
    )


REAL_NODE = {"metadata": {"name": "n1"}, "status": {"daemonEndpoints": {"kubeletEndpoint": {"port": 10250}}}}


def test_a_log_is_streamed_line_by_line_across_chunks() -> None:
    api = an_api(REAL_NODE, [b"step 1\nst", b"ep 2\n", b"done"])
    assert list(logs(api, "ft", NS, tail=50)) == ["step 1", "step 2", "done"]
    method, path, query = api.calls[-1]
    assert (method, path, query) == ("GET", f"/api/v1/namespaces/{NS}/pods/ft-0-a/log", {"tailLines": 50})
    assert api.response.released


@pytest.mark.parametrize(
    ("instance", "pod"),
    [
        pytest.param(None, "ft-0-a", id="the first worker by default"),
        pytest.param("1", "ft-1-b", id="an index picks that worker"),
        pytest.param("ft-1-b", "ft-1-b", id="a pod name picks that pod"),
    ],
)
def test_the_instance_picks_the_pod(instance: str | None, pod: str) -> None:
    api = an_api(REAL_NODE, [b"x"])
    list(logs(api, "ft", NS, instance=instance, follow=True))
    _, path, query = api.calls[-1]
    assert path.endswith(f"/pods/{pod}/log") and query == {"follow": "true"}


def test_an_unknown_instance_names_the_pods_there_are() -> None:
    with pytest.raises(JobNotFound, match=r"has no pod 'ft-7' \(its pods: ft-0-a, ft-1-b\)"):
        list(logs(an_api(REAL_NODE, []), "ft", NS, instance="ft-7"))


def test_a_pod_on_a_kwok_node_has_no_logs_and_the_kubelet_is_never_asked() -> None:
    kwok = {"metadata": {"name": "n1", "annotations": {"kwok.x-k8s.io/node": "fake"}}, "status": {}}
    api = an_api(kwok, [b"never"])
    with pytest.raises(NoLogs, match=r"^no logs \(the pod runs on a KWOK node\)"):
        list(logs(api, "ft", NS))
    assert not any(path.endswith("/log") for _, path, _ in api.calls)


def test_logs_of_a_job_that_does_not_exist_say_so() -> None:
    api = FakeApi({}, [])
    with pytest.raises(JobNotFound, match="no job 'ft' in namespace ml"):
        list(logs(api, "ft", NS))
