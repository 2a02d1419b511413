"""The web console in a real headless Chromium (Debian's `chromium`, driven by Selenium through Debian's
`chromedriver`), served by the controller the controller's end-to-end tests run on the real local environment
(their `e2e` fixture: kube-apiserver with KWOK GPU nodes, Kafka, the simulated DCGM exporter, Prometheus).

- A scale-up decided by the controller appears in the open page, pushed over its event stream, without a
  reload, and within 2 s of the decision (the event's own time against the time the page showed it).
- The GPU node view shows what `tidescale top node -d` prints for the same nodes, cell for cell.
- `tidescale console` on its own (no controller connection) streams the same decisions, read back from the
  Kubernetes Events the controller writes.

With `TIDESCALE_SCREENSHOTS=DIR` (e.g. `docs`) the tests save what the browser shows as DIR/console-*.png.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from autoscaler.console.server import Standalone
from autoscaler.controller.pools.node_manifest import kwok_node
from tests.autoscaler.controller.test_controller_e2e import E2E, e2e, ns  # the e2e module's fixtures
from tests.cluster_harness import PARTITION, Harness
from tests.waiting import wait_for
from tidescale.bench.console import Browser, browser_available, floor_patch, floor_policy, latency_seconds
from tidescale.cli import main
from tidescale.local import exporter as local_exporter
from tidescale.local import nodes as local_nodes

pytestmark = pytest.mark.integration

__all__ = ["e2e", "ns"]  # used as fixtures here

L40S = {"nvidia.com/gpu.product": "NVIDIA-L40S", "nvidia.com/gpu.memory": "46068"}


def screenshots() -> Path | None:
    where = os.environ.get("TIDESCALE_SCREENSHOTS")
    return Path(where) if where else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    missing = browser_available()
    if missing is not None and os.environ.get("TIDESCALE_SKIP_CHROMIUM") == "1":
        pytest.skip(missing)
    b = Browser()
    try:
        yield b
    finally:
        b.close()


def test_a_scale_up_appears_in_the_open_page_within_2_s_of_the_decision_without_a_reload(
    e2e: E2E, ns: str, browser: Browser
) -> None:
    e2e.create_deployment(ns, "web", replicas=1, gpus=0)
    e2e.create_policy(ns, "web", floor_policy("web", ns)["spec"])
    wait_for(lambda: e2e.condition(ns, "web", "Ready"), 30, "the policy's Ready condition")
    browser.open(e2e.running.http.url + "/?q=" + ns)
    browser.wait_ready()
    e2e.custom.patch_namespaced_custom_object(
        "tidescale.io", "v1alpha1", ns, "scalingpolicies", "web", floor_patch(3)
    )
    shown = wait_for(
        lambda: next((e for e in browser.shown() if e["policy"] == f"{ns}/web" and e["way"] == "up"), None),
        30,
        "the scale-up in the page",
    )
    assert (shown["current"], shown["desired"]) == (1, 3)
    assert e2e.replicas(ns, "web") == 3
    # the same page, never reloaded: the marker set when it was opened is still there
    assert browser.loads() == 1
    text = browser.js(
        "return document.querySelector(`#evlist li[data-policy='${arguments[0]}']`).textContent", f"{ns}/web"
    )
    assert "1 → 3" in text and "ScaleUp" in text and "Deployment/web" in text
    # from the decision (the event's own time) to the frame that showed it
    assert latency_seconds(shown) <= 2.0, shown
    # a second decision: the policy's row and its chart follow, still without a reload
    e2e.custom.patch_namespaced_custom_object(
        "tidescale.io", "v1alpha1", ns, "scalingpolicies", "web", floor_patch(5)
    )
    wait_for(
        lambda: any(e["policy"] == f"{ns}/web" and e["desired"] == 5 for e in browser.shown()),
        30,
        "the second scale-up in the page",
    )
    row = f"#prows tr[data-key='{ns}/web']"
    desired = browser.js(f'return document.querySelector("{row}").children[3].textContent')
    assert desired == "5" and browser.loads() == 1
    # the desired replicas' line: from 3 (the first decision) a step up to 5 (the second)
    wait_for(
        lambda: (
            "V" in (browser.js("return document.querySelector('#svg path[d^=M]')?.getAttribute('d')") or "")
        ),
        10,
        "the chart's step from 3 to 5 desired replicas",
    )
    if screenshots() is not None:
        browser.screenshot(screenshots() / "console-overview.png", full=True)


def gpu_node(h: Harness, gpus: int = 4) -> str:
    """A KWOK node with `gpus` L40S (GPU feature discovery's labels) only this test's scheduler selects."""
    name = f"{h.ns}-g{len(h.nodes)}"
    labels = {PARTITION: h.ns, "tidescale.io/test-node": name, **L40S}
    capacity = {"cpu": "32", "memory": "128Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    h.core.create_node(kwok_node(name, labels, capacity))
    h.nodes.append(name)
    local_nodes.wait_ready(h.kubeconfig, [name], 60)
    return name


def cells(line: str) -> list[str]:
    """A row of `top`'s tables: columns padded and three spaces apart."""
    return re.split(r"\s{3,}", line.strip())


def top_node_tables(text: str) -> dict[str, list[list[str]]]:
    """`top node -d`'s output as {"nodes": rows, NODE: its GPU rows}, headers included."""
    blocks = text.split("\n\n")
    out = {"nodes": [cells(line) for line in blocks[0].splitlines()]}
    for block in blocks[1:]:
        lines = [line for line in block.splitlines() if line and not line.startswith("-" * 10)]
        node = re.match(r"Node (\S+) \(", lines[0])
        assert node is not None, lines[0]
        out[node.group(1)] = [
            cells(line) for line in lines[1:] if not line.startswith(("Unassigned", "Allocated"))
        ]
    return out


def page_tables(browser: Browser, names: list[str]) -> dict[str, list[list[str]]]:
    """The page's GPU node table and each node's GPU table, as the cells' text, for these nodes."""
    got: dict[str, Any] = browser.js(
        """
        const names = arguments[0], text = el => el.textContent.trim();
        const head = [...document.querySelectorAll('#nodetable > thead th')].map(text).slice(0, -1);
        const rows = names.map(n => document.querySelector(`#nodetable tr[data-node="${n}"]`))
          .filter(Boolean).map(tr => [...tr.children].map(text).slice(0, head.length));
        const out = {nodes: [head, ...rows]};
        for (const n of names) {
          const d = document.querySelector(`details[data-node="${n}"]`);
          if (d) out[n] = [...d.querySelectorAll('tr')].map(tr => [...tr.children].map(text));
        }
        return out;
        """,
        names,
    )
    return got


def bound_pod(h: Harness, name: str, node: str, gpus: list[int]) -> None:
    """A pod on `node` holding these GPUs, with the device annotations the tidescale scheduler writes when
    it binds (what `top node` reads to say which pod holds which GPU)."""
    annotations = {"tidescale.io/node": node, "tidescale.io/gpus": ",".join(map(str, gpus))}
    body = h.pod(name, gpus=len(gpus), annotations=annotations, scheduler="unbound-" + name)
    assert body["metadata"]["name"] == name
    h.core.create_namespaced_binding(
        h.ns,
        {"metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}},
        _preload_content=False,
    )


def test_the_gpu_node_view_shows_what_top_node_prints(
    e2e: E2E, h: Harness, browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    node = gpu_node(h, gpus=4)
    bound_pod(h, "train-0", node, [0, 1])
    bound_pod(h, "infer-0", node, [3])
    wait_for(
        lambda: all(p.status.phase == "Running" for p in h.core.list_namespaced_pod(h.ns).items),
        60,
        "both pods running",
    )
    local_exporter.set_load(e2e.env.exporter_url, 0.6, namespace=h.ns, pod="train-0")
    browser.open(e2e.running.http.url + "/")
    browser.wait_ready()
    url = e2e.env.prometheus_url

    last: dict[str, Any] = {}

    def same() -> dict[str, Any] | None:
        code = main(
            [
                "top",
                "node",
                "-d",
                "-l",
                f"{PARTITION}={h.ns}",
                "--kubeconfig",
                h.kubeconfig,
                "--prometheus-url",
                url,
            ]
        )
        out = capsys.readouterr()
        assert code == 0, out.err
        last["printed"] = printed = top_node_tables(out.out)
        last["shown"] = shown = page_tables(browser, [node])
        # both read the same cluster and Prometheus; the page follows them every few seconds
        return printed if shown == printed and len(printed["nodes"]) == 2 else None

    try:
        printed = wait_for(
            same, 60, "the page's GPU nodes to read as `top node -d` prints them", interval=1.0
        )
    except AssertionError:
        assert last["shown"] == last["printed"]  # the difference, shown by pytest
        raise
    head, row = printed["nodes"]
    assert head[:7] == ["NAME", "STATUS", "MODEL", "GPU(Total)", "GPU(Allocated)", "MODE", "PODS"]
    assert row[:7] == [node, "Ready", "NVIDIA-L40S", "4", "3", "exclusive", "2"]
    assert "UTIL" in head  # DCGM's columns, from Prometheus
    held = {r[0]: r[3] for r in printed[node][1:]}
    assert held == {"0": f"{h.ns}/train-0", "1": f"{h.ns}/train-0", "2": "-", "3": f"{h.ns}/infer-0"}
    if screenshots() is not None:
        browser.js("document.querySelector(`details[data-node='${arguments[0]}']`).open = true", node)
        browser.screenshot(screenshots() / "console-gpu-nodes.png", "#nodes")


def test_the_console_alone_streams_the_controllers_decisions_read_back_from_kubernetes_events(
    e2e: E2E, ns: str
) -> None:
    e2e.create_deployment(ns, "api", replicas=1, gpus=0)
    e2e.create_policy(ns, "api", floor_policy("api", ns)["spec"])
    wait_for(lambda: e2e.condition(ns, "api", "Ready"), 30, "the policy's Ready condition")
    console = Standalone(e2e.env.kubeconfig, prometheus_url=None).start()
    try:
        wait_for(console.events_ready.is_set, 30, "the console's watch on Kubernetes Events")
        with httpx.stream("GET", console.http.url + "/api/events/stream", timeout=30) as stream:
            e2e.custom.patch_namespaced_custom_object(
                "tidescale.io", "v1alpha1", ns, "scalingpolicies", "api", floor_patch(2)
            )
            event = next(
                e
                for line in stream.iter_lines()
                if line.startswith("data: ")
                and (e := json.loads(line[6:])).get("policy") == f"{ns}/api"
                and e["way"] == "up"
            )
        assert (event["current"], event["desired"], event["reason"]) == (1, 2, "ScaleUp")
        page = httpx.get(console.http.url + "/api/policies", params={"q": ns}).json()
        (row,) = page["items"]
        assert (row["key"], row["desired"], row["rule"]) == (f"{ns}/api", 2, "DesiredWithinRange")
    finally:
        console.stop()
