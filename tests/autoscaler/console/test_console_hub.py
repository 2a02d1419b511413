"""The console's live state and its HTTP routes: events fanned out to stream subscribers as they are emitted,
resumed after a reconnect, rows and charts kept from policies, events and sampled decisions; the page, the
JSON API and the event stream served by the real `HttpEndpoint` on a free loopback port."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from autoscaler.console import model
from autoscaler.console.hub import ConsoleHub
from autoscaler.console.server import ConsoleRoutes
from autoscaler.controller.ports import ActFailure, ScalingEvent
from autoscaler.core.decide import Decision, PolicyState, Text
from autoscaler.core.events import record
from autoscaler.core.triggers import Proposal
from kernel.clock import FakeClock
from kernel.http_endpoint import HttpEndpoint
from tests.autoscaler.autoscaler_builders import NOW


def a_decision(policy: str = "ml/llm", current: int = 1, desired: int = 3, seconds: float = 0) -> Decision:
    proposal = Proposal("gpu", desired, True, "GPU {}% of target 70%", (95,))
    return Decision(
        policy,
        "Deployment/llm",
        NOW + timedelta(seconds=seconds),
        current,
        desired,
        Text("GPU 95% of target 70%: {} → {} replicas", (current, desired)),
        "DesiredWithinRange",
        "gpu",
        (proposal,),
        PolicyState(),
    )


def an_event(d: Decision, failure: ActFailure | None = None) -> ScalingEvent:
    rec = dict(record(d)) | {"acted": failure is None}
    if failure is not None:
        rec["failure"] = {"reason": failure.reason, "kind": failure.kind, "message": failure.message}
    return ScalingEvent(d, rec, failure is None, ("apps/v1", "Deployment", "ml", "llm"), failure=failure)


def frames(data: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for chunk in data:
        text = chunk.decode()
        body = next(line[6:] for line in text.splitlines() if line.startswith("data: "))
        out.append({"event": text.split("event: ")[1].split("\n")[0], **json.loads(body)})
    return out


def test_an_emitted_event_reaches_every_subscriber_at_once_and_updates_the_row_and_chart() -> None:
    hub = ConsoleHub(FakeClock(NOW))
    first, _ = hub.subscribe()
    second, _ = hub.subscribe()
    hub.emit(an_event(a_decision(current=1, desired=3)))
    for sub in (first, second):
        (got,) = frames([sub.frames.get_nowait()])
        assert (got["event"], got["id"], got["policy"], got["way"]) == ("scaling", 1, "ml/llm", "up")
        assert (got["reason"], got["type"], got["current"], got["desired"]) == ("ScaleUp", "Normal", 1, 3)
    (row,) = hub.rows()
    assert (row.current, row.desired, row.rule) == (1, 3, "DesiredWithinRange")
    chart = hub.chart("ml/llm")
    assert chart is not None and [p[1:] for p in chart["points"]] == [[1, 3, 3, None]]


def test_a_failure_is_a_warning_event_and_the_rows_problem() -> None:
    hub = ConsoleHub(FakeClock(NOW))
    sub, _ = hub.subscribe()
    hub.emit(an_event(a_decision(desired=1), ActFailure("ScaleFailed", "403 forbidden", "Permanent")))
    (got,) = frames([sub.frames.get_nowait()])
    assert (got["type"], got["note"]) == ("Warning", "403 forbidden")
    assert hub.rows()[0].problem == "ScaleFailed: 403 forbidden"


def test_a_reconnecting_subscriber_gets_what_it_missed_and_a_new_one_the_recent_events() -> None:
    hub = ConsoleHub(FakeClock(NOW))
    for i in range(60):
        hub.emit(an_event(a_decision(f"ml/p{i}", 1, 2)))
    _, missed = hub.subscribe(after=57)
    assert [f["id"] for f in frames(missed)] == [58, 59, 60]
    _, recent = hub.subscribe()
    assert len(recent) == 50 and frames(recent)[-1]["id"] == 60


def test_a_subscriber_that_does_not_read_loses_its_oldest_frames_and_never_blocks_the_emitter() -> None:
    hub = ConsoleHub(FakeClock(NOW))
    slow, _ = hub.subscribe()
    for i in range(1005):
        hub.emit(an_event(a_decision(f"ml/p{i}", 1, 2)))
    assert slow.dropped == 5 and frames([slow.frames.get_nowait()])[0]["id"] == 6


def test_sampled_decisions_fill_rows_and_charts_once_each_and_are_not_events() -> None:
    hub = ConsoleHub(FakeClock(NOW))
    sub, _ = hub.subscribe()
    d = a_decision(current=2, desired=2)
    assert hub.observe([d, a_decision("ml/other", 1, 1)]) == 2
    assert hub.observe([d]) == 0  # the same decision again: nothing new
    hub.rows_changed.clear()
    assert hub.observe([a_decision(current=2, desired=2, seconds=30)]) == 1
    assert not hub.rows_changed.is_set()  # a later decision that says the same is no news for the page
    assert sub.frames.empty()
    chart = hub.chart("ml/llm")
    assert chart is not None and len(chart["points"]) == 2
    assert {r.key for r in hub.rows()} == {"ml/llm", "ml/other"}


def test_a_deleted_policy_leaves_the_rows_and_closing_ends_every_stream() -> None:
    hub = ConsoleHub(FakeClock(NOW))
    policy = {"metadata": {"name": "llm", "namespace": "ml"}, "spec": {"targetRef": {"name": "llm"}}}
    hub.on_policy("ADDED", policy)
    assert [r.key for r in hub.rows()] == ["ml/llm"] and hub.rows_changed.is_set()
    hub.on_policy("DELETED", policy)
    assert hub.rows() == [] and hub.chart("ml/llm") is None
    sub, _ = hub.subscribe()
    hub.close()
    assert sub.frames.get_nowait() is None and hub.subscribers == 0


class FixedViews:
    """The cluster views as a fixed value; counts reads."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, force: bool = False) -> dict[str, Any]:
        self.reads += 1
        nodes = {"nodes": [], "gpuTotal": 0, "gpuAllocated": 0, "metrics": False, "problems": []}
        return {"nodes": nodes, "jobs": model.jobs([]), "queues": model.queues([], [], []), "problems": []}


