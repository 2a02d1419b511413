"""Kinds the launcher submits through another package's client: the extension point that lets `tidescale
submit FILE` take the streaming `Pipeline`, which jobs may not import (the layers: tidescale -> streaming
-> jobs). The composition root passes a mapping kind -> `ExternalKind` to `cli.add_commands`.

An external kind parses its own documents (with the file's line numbers), says what it would create
(`dry_run`), and creates its objects with its own client (`submit`), making the object its client
creates — a Spark driver pod, a Flink JobManager Deployment — owned by the launcher's root ConfigMap
`tidescale-job-<name>`. So an external job is a launcher job like the others: `jobs list/get` read it from
the cluster, `jobs delete` deletes the root and Kubernetes' garbage collector the rest. The root names
that object in the annotation `tidescale.io/workload: Kind/name`; a job whose workload is a Pod takes
the phase of that pod (`workload_view`), one whose workload is a Deployment the phase every Deployment has.

An external job may instead run on this machine (a Pipeline's `target: local`): its kind's `parse` sets
`local` (the command and the files it needs), and the launcher itself starts it as a supervised process
and records it in the root (`jobs.launcher.local`); its kind's `submit` and `dry_run` are not called.

Here, all pure: the protocol, the root's rendering, the file's split into the launcher's documents and
the external ones (line numbers kept), and the phase. No I/O, no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import yaml

from jobs.launcher.local import LocalRun
from jobs.launcher.render import (
    JOB_LABEL,
    KIND_LABEL,
    MANAGED_BY,
    QUEUE_LABEL,
    SPEC_KEY,
    Defaults,
    root_name,
)
from jobs.launcher.status import FAILED, PENDING, RUNNING, SUCCEEDED, TERMINATING, JobView

WORKLOAD_ANNOTATION = "tidescale.io/workload"
_SEPARATOR = re.compile(r"^---(\s|$)")


@dataclass(frozen=True)
class ExternalJob:
    """One parsed document of an external kind, with what the flags filled in resolved.

    `workload`: (kind, name) of the object the kind's client creates and the root owns; `document`: what
    the root ConfigMap keeps (its `spec.queue` and `spec.schedulerName` are what `jobs list` shows);
    `payload`: the kind's own parsed value, opaque to the launcher; `local`: set when the job runs on
    this machine, not on the cluster (its workload is then a process)."""

    kind: str
    name: str
    namespace: str
    queue: str
    scheduler_name: str
    workload: tuple[str, str]
    document: Mapping[str, Any]
    payload: Any = field(default=None, compare=False, repr=False)
    local: LocalRun | None = None


@dataclass(frozen=True)
class ExternalSubmitted:
    """What an external kind's `submit` created (`Kind/name`), and its own report (JSON)."""

    objects: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)


class ExternalKind(Protocol):
    """A kind of job created by another package's client."""

    @property
    def kind(self) -> str: ...

    def parse(
        self, text: str, source: str, base_dir: Path, defaults: Defaults, options: Mapping[str, str]
    ) -> ExternalJob:
        """One document (`text` is the whole file with every other document blanked, so line numbers
        are the file's); InvalidSpec names the file, line and field of each problem. `options`: the
        submit command's flags for external kinds (`engine`)."""
        ...

    def dry_run(self, job: ExternalJob, kubeconfig: str | None) -> Mapping[str, Any]:
        """What `submit` would create and run (JSON), without contacting anything."""
        ...

    def submit(
        self,
        job: ExternalJob,
        *,
        kubeconfig: str,
        owner: Mapping[str, Any],
        replace: bool,
        timeout: float,
    ) -> ExternalSubmitted:
        """Create the job; its workload gets `owner` (the root's ownerReference). On failure, remove
        what it created and raise a TidescaleError that says why."""
        ...


ExternalKinds = Mapping[str, ExternalKind]


