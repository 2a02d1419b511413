"""`tidescale top node` and `tidescale top job`: Arena's GPU views of the cluster, read from the API
server (nodes, pods and the device annotations the scheduler writes) and, when a Prometheus is given,
DCGM's utilization and memory (`jobs.launcher.views` computes the views; this module reads).

```
tidescale top node [-l SELECTOR] [-d] [--kubeconfig K] [--prometheus-url URL] [--json]
tidescale top job [NAME] [-n NS | -A] [--kubeconfig K] [--prometheus-url URL] [--json]
```

Reads, in steps: 1. the nodes (one list) and the live pods (one list, all namespaces) or the launcher's
jobs; 2. one PromQL query per DCGM metric for every GPU at once (never one per GPU or per pod);
3. the pure view; 4. a table or one JSON document. A Prometheus that cannot be reached or answers with an
error costs its columns only: the table prints without them and one line on stderr says why.
The Prometheus URL defaults to `$TIDESCALE_PROMETHEUS_URL`, else the local environment's
(`tidescale local up`, `$TIDESCALE_STATE_DIR/state.json`), else none (no metric columns).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from jobs.launcher import views
from jobs.launcher.cli import api_client
from kernel.errors import InvalidSpec, TemporaryError, TidescaleError

QUERY_TIMEOUT_S = 5.0
LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"


class MetricsUnavailable(TemporaryError):
    """Prometheus could not be reached or did not answer a query."""


def default_prometheus_url() -> str | None:
    """`$TIDESCALE_PROMETHEUS_URL`, else the Prometheus of the local environment, else None."""
    configured = os.environ.get("TIDESCALE_PROMETHEUS_URL")
    if configured:
        return configured
    state = Path(os.environ.get("TIDESCALE_STATE_DIR", ".tidescale/local")) / "state.json"
    try:
        return str(json.loads(state.read_text())["components"]["prometheus"]["endpoint"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def query_metrics(
    url: str, metrics: Sequence[str] = views.METRICS, timeout: float = QUERY_TIMEOUT_S
) -> views.Metrics:
    """One instant query per metric (the bare metric name: every GPU's series at once)."""
    results: dict[str, list[dict[str, Any]]] = {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout) as http:
        for name in metrics:
            try:
                response = http.get("/api/v1/query", params={"query": name})
                body = response.json()
            except (httpx.HTTPError, ValueError) as e:
                raise MetricsUnavailable(f"Prometheus at {url}: {type(e).__name__}: {e}") from e
            if not isinstance(body, dict):
                body = {}
            if response.status_code != 200 or body.get("status") != "success":
                why = (body.get("error") if isinstance(body, dict) else None) or response.text
                raise MetricsUnavailable(f"Prometheus at {url}: {name}: HTTP {response.status_code}: {why}")
            results[name] = list((body.get("data") or {}).get("result") or [])
    return views.metrics_from(results)


def _url(given: str | None) -> str | None:
    return default_prometheus_url() if given is None else given


def _metrics(url: str | None) -> views.Metrics | None:
    """DCGM's samples, or None with a note on stderr when Prometheus cannot give them."""
    if not url:
        return None
    try:
        return query_metrics(url)
    except MetricsUnavailable as e:
        print(f"note: no GPU metrics ({e}); showing allocation only", file=sys.stderr)
        return None


def read_cluster(api: Any, selector: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(nodes matching `selector`, live pods of every namespace): two lists."""
    from jobs.launcher.client import Kube

    kube = Kube(api)
    nodes = kube.list("Node", None, selector)
    out = kube.call("GET", Kube.path("Pod"), query={"fieldSelector": LIVE_PODS})
    pods: list[dict[str, Any]] = list(out.get("items") or [])
    return nodes, pods


def top_nodes(api: Any, prometheus_url: str | None, selector: str | None = None) -> views.ClusterView:
    nodes, pods = read_cluster(api, selector)
    return views.node_views(nodes, pods, _metrics(prometheus_url))


def top_jobs(
    api: Any, prometheus_url: str | None, namespace: str | None = "default", name: str | None = None
) -> list[views.JobTop]:
    """Every launcher job of `namespace` (None: all), or the one named `name` (JobNotFound if none)."""
    from jobs.launcher.client import get_job, list_jobs

    if name is not None:
        found = [get_job(api, name, namespace or "default", events=False)]
    else:
        found = list_jobs(api, namespace)
    return views.job_tops(found, _metrics(prometheus_url) if found else None)


# -- the commands -------------------------------------------------------------------------------------


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`tidescale top node|job`."""
    top = sub.add_parser("top", help="GPU views: per node and GPU, per job and instance (Arena's top)")
    top_sub = top.add_subparsers(dest="top_command", required=True, metavar="VIEW")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--kubeconfig", help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
        p.add_argument(
            "--prometheus-url",
            help="Prometheus with the DCGM metrics (default: $TIDESCALE_PROMETHEUS_URL, else the local "
            "environment's, else none; '' for none: no metric columns)",
        )
        p.add_argument("--json", action="store_true", help="print one JSON document")

    node = top_sub.add_parser(
        "node", help="per node: GPUs allocated (whole, shared, slices), mode, pods; -d: per GPU"
    )
    node.add_argument("-d", "--details", action="store_true", help="per GPU: what it holds, and whose")
    node.add_argument("-l", "--selector", help="only the nodes with these labels (a label selector)")
    common(node)
    node.set_defaults(func=top_node_command)

    job = top_sub.add_parser("job", help="per job: GPUs requested and allocated, nodes, utilization, memory")
    job.add_argument("name", nargs="?", help="one job: per instance, its node, GPUs, utilization, memory")
    job.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    job.add_argument("-A", "--all-namespaces", action="store_true", help="jobs of every namespace")
    common(job)
    job.set_defaults(func=top_job_command)


def _run(command: str, body: Any) -> int:
    from kubernetes.client.exceptions import ApiException

    from jobs.launcher.client import api_reason

    try:
        code: int = body()
    except InvalidSpec as e:
        print(str(e), file=sys.stderr)
        return 2
    except TidescaleError as e:
        print(f"{command}: {e}", file=sys.stderr)
        return 1
    except ApiException as e:
        print(f"{command}: the API server refused: {api_reason(e)}", file=sys.stderr)
        return 1
    return code


def _problems(problems: Sequence[str]) -> None:
    for p in problems:
        print(f"note: {p}", file=sys.stderr)


def top_node_command(args: argparse.Namespace) -> int:
    def body() -> int:
        view = top_nodes(api_client(args.kubeconfig), _url(args.prometheus_url), args.selector)
        _problems(view.problems)
        print(json.dumps(view.to_json()) if args.json else views.format_nodes(view, args.details))
        return 0

    return _run("top node", body)


def top_job_command(args: argparse.Namespace) -> int:
    def body() -> int:
        if args.name and args.all_namespaces:
            raise InvalidSpec("top job", [" -A: one job is named in one namespace (-n)"])
        namespace = None if args.all_namespaces else args.namespace
        tops = top_jobs(api_client(args.kubeconfig), _url(args.prometheus_url), namespace, args.name)
        metrics = any(t.usage is not None for t in tops)
        if args.json:
            out: Mapping[str, Any] = tops[0].to_json() if args.name else {"jobs": [t.to_json() for t in tops]}
            print(json.dumps(out))
        elif args.name:
            print(views.format_job(tops[0], metrics))
        elif not tops:
            print("No jobs in " + ("any namespace." if namespace is None else f"namespace {namespace}."))
        else:
            print(views.format_jobs(tops, metrics, all_namespaces=namespace is None))
        return 0

    return _run("top job", body)
