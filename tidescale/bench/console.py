"""`tidescale bench console --policies N --json`: the web console with N ScalingPolicies, in a real browser.

1. Starts the local control plane (KWOK nodes: GPU nodes for the node view, and nodes for the pods) and
   creates N Deployments and N ScalingPolicies whose one trigger is a Schedule floor of 1 (no metric
   source is needed; a policy's decision changes only when the bench changes it).
2. Runs `tidescale controller run` as a child process, as deployed (Kubernetes Events on, the console on its
   endpoint), and waits until every policy has a Ready condition.
3. Opens the console in headless Chromium (Debian's `chromium`, driven by Selenium through Debian's
   `chromedriver`) and reads, once the page has drawn its policies, its cluster views and opened its event
   stream: first contentful paint (the Performance API) and the bytes transferred (the DevTools network
   log: every response's encoded length, headers included, the open event stream's bytes so far too).
4. Injects `--events` scale-ups one after another (a policy's floor 1 -> 2: the controller decides, patches
   /scale and emits the event) and, for each, takes the time the page showed it (the frame after
   the event's row entered the DOM) minus the decision's own time (`time` of the record).
5. With `--standalone`, the same for `tidescale console --kubeconfig` (events read back from Kubernetes
   Events rather than pushed by the controller).

The last line is one JSON object: `{"first_paint_ms", "transferred_kb", "event_latency_s": {"p50", "max"}, …,
"controller_peak_rss_mib", "browser_peak_rss_mib"}`; goals: first paint ≤ 1 s, ≤ 200 KB, events ≤ 2 s.

`Browser` is the one way this project drives the console in a browser: the browser tests use it too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from kernel.clock import SYSTEM_CLOCK, Deadline
from tidescale.bench import cluster
from tidescale.local import environment, nodes
from tidescale.memory import PeakSampler, tree

NAMESPACE = "bench-console"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
GOALS = {"first_paint_ms": 1000, "transferred_kb": 200, "event_latency_s": 2.0}


class BrowserMissing(RuntimeError):
    """Chromium, its driver or Selenium is not installed (`deps/fetch-chromium.sh`, the dev extra)."""


def browser_available() -> str | None:
    """None when a headless Chromium can be driven here, else what is missing."""
    for path in (os.environ.get("TIDESCALE_CHROMIUM", CHROMIUM), CHROMEDRIVER):
        if not shutil.which(path):
            return (
                f"{path} is missing (deps/fetch-chromium.sh installs Debian's chromium and chromium-driver)"
            )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is missing (pip install -e '.[dev]')"
    return None


class Browser:
    """Headless Chromium on the console: open it, wait until it has drawn everything, read what the page
    recorded (first paint, bytes, the events it showed and when), take screenshots."""

    def __init__(self, width: int = 1440, height: int = 1100) -> None:
        missing = browser_available()
        if missing is not None:
            raise BrowserMissing(missing)
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = os.environ.get("TIDESCALE_CHROMIUM", CHROMIUM)
        for arg in (
            "--headless=new",
            "--no-sandbox",  # as root, in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--no-first-run",
            f"--window-size={width},{height}",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        self.service = Service(CHROMEDRIVER, log_output=subprocess.DEVNULL)
        self.driver = webdriver.Chrome(options=options, service=self.service)
        self.driver.set_page_load_timeout(30)

    @property
    def pid(self) -> int | None:
        """chromedriver's process (Chromium's processes are its descendants)."""
        process = getattr(self.service, "process", None)
        return int(process.pid) if process is not None else None

    def open(self, url: str) -> None:
        self.driver.get_log("performance")  # type: ignore[no-untyped-call]  # what came before this page does not count
        self.driver.get(url)
        self.js("window.__loadedOnce = (window.__loadedOnce || 0) + 1")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
        deadline = Deadline(timeout)
        while True:
            value = predicate()
            if value:
                return value
            if deadline.expired():
                raise TimeoutError(f"the console did not show {what} within {timeout:g} s")
            SYSTEM_CLOCK.sleep(interval)

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the page has drawn its policies and cluster views and its event stream is open."""
        self.wait(lambda: self.js("return window.__consoleReady === true"), timeout, "its first load")

    def first_paint_ms(self) -> float | None:
        value = self.js(
            "const p = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');"
            "return p ? p.startTime : null"
        )
        return float(value) if value is not None else None

    def ready_ms(self) -> float | None:
        value = self.js("return window.__readyAt || null")
        return float(value) if value is not None else None

    def transferred_bytes(self) -> int:
        """Bytes received since `open`, as the network saw them (encoded, headers included)."""
        finished: dict[str, int] = {}
        partial: dict[str, int] = {}
        log = self.driver.get_log("performance")  # type: ignore[no-untyped-call]
        for entry in log:
            message = json.loads(entry["message"]).get("message", {})
            method, params = message.get("method"), message.get("params", {})
            rid = str(params.get("requestId", ""))
            if method == "Network.loadingFinished":
                finished[rid] = int(params.get("encodedDataLength") or 0)
            elif method == "Network.responseReceived":
                partial[rid] = partial.get(rid, 0) + int(params["response"].get("encodedDataLength") or 0)
            elif method == "Network.dataReceived":
                partial[rid] = partial.get(rid, 0) + int(params.get("encodedDataLength") or 0)
        if not finished and not partial:  # no network log: the Resource Timing sizes (no open stream)
            return int(
                self.js(
                    "return performance.getEntriesByType('navigation').concat("
                    "performance.getEntriesByType('resource')).reduce((s, e) => s + (e.transferSize||0), 0)"
                )
            )
        return sum(finished.values()) + sum(v for k, v in partial.items() if k not in finished)

    def shown(self) -> list[dict[str, Any]]:
        """The scaling events the page has shown: id, policy, time (the decision's), shownAt (epoch ms)."""
        return list(self.js("return window.__shown || []"))

    def loads(self) -> int:
        """How many times the page was loaded since `open` (a reload starts the count again at 0)."""
        return int(self.js("return window.__loadedOnce || 0"))

    def screenshot(self, path: Path, element: str | None = None, full: bool = False) -> Path:
        """The viewport (the whole page with `full`), or one element, as a PNG."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if element is None:
            size = self.driver.get_window_size()
            if full:
                height = int(self.js("return document.documentElement.scrollHeight"))
                self.driver.set_window_size(size["width"], height + 120)
            self.driver.save_screenshot(str(path))
            if full:
                self.driver.set_window_size(size["width"], size["height"])
        else:
            from selenium.webdriver.common.by import By

            self.driver.find_element(By.CSS_SELECTOR, element).screenshot(str(path))
        return path

    def close(self) -> None:
        self.driver.quit()


def latency_seconds(shown: dict[str, Any]) -> float:
    """From the decision (the record's time) to the frame that showed it."""
    decided = datetime.fromisoformat(str(shown["time"]).replace("Z", "+00:00")).timestamp()
    return float(shown["shownAt"]) / 1000 - decided


def add_benchmarks(bench_sub: Any) -> None:
    b = bench_sub.add_parser(
        "console",
        help="the web console with N policies in headless Chromium: first paint, bytes, event delay",
    )
    b.add_argument("--policies", type=int, default=1000, help="ScalingPolicies (and Deployments) to create")
    b.add_argument("--events", type=int, default=20, help="scale-ups injected, one after another")
    b.add_argument("--gpu-nodes", type=int, default=4, help="KWOK GPU nodes for the node view")
    b.add_argument("--standalone", action="store_true", help="also measure `tidescale console` alone")
    b.add_argument("--state-dir", type=Path, default=None, help="where the control plane runs")
    b.add_argument("--screenshot", type=Path, default=None, help="save the loaded page as this PNG")
    b.add_argument("--json", action="store_true", help="print the summary as one JSON object (last line)")
    b.set_defaults(func=run)


def floor_trigger(replicas: int) -> dict[str, Any]:
    """A Schedule trigger whose window is always open: a floor of `replicas`, no metric source needed."""
    return {
        "type": "Schedule",
        "name": "floor",
        "windows": [{"cron": "* * * * *", "durationSeconds": 3600, "replicas": replicas}],
    }


def floor_policy(name: str, namespace: str, floor: int = 1, max_replicas: int = 8) -> dict[str, Any]:
    """A ScalingPolicy whose only trigger is an always-open Schedule floor: its decision moves only when
    the floor does (`floor_patch`)."""
    return {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targetRef": {"kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": max_replicas,
            "triggers": [floor_trigger(floor)],
        },
    }