@pytest.fixture
def served() -> Iterator[tuple[ConsoleHub, str]]:
    hub = ConsoleHub(FakeClock(NOW))
    routes = ConsoleRoutes(hub, FixedViews())
    endpoint = HttpEndpoint("127.0.0.1", 0, lambda: b"", get=routes.handle).start()
    try:
        yield hub, endpoint.url
    finally:
        hub.close()
        endpoint.stop()


def test_the_page_and_the_api_are_served_small_and_bad_parameters_are_named(
    served: tuple[ConsoleHub, str],
) -> None:
    hub, url = served
    for i in range(1000):
        hub.on_policy("ADDED", {"metadata": {"name": f"svc-{i:04d}", "namespace": "ml"}, "spec": {}})
    page = httpx.get(url + "/", headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-encoding"] == "gzip" and "EventSource" in page.text
    raw = httpx.get(url + "/api/policies?limit=50&sort=recent", headers={"Accept-Encoding": "gzip"})
    body = raw.json()
    assert (body["total"], len(body["items"]), body["summary"]["policies"]) == (1000, 50, 1000)
    assert int(raw.headers["content-length"]) < 8 * 1024  # 50 rows, compressed
    bad = httpx.get(url + "/api/policies?limit=fifty")
    assert bad.status_code == 400 and bad.json()["error"] == "limit: not a whole number: 'fifty'"
    assert httpx.get(url + "/api/policies?sort=size").status_code == 400
    missing = httpx.get(url + "/api/chart?policy=ml/nope")
    assert missing.status_code == 404 and "ml/nope" in missing.json()["error"]
    assert set(httpx.get(url + "/api/cluster").json()) == {"nodes", "jobs", "queues", "problems"}
    assert httpx.get(url + "/api/nodes").json()["gpuTotal"] == 0
    assert httpx.get(url + "/nowhere").status_code == 404
    assert httpx.get(url + "/healthz").text == "ok"
    assert len(gzip.compress(page.content)) < 30 * 1024


def test_the_stream_sends_the_recent_events_then_each_new_one_as_it_is_emitted(
    served: tuple[ConsoleHub, str],
) -> None:
    hub, url = served
    hub.emit(an_event(a_decision("ml/before", 1, 2)))
    got: list[str] = []
    with httpx.stream("GET", url + "/api/events/stream", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        for line in lines:
            got.append(line)
            if line.startswith("data: ") and '"ml/before"' in line:
                break
        hub.emit(an_event(a_decision("ml/after", 2, 4)))
        for line in lines:
            got.append(line)
            if line.startswith("data: ") and '"ml/after"' in line:
                break
    assert "id: 1" in got and "id: 2" in got
    after = json.loads(got[-1][6:])
    assert (after["policy"], after["current"], after["desired"], after["way"]) == ("ml/after", 2, 4, "up")
    with httpx.stream("GET", url + "/api/events/stream", headers={"Last-Event-ID": "1"}, timeout=10) as again:
        first_data = next(line for line in again.iter_lines() if line.startswith("data: "))
    assert json.loads(first_data[6:])["id"] == 2


class ForbiddenJobs:
    """The generated API client's `call_api`, answering lists from fixed objects and refusing ConfigMaps (the
    launcher's jobs) with 403, as an RBAC without them does; records the paths asked."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = objects
        self.paths: list[str] = []

    def call_api(self, path: str, method: str, **_: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        self.paths.append(path)
        if path.endswith("/configmaps"):
            raise ApiException(status=403, reason="Forbidden")
        return {"items": self.objects.get(path.rsplit("/", 1)[1], [])}


def test_a_view_the_cluster_refuses_costs_only_itself_and_says_why() -> None:
    from autoscaler.console.server import ClusterReader

    node = {
        "metadata": {"name": "n0", "labels": {"nvidia.com/gpu.product": "NVIDIA-L40S"}},
        "status": {
            "allocatable": {"nvidia.com/gpu": "2"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    api = ForbiddenJobs({"nodes": [node]})
    reader = ClusterReader(api, clock=FakeClock(NOW), ttl=5.0)
    views_ = reader.read()
    assert [n["name"] for n in views_["nodes"]["nodes"]] == ["n0"] and views_["nodes"]["gpuTotal"] == 2
    assert views_["jobs"]["jobs"] == [] and views_["problems"] == [
        "cannot read the launcher's jobs: 403 Forbidden"
    ]
    asked = len(api.paths)
    reader.read()  # within its ttl: the views it has
    assert len(api.paths) == asked and reader.reads == 1
