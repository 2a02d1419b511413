"""CustomResourceDefinitions on the local control plane: create or replace each document of some YAML files,
then wait until the API server reports every one `Established` (its REST endpoint serves).

The harness installs tidescale's own CRDs (the committed `helm/tidescale/crds/*.yaml`) when it starts the
control plane; tests that need others (Cluster API's MachineDeployment from ../shared/crds) call `install`
with those files, read where they lie. Talks to the API server only; starts no process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kernel.clock import SYSTEM_CLOCK, Deadline
from kernel.errors import PermanentError, TemporaryError

# The chart's crds/ folder: written by `tidescale crds --write helm/tidescale/crds`, checked by a test.
TIDESCALE_CRDS = Path(__file__).resolve().parents[2] / "helm" / "tidescale" / "crds"


def tidescale_crds() -> list[Path]:
    """The committed CRD files of tidescale's own resources (ScalingPolicy, NodePool)."""
    paths = sorted(TIDESCALE_CRDS.glob("*.yaml"))
    if not paths:
        raise PermanentError(
            f"no CRD files under {TIDESCALE_CRDS}: run `tidescale crds --write {TIDESCALE_CRDS}`"
        )
    return paths


def _documents(paths: Sequence[Path]) -> list[dict[str, Any]]:
    docs = []
    for path in paths:
        try:
            loaded = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as exc:
            raise PermanentError(f"{path}: cannot read CRDs: {exc}") from exc
        for doc in loaded:
            if doc is None:
                continue
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
                raise PermanentError(f"{path}: a {kind}, not a CustomResourceDefinition")
            docs.append(doc)
    return docs


def _apply(api: Any, doc: dict[str, Any]) -> None:
    name = doc["metadata"]["name"]
    try:
        api.create_custom_resource_definition(doc)
        return
    except ApiException as exc:
        if exc.status != 409:
            raise _error(name, "create", exc) from exc
    try:
        existing = api.read_custom_resource_definition(name)
        replacement = {
            **doc,
            "metadata": {**doc["metadata"], "resourceVersion": existing.metadata.resource_version},
        }
        api.replace_custom_resource_definition(name, replacement)
    except ApiException as exc:
        raise _error(name, "replace", exc) from exc


def _error(name: str, verb: str, exc: ApiException) -> PermanentError | TemporaryError:
    reason = f"CRD {name}: {verb} failed ({exc.status} {exc.reason}): {exc.body or ''}".strip()
    if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (409, 429):
        return PermanentError(reason)
    return TemporaryError(reason)


def _established(api: Any, name: str) -> tuple[bool, str]:
    crd = api.read_custom_resource_definition(name)
    conditions = {c.type: c for c in (crd.status.conditions or [])} if crd.status else {}
    if conditions.get("Established") is not None and conditions["Established"].status == "True":
        return True, ""
    return False, "; ".join(f"{c.type}={c.status} ({c.reason}: {c.message})" for c in conditions.values())


def install(kubeconfig: str | Path, paths: Sequence[Path], timeout: float = 60) -> list[str]:
    """Create (or replace) every CRD in `paths` and wait until each is Established; returns their names."""
    docs = _documents(paths)
    api = client.ApiextensionsV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    for doc in docs:
        _apply(api, doc)
    names = [str(doc["metadata"]["name"]) for doc in docs]
    deadline = Deadline(timeout)
    pending = list(names)
    why: dict[str, str] = {}
    while pending:
        for name in list(pending):
            try:
                ready, why[name] = _established(api, name)
            except ApiException as exc:
                raise _error(name, "read", exc) from exc
            if ready:
                pending.remove(name)
        if pending and deadline.expired():
            raise TemporaryError(
                "CRDs not Established within "
                f"{timeout:.0f} s: "
                + ", ".join(f"{n} ({why.get(n) or 'no conditions yet'})" for n in pending)
            )
        if pending:
            SYSTEM_CLOCK.sleep(0.1)
    return names