def floor_patch(replicas: int) -> dict[str, Any]:
    """The merge patch that moves a `floor_policy`'s floor (the controller scales to it at once)."""
    return {"spec": {"triggers": [floor_trigger(replicas)]}}


def measure_events(
    browser: Browser, scale_up: Callable[[str], None], names: Iterable[str], timeout: float = 30
) -> tuple[list[float], int]:
    """Scale each named policy up in turn and wait until the page shows it; (latencies, missed)."""
    latencies: list[float] = []
    missed = 0
    for name in names:
        seen = {e["id"] for e in browser.shown()}
        scale_up(name)
        try:
            event = browser.wait(
                lambda n=name, s=seen: next(  # type: ignore[misc]
                    (e for e in browser.shown() if e["id"] not in s and e["policy"].endswith(f"/{n}")), None
                ),
                timeout,
                f"the scale-up of {name}",
            )
        except TimeoutError:
            missed += 1
            continue
        latencies.append(latency_seconds(event))
    return latencies, missed


def run(args: argparse.Namespace) -> int:
    from kubernetes import client, config

    n, events = int(args.policies), int(args.events)
    if n < 1 or events < 0 or events > n:
        print("--policies must be ≥ 1 and --events between 0 and --policies", file=sys.stderr)
        return 2
    missing = browser_available()
    if missing is not None:
        print(f"bench console: {missing}", file=sys.stderr)
        return 2
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="tidescale-bench-console-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"benchmark": "console", "policies": n, "events": events}
    pools = [
        nodes.NodePoolSpec(
            name="bench", count=2, capacity={"cpu": "1000", "memory": "4Ti", "pods": str(n + 50)}
        ),
        *([nodes.gpu_pool(args.gpu_nodes, "gpu")] if args.gpu_nodes else []),
    ]
    controller: subprocess.Popen[bytes] | None = None
    standalone: subprocess.Popen[bytes] | None = None
    browser: Browser | None = None
    try:
        env = environment.up(["kubernetes"], state_dir, node_pools=pools)
        api = config.new_client_from_config(config_file=env.kubeconfig)
        core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
        cluster.ready_namespace(core, NAMESPACE)
        # 1. Deployments and policies, a few at a time
        began = SYSTEM_CLOCK.monotonic()

        def create(i: int) -> None:
            name = f"svc-{i:04d}"
            apps.create_namespaced_deployment(NAMESPACE, cluster.deployment(name, "model-server:1"))
            custom.create_namespaced_custom_object(
                "tidescale.io", "v1alpha1", NAMESPACE, "scalingpolicies", floor_policy(name, NAMESPACE)
            )

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(create, range(n)))
        result["create_seconds"] = round(SYSTEM_CLOCK.monotonic() - began, 1)
        # 2. the controller, as deployed (its console on its endpoint)
        controller, url = cluster.start_controller(state_dir, env.kubeconfig)
        browser = Browser()
        with PeakSampler([controller.pid]) as controller_rss, PeakSampler([browser.pid or 0]) as browser_rss:
            started = SYSTEM_CLOCK.monotonic()
            ready = cluster.wait_policies_reconciled(custom, NAMESPACE, n)
            result["all_ready_seconds"] = round(SYSTEM_CLOCK.monotonic() - started, 1)
            result["ready_policies"] = ready
            # 3. the first load
            browser.open(url + "/")
            browser.wait_ready(60)
            result["first_paint_ms"] = round(browser.first_paint_ms() or -1, 1)
            result["first_data_ms"] = round(browser.ready_ms() or -1, 1)
            result["transferred_kb"] = round(browser.transferred_bytes() / 1024, 1)
            if args.screenshot is not None:
                browser.screenshot(args.screenshot)

            # 4. scale-ups, one at a time
            def scale_up(name: str) -> None:
                custom.patch_namespaced_custom_object(
                    "tidescale.io",
                    "v1alpha1",
                    NAMESPACE,
                    "scalingpolicies",
                    name,
                    floor_patch(2),
                )

            latencies, missed = measure_events(browser, scale_up, [f"svc-{i:04d}" for i in range(events)])
            result["event_latency_s"] = _summary(latencies, missed)
            result["page_loads"] = browser.loads()
            # 5. the standalone console, its events from Kubernetes Events
            if args.standalone:
                standalone, standalone_url = cluster.start(
                    [
                        sys.executable,
                        "-m",
                        "tidescale",
                        "console",
                        "--kubeconfig",
                        env.kubeconfig,
                        "--prometheus",
                        "",
                        "--ready-file",
                        str(state_dir / "console-ready.json"),
                    ],
                    state_dir / "console-ready.json",
                    state_dir / "console.log",
                    "tidescale console",
                )
                browser.open(standalone_url + "/")
                browser.wait_ready(60)
                result["standalone"] = {
                    "first_paint_ms": round(browser.first_paint_ms() or -1, 1),
                    "transferred_kb": round(browser.transferred_bytes() / 1024, 1),
                }
                more = [f"svc-{i:04d}" for i in range(events, min(n, 2 * events))]
                latencies, missed = measure_events(browser, scale_up, more)
                result["standalone"]["event_latency_s"] = _summary(latencies, missed)
        result["controller_peak_rss_mib"] = round(controller_rss.peak_mib, 1)
        result["browser_peak_rss_mib"] = round(browser_rss.peak_mib, 1)
        result["controller_processes"] = len(tree([controller.pid]))
        result["goals"] = GOALS
        latency_max = (result["event_latency_s"] or {}).get("max")
        result["within_goals"] = (
            0 <= result["first_paint_ms"] <= GOALS["first_paint_ms"]
            and result["transferred_kb"] <= GOALS["transferred_kb"]
            and latency_max is not None
            and latency_max <= GOALS["event_latency_s"]
            and result["event_latency_s"]["missed"] == 0
        )
    finally:
        if browser is not None:
            browser.close()
        cluster.stop(standalone)
        cluster.stop(controller)
        environment.down(state_dir)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0 if result.get("within_goals") else 1


def _summary(latencies: list[float], missed: int) -> dict[str, Any]:
    return {
        "p50": round(statistics.median(latencies), 3) if latencies else None,
        "max": round(max(latencies), 3) if latencies else None,
        "min": round(min(latencies), 3) if latencies else None,
        "samples": len(latencies),
        "missed": missed,
    }