def root_of(job: ExternalJob) -> dict[str, Any]:
    """The launcher's root ConfigMap for an external job (its labels are every launcher root's; a local
    job's annotations are its record's, which the launcher adds)."""
    labels = {
        MANAGED_BY: "tidescale",
        JOB_LABEL: job.name,
        KIND_LABEL: job.kind,
        QUEUE_LABEL: job.queue,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": root_name(job.name),
            "namespace": job.namespace,
            "labels": labels,
            "annotations": {} if job.local is not None else {WORKLOAD_ANNOTATION: "/".join(job.workload)},
        },
        "data": {SPEC_KEY: json.dumps(dict(job.document), sort_keys=True)},
    }


def owner_reference(root: Mapping[str, Any]) -> dict[str, Any]:
    """A reference to a created root (not the controller: the workload keeps its own)."""
    m = root["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": m["name"],
        "uid": m["uid"],
        "controller": False,
        "blockOwnerDeletion": True,
    }


# -- splitting a file ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """A file's documents sorted out: `launcher` is the file with the external documents blanked (empty:
    none of the launcher's); `external` is (kind, the file with every other document blanked) in order."""

    launcher: str
    external: tuple[tuple[str, str], ...]


def _kind(chunk: str) -> str | None:
    try:
        data = yaml.safe_load(chunk)
    except yaml.YAMLError:
        return None
    return str(data.get("kind")) if isinstance(data, dict) else None


def _has_content(chunk: str) -> bool:
    try:
        return yaml.safe_load(chunk) is not None
    except yaml.YAMLError:
        return True  # the launcher's parser reports it


def split_documents(text: str, kinds: Collection[str]) -> Split:
    """Sort `text`'s documents by kind: the ones of `kinds` apart, each blanked out of the others'
    text line by line, so that every parser reports the file's own line numbers."""
    lines = text.splitlines()
    chunks: list[list[int]] = [[]]
    for i, line in enumerate(lines):
        if _SEPARATOR.match(line) and chunks[-1]:
            chunks.append([])
        chunks[-1].append(i)
    texts = ["\n".join(lines[i] for i in chunk) for chunk in chunks]
    found = [_kind(t) for t in texts]
    external = [k for k, kind in enumerate(found) if kind in kinds]

    def keeping(keep: set[int], separators: bool) -> str:
        out = []
        for k, chunk in enumerate(chunks):
            for i in chunk:
                if k in keep:
                    out.append(lines[i])
                else:
                    out.append("---" if separators and _SEPARATOR.match(lines[i]) else "")
        return "\n".join(out) + "\n"

    ours = {k for k in range(len(chunks)) if k not in external}
    launcher = keeping(ours, separators=True) if any(_has_content(texts[k]) for k in ours) else ""
    return Split(
        launcher=launcher if external else text,
        external=tuple((str(found[k]), keeping({k}, separators=False)) for k in external),
    )


# -- the phase ----------------------------------------------------------------------------------------


def workload_view(view: JobView, workload: str) -> JobView:
    """A job whose workload is a Pod (a Spark driver) has that pod's phase: Running once it is bound
    (the pods it creates later are counted in the reason), Succeeded or Failed when it ended. Any other
    workload (a Deployment) leaves the view as it is."""
    kind, _, name = workload.partition("/")
    if kind != "Pod" or view.phase == TERMINATING:
        return view
    pod = next((p for p in view.pods if p.name == name), None)
    others = [p for p in view.pods if p.name != name and p.phase not in (SUCCEEDED, FAILED, TERMINATING)]
    created = f"; {sum(p.bound for p in others)}/{len(others)} of the pods it created bound" if others else ""
    if pod is None:
        phase, reason, line = PENDING, f"its workload Pod/{name} does not exist (yet)", f"Pod/{name}: absent"
    else:
        line = f"Pod/{name}: {pod.phase}" + (f" on {pod.node}" if pod.node else "")
        if pod.phase == SUCCEEDED:
            phase, reason = SUCCEEDED, f"Pod/{name} completed"
        elif pod.phase == FAILED:
            phase, reason = FAILED, f"Pod/{name} failed"
        elif pod.bound:
            phase, reason = RUNNING, f"Pod/{name} bound to {pod.node}{created}"
        else:
            phase, reason = PENDING, f"Pod/{name}: {pod.message}"
    return replace(view, phase=phase, reason=reason, workloads=(line, *view.workloads))
