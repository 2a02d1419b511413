"""The load signal's requests: parse a `PUT /load` body, and find the simulated devices it addresses.

Selectors (all optional, combined with AND): `node`, `uuid` (a GPU's `GPU-…`, which covers its MIG
instances, or one instance's `MIG-…`), `namespace`, and within it `pod` or `deployment` (the pods of
that Deployment: read from the pod's ReplicaSet owner when the devices come from a cluster, else pods
named `<deployment>-…`). No selector means every device.

Requests are also load rules: replayed in order onto a new device set (`apply_rules`), so a load set
for a Deployment reaches its pods created later; the last rule that matches a device wins.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from exporter.model import SimDevice


class BadLoadRequest(ValueError):
    """The body is not a valid load request (HTTP 400)."""


class NoMatch(LookupError):
    """A selector matched no device (HTTP 404); the message names the selector and what exists."""


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    load: Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
    node: str | None = None
    uuid: str | None = None
    namespace: str | None = None
    pod: str | None = None
    deployment: str | None = None

    @model_validator(mode="after")
    def _pod_needs_namespace(self) -> LoadRequest:
        if self.pod is not None and self.deployment is not None:
            raise ValueError("give pod or deployment, not both")
        if (self.pod is not None or self.deployment is not None) and self.namespace is None:
            raise ValueError("pod and deployment need a namespace")
        return self

    def describe(self) -> str:
        parts = [f"{name} {value!r}" for name, value in self._criteria()]
        return " and ".join(parts) if parts else "all GPUs"

    def criteria(self) -> frozenset[tuple[str, str]]:
        """The selectors set, as (name, value) pairs: a request with fewer criteria matches more devices."""
        return frozenset(self._criteria())

    def _criteria(self) -> list[tuple[str, str]]:
        return [
            (name, value)
            for name, value in (
                ("node", self.node),
                ("uuid", self.uuid),
                ("namespace", self.namespace),
                ("pod", self.pod),
                ("deployment", self.deployment),
            )
            if value is not None
        ]


def parse_load_request(body: bytes) -> LoadRequest:
    """Validate a JSON body; raise `BadLoadRequest` with every problem on one line."""
    try:
        return LoadRequest.model_validate_json(body)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            reason = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{where}: {reason}" if where else reason.removeprefix("Value error, "))
        raise BadLoadRequest("; ".join(problems)) from e


def select(devices: Sequence[SimDevice], request: LoadRequest) -> tuple[str, ...]:
    """The keys of the devices the request addresses, in fleet order; `NoMatch` if there are none."""
    tests = _tests(devices, request)
    # Name the first criterion that matches nothing on its own; else the combination is what fails.
    for name, test, known in tests:
        if not any(test(d) for d in devices):
            value = getattr(request, name)
            raise NoMatch(f"no GPU matches {name} {value!r} ({known()})")
    keys = tuple(d.key for d in devices if all(test(d) for _, test, _ in tests))
    if not keys:
        raise NoMatch(f"no GPU matches {request.describe()} together")
    return keys


def matching(devices: Sequence[SimDevice], request: LoadRequest) -> tuple[str, ...]:
    """The keys of the devices the request addresses, in fleet order; possibly none."""
    tests = _tests(devices, request)
    return tuple(d.key for d in devices if all(test(d) for _, test, _ in tests))


def deployment_pods(devices: Sequence[SimDevice], namespace: str, deployment: str) -> frozenset[str]:
    """The names of the pods of Deployment `namespace/deployment` that hold at least one of `devices`."""
    return frozenset(
        d.labels.pod.name
        for d in devices
        if d.labels.pod is not None and d.labels.pod.namespace == namespace and _in_deployment(d, deployment)
    )


def with_rule(rules: Sequence[LoadRequest], rule: LoadRequest) -> tuple[LoadRequest, ...]:
    """The load rules after `rule` arrives: it goes last, and every earlier rule it covers is dropped
    (one whose criteria include all of its own: whatever device that rule matches, `rule` matches too
    and overrides), so repeating or widening a request does not grow the list."""
    mine = rule.criteria()
    return (*(r for r in rules if not mine <= r.criteria()), rule)


def apply_rules(devices: Sequence[SimDevice], rules: Sequence[LoadRequest]) -> dict[str, float]:
    """Each device's load when the rules are applied in order (the last rule that matches it wins; 0 when
    none does): what the fleet's loads are after replaying every `PUT /load` onto the current devices."""
    loads = dict.fromkeys((d.key for d in devices), 0.0)
    for rule in rules:
        for key in matching(devices, rule):
            loads[key] = rule.load
    return loads


Test = tuple[str, Callable[[SimDevice], bool], Callable[[], str]]


def _tests(devices: Sequence[SimDevice], request: LoadRequest) -> list[Test]:
    """One (criterion, test, what exists) per selector the request sets."""
    tests: list[Test] = []
    if request.node is not None:
        node = request.node
        tests.append(
            ("node", lambda d: d.node == node, lambda: "nodes: " + _listing(d.node for d in devices))
        )
    if request.uuid is not None:
        uuid = request.uuid
        tests.append(
            (
                "uuid",
                lambda d: uuid in (d.key, d.labels.uuid),
                lambda: f"{len(devices)} devices; GET /load lists them",
            )
        )
    if request.namespace is not None:
        ns = request.namespace
        tests.append(
            (
                "namespace",
                lambda d: d.labels.pod is not None and d.labels.pod.namespace == ns,
                lambda: "namespaces: " + _listing(d.labels.pod.namespace for d in devices if d.labels.pod),
            )
        )

    def pods() -> str:
        return "pods: " + _listing(
            f"{d.labels.pod.namespace}/{d.labels.pod.name}" for d in devices if d.labels.pod
        )

    if request.pod is not None:
        pod = request.pod
        tests.append(("pod", lambda d: d.labels.pod is not None and d.labels.pod.name == pod, pods))
    if request.deployment is not None:
        deployment = request.deployment
        tests.append(("deployment", lambda d: _in_deployment(d, deployment), pods))
    return tests


def _in_deployment(device: SimDevice, deployment: str) -> bool:
    """The pod's Deployment when known (read from its ReplicaSet owner); else its name's prefix, which
    is how a Deployment's pods are named (`<deployment>-<hash>-<suffix>`) and how a static spec names them."""
    if device.labels.pod is None:
        return False
    if device.deployment is not None:
        return device.deployment == deployment
    return device.labels.pod.name.startswith(f"{deployment}-")


def _listing(values: Iterable[str], limit: int = 12) -> str:
    unique = sorted(set(values))
    if not unique:
        return "none"
    more = f", … ({len(unique)} in all)" if len(unique) > limit else ""
    return ", ".join(unique[:limit]) + more
