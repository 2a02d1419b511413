"""Submit a pipeline to Kubernetes through the tidescale scheduler with the engine's own client:
`spark-submit --master k8s://… --deploy-mode cluster` from the PySpark wheel, or
`flink run --target kubernetes-application` from the PyFlink wheel (`streaming.native` renders both).

Shell, in steps: 1. render (pure) — 2. refuse a job that exists (unless `replace`) — 3. create the
ServiceAccount and its Role (unless one is given) and the PodGroup — 4. write the pod templates and run
the client, with a timeout, in its own process group (killed whole on timeout) — 5. find the root object
the client created (Spark's driver pod, Flink's JobManager Deployment) and make it the owner of what
step 3 created, so that deleting the root removes the job. A failure after step 3 removes what was
created and raises `LaunchFailed` naming the engine, the reason and the client's output.

`delete_pipeline` removes a job by its labels and the objects its root owns, and waits until they are
gone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kernel.clock import SYSTEM_CLOCK, Clock, Deadline
from kernel.errors import PermanentError
from streaming import native, pipeline_file, render
from streaming.plan import Plan, plan
from streaming.spec import Pipeline

SUBMIT_TIMEOUT_S = 180.0
DELETE_TIMEOUT_S = 60.0
OUTPUT_TAIL = 6000  # characters of the client's output kept in a result
PODGROUPS = ("scheduling.volcano.sh", "v1beta1", "podgroups")
DELETE_ORDER = (
    "PodGroup",
    "RoleBinding",
    "Role",
    "ServiceAccount",
    "Service",
    "ConfigMap",
    "Deployment",
    "ReplicaSet",
    "Pod",
)


class LaunchFailed(PermanentError):
    """The engine's client (or a step around it) failed; `output` is the tail of what the client said."""

    def __init__(self, engine: str, reason: str, output: str = "", command: tuple[str, ...] = ()) -> None:
        self.engine, self.reason, self.output, self.command = engine, reason, output, command
        super().__init__(f"{engine}: {reason}")


class PipelineExists(PermanentError):
    """A job of that name is already in the namespace (pass `replace=True` to replace it)."""


@dataclass(frozen=True)
class LaunchResult:
    """What a submission created (or, with `dry_run`, would create).

    `objects`: `Kind/name` of everything the job consists of that the launcher knows by name, the root
    last; `root`: (kind, name) of the object that owns the rest; `output`: the tail of the client's
    output; `command`: the client's command line; `templates`: the pod templates by file name."""

    engine: str
    job_name: str
    namespace: str
    root: tuple[str, str]
    objects: tuple[str, ...]
    pod_group: dict[str, Any]
    templates: dict[str, dict[str, Any]]
    command: tuple[str, ...]
    service_account: str
    dry_run: bool = False
    output: str = ""
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "jobName": self.job_name,
            "namespace": self.namespace,
            "root": {"kind": self.root[0], "name": self.root[1]},
            "objects": list(self.objects),
            "serviceAccount": self.service_account,
            "dryRun": self.dry_run,
            "command": list(self.command),
            "podGroup": self.pod_group,
            "templates": self.templates,
            "notes": list(self.notes),
            **({"output": self.output} if self.output else {}),
        }


# -- inputs ----------------------------------------------------------------------------------------


def _plan_of(source: str | Path | Pipeline | Plan) -> Plan:
    if isinstance(source, Plan):
        return source
    if isinstance(source, Pipeline):
        return plan(source)
    return plan(pipeline_file.load(source))


def _path(value: Any, base: Path) -> str | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else base / path)


def read_access(kubeconfig: str | Path) -> native.ClusterAccess:
    """The current context's server and credential files from a kubeconfig (inline data stays in it)."""
    file = Path(kubeconfig).expanduser().resolve()
    try:
        document = yaml.safe_load(file.read_text()) or {}
        current = document["current-context"]
        context = next(c["context"] for c in document["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in document["clusters"] if c["name"] == context["cluster"])
        user: dict[str, Any] = next(
            (u["user"] for u in document.get("users") or [] if u["name"] == context.get("user")), {}
        )
        server = str(cluster["server"])
    except OSError as exc:
        raise PermanentError(f"kubeconfig {file}: {exc.strerror or exc}") from exc
    except (KeyError, StopIteration, TypeError, yaml.YAMLError) as exc:
        raise PermanentError(f"kubeconfig {file}: no server for its current context ({exc!r})") from exc
    base = file.parent
    return native.ClusterAccess(
        kubeconfig=str(file),
        server=server,
        ca_file=_path(cluster.get("certificate-authority"), base),
        cert_file=_path(user.get("client-certificate"), base),
        key_file=_path(user.get("client-key"), base),
        token_file=_path(user.get("tokenFile"), base),
    )


def client_path(engine: str) -> tuple[str, dict[str, str]]:
    """The engine's client from its wheel in this environment, and the environment it needs."""
    package = {"spark": "pyspark", "flink": "pyflink"}.get(engine)
    found = importlib.util.find_spec(package) if package else None
    if package is None or found is None or not found.submodule_search_locations:
        raise LaunchFailed(engine, f"the {package or engine} wheel is not installed in this environment")
    home = Path(next(iter(found.submodule_search_locations)))
    if engine == "spark":
        return str(home / "bin" / "spark-submit"), {"SPARK_HOME": str(home)}
    return str(home / "bin" / "flink"), {}


# -- rendering -------------------------------------------------------------------------------------


def _render(
    source: str | Path | Pipeline | Plan,
    engine: str,
    target: native.Target,
    access: native.ClusterAccess,
    workdir: Path,
) -> tuple[native.Submission, dict[str, str]]:
    if engine not in native.ENGINES:
        raise native.InvalidSubmission(
            f"no native submission for engine {engine!r} (known: {', '.join(native.ENGINES)})"
        )
    client, env = client_path(engine)
    submission = native.submission(_plan_of(source), engine, target, access, workdir, client)
    return submission, env


def _names(submission: native.Submission) -> tuple[str, ...]:
    return (
        *(f"{o['kind']}/{o['metadata']['name']}" for o in submission.objects),
        "/".join(submission.root),
    )


def _result(submission: native.Submission, dry_run: bool, output: str = "") -> LaunchResult:
    return LaunchResult(
        engine=submission.engine,
        job_name=submission.job_name,
        namespace=submission.namespace,
        root=submission.root,
        objects=_names(submission),
        pod_group=submission.pod_group,
        templates=submission.templates,
        command=submission.command,
        service_account=submission.service_account,
        dry_run=dry_run,
        output=output,
        notes=submission.notes,
    )


def render_only(
    spec_path_or_plan: str | Path | Pipeline | Plan,
    engine: str,
    *,
    kubeconfig: str | Path | None = None,
    namespace: str | None = None,
    scheduler_name: str = native.DEFAULT_SCHEDULER,
    queue: str | None = None,
    image: str | None = None,
    job_name: str | None = None,
    service_account: str | None = None,
    bootstrap: str = render.DEFAULT_BOOTSTRAP,
) -> LaunchResult:
    """What `submit_pipeline` would create and run, without contacting anything or running anything.
    Without a kubeconfig the server is the in-cluster one; template paths name `./<job>.<engine>/`."""
    p = _plan_of(spec_path_or_plan)
    access = (
        read_access(kubeconfig)
        if kubeconfig
        else native.ClusterAccess(
            str(Path("~/.kube/config").expanduser()), render.DEFAULT_MASTER.removeprefix("k8s://")
        )
    )
    target = _target(p, namespace, scheduler_name, queue, image, job_name, service_account, bootstrap)
    name = job_name or p.name
    submission, _ = _render(p, engine, target, access, Path(f"{name}.{engine}"))
    return _result(submission, dry_run=True)


def _target(
    p: Plan,
    namespace: str | None,
    scheduler_name: str,
    queue: str | None,
    image: str | None,
    job_name: str | None,
    service_account: str | None,
    bootstrap: str,
) -> native.Target:
    return native.Target(
        namespace=namespace or p.namespace or "default",
        scheduler_name=scheduler_name,
        queue=queue,
        image=image,
        job_name=job_name,
        service_account=service_account,
        bootstrap=bootstrap,
    )


# -- the API server --------------------------------------------------------------------------------


class _Api:
    """The few calls a native submission makes, with API errors turned into our errors."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        self.client = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.client)
        self.apps = client.AppsV1Api(self.client)
        self.rbac = client.RbacAuthorizationV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)

    def close(self) -> None:
        self.client.close()

    def _calls(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        """(create, delete, patch) for a namespaced kind, each taking (namespace, [name,] [body])."""
        if kind == "PodGroup":
            group, version, plural = PODGROUPS
            return (
                lambda ns, body: self.custom.create_namespaced_custom_object(
                    group, version, ns, plural, body
                ),
                lambda ns, name: self.custom.delete_namespaced_custom_object(
                    group, version, plural=plural, namespace=ns, name=name
                ),
                lambda ns, name, body: self.custom.patch_namespaced_custom_object(
                    group, version, ns, plural, name, body
                ),
            )
        table: dict[str, tuple[Any, str]] = {
            "ServiceAccount": (self.core, "service_account"),
            "Role": (self.rbac, "role"),
            "RoleBinding": (self.rbac, "role_binding"),
            "Pod": (self.core, "pod"),
            "Service": (self.core, "service"),
            "ConfigMap": (self.core, "config_map"),
            "Deployment": (self.apps, "deployment"),
            "ReplicaSet": (self.apps, "replica_set"),
        }
        api, noun = table[kind]
        create = getattr(api, f"create_namespaced_{noun}")
        delete = getattr(api, f"delete_namespaced_{noun}")
        patch = getattr(api, f"patch_namespaced_{noun}")
        return (
            create,
            lambda ns, name: delete(name, ns, propagation_policy="Background"),
            lambda ns, name, body: patch(name, ns, body),
        )

    def create(self, obj: dict[str, Any]) -> None:
        self._calls(obj["kind"])[0](obj["metadata"]["namespace"], obj)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """True if it was there."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._calls(kind)[1](namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def own(self, kind: str, namespace: str, name: str, owner: dict[str, Any]) -> None:
        self._calls(kind)[2](namespace, name, {"metadata": {"ownerReferences": [owner]}})

    def read_root(self, kind: str, namespace: str, name: str) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        try:
            if kind == "Pod":
                return self.core.read_namespaced_pod(name, namespace)
            return self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pod_group_exists(self, namespace: str, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        group, version, plural = PODGROUPS
        try:
            self.custom.get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def job_objects(self, job: str, namespace: str) -> list[tuple[str, str]]:
        """(kind, name) of everything labelled with the job, and the Services and ConfigMaps its
        roots own (the engines create those without the job's labels)."""
        selector = f"{native.JOB_LABEL}={job},{native.KIND_LABEL}={native.KIND}"
        group, version, plural = PODGROUPS
        found: list[tuple[str, str]] = []
        roots: set[str] = set()
        for kind, items in (
            ("Deployment", self.apps.list_namespaced_deployment(namespace, label_selector=selector).items),
            ("ReplicaSet", self.apps.list_namespaced_replica_set(namespace, label_selector=selector).items),
            ("Pod", self.core.list_namespaced_pod(namespace, label_selector=selector).items),
            ("RoleBinding", self.rbac.list_namespaced_role_binding(namespace, label_selector=selector).items),
            ("Role", self.rbac.list_namespaced_role(namespace, label_selector=selector).items),
            (
                "ServiceAccount",
                self.core.list_namespaced_service_account(namespace, label_selector=selector).items,
            ),
        ):
            for item in items:
                found.append((kind, item.metadata.name))
                if kind in ("Deployment", "Pod"):
                    roots.add(item.metadata.uid)
        with contextlib.suppress(Exception):  # no PodGroup CRD: nothing of that kind to remove
            podgroups = self.custom.list_namespaced_custom_object(
                group, version, namespace, plural, label_selector=selector
            )
            found += [("PodGroup", g["metadata"]["name"]) for g in podgroups.get("items", [])]
        for kind, items in (
            ("Service", self.core.list_namespaced_service(namespace).items),
            ("ConfigMap", self.core.list_namespaced_config_map(namespace).items),
        ):
            for item in items:
                if any(ref.uid in roots for ref in item.metadata.owner_references or []):
                    found.append((kind, item.metadata.name))
        return found


def _api_error(exc: Exception) -> str:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        import json

        message = exc.reason or ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = str(json.loads(exc.body or "{}").get("message") or message)
        return f"HTTP {exc.status} {message}"
    return str(exc) or type(exc).__name__


# -- running the client ----------------------------------------------------------------------------


def run_client(
    command: tuple[str, ...], env: dict[str, str], cwd: Path, timeout_s: float
) -> tuple[int | None, str]:
    """Run a client in its own process group; on timeout (or interruption) kill the whole group.
    Returns (exit status, output); (None, the output so far) when it timed out."""
    with subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            output, _ = process.communicate()
            return None, output or ""
        finally:
            if process.poll() is None:
                _kill_group(process)
        return process.returncode, output or ""


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tidescale-submit-") as directory:
        yield Path(directory)


def _tail(output: str) -> str:
    return output[-OUTPUT_TAIL:]


# -- submit and delete -----------------------------------------------------------------------------


def submit_pipeline(
    spec_path_or_plan: str | Path | Pipeline | Plan,
    engine: str,
    *,
    kubeconfig: str | Path,
    namespace: str | None = None,
    scheduler_name: str = native.DEFAULT_SCHEDULER,
    queue: str | None = None,
    image: str | None = None,
    job_name: str | None = None,
    service_account: str | None = None,
    bootstrap: str = render.DEFAULT_BOOTSTRAP,
    replace: bool = False,
    dry_run: bool = False,
    timeout_s: float = SUBMIT_TIMEOUT_S,
    clock: Clock = SYSTEM_CLOCK,
    owner: Mapping[str, Any] | None = None,
) -> LaunchResult:
    """Submit a pipeline natively (`engine`: spark or flink) through `scheduler_name`.

    `namespace` None: the spec's, else `default`; `queue` None: the spec's `scheduling.queue`; `image`
    None: the spec's, else the engine's default; `job_name` None: the pipeline's name;
    `service_account` None: one made for the job. The spec's own `scheduling.schedulerName` is for the
    operator manifests (`pipeline render`); here every pod goes through `scheduler_name`.
    `owner`: an ownerReference (apiVersion, kind, name, uid) the root is given in step 5, so that deleting
    that owner removes the whole job (the launcher's root ConfigMap, `tidescale submit`).
    Raises `InvalidSpec`, `native.InvalidSubmission`, `PipelineExists` or `LaunchFailed`."""
    if dry_run:
        return render_only(
            spec_path_or_plan,
            engine,
            kubeconfig=kubeconfig,
            namespace=namespace,
            scheduler_name=scheduler_name,
            queue=queue,
            image=image,
            job_name=job_name,
            service_account=service_account,
            bootstrap=bootstrap,
        )
    p = _plan_of(spec_path_or_plan)
    access = read_access(kubeconfig)
    target = _target(p, namespace, scheduler_name, queue, image, job_name, service_account, bootstrap)
    api = _Api(access.kubeconfig)
    try:
        with _workdir() as workdir:
            # 1. render
            submission, env = _render(p, engine, target, access, workdir)
            # 2. refuse what exists
            _refuse_or_replace(api, submission, replace, clock)
            # 3. create the account and the PodGroup
            created: list[tuple[str, str]] = []
            try:
                for obj in submission.objects:
                    try:
                        api.create(obj)
                    except Exception as exc:
                        what = f"{obj['kind']} {submission.namespace}/{obj['metadata']['name']}"
                        reason = _api_error(exc)
                        if obj["kind"] == "PodGroup" and reason.startswith("HTTP 404"):
                            reason += f" (is the PodGroup CRD {native.PODGROUP_API} installed?)"
                        raise LaunchFailed(engine, f"creating {what}: {reason}") from exc
                    created.append((obj["kind"], obj["metadata"]["name"]))
                # 4. the engine's own client
                output = _run(submission, env, timeout_s)
                # 5. the root owns the rest (and is owned by `owner`)
                _adopt(api, submission, created, output, owner)
            except BaseException:
                # the root did not exist before step 2, so whatever is there now is this submission's
                with contextlib.suppress(Exception):
                    _remove(api, submission.job_name, submission.namespace, [*created, submission.root])
                raise
            return _result(submission, dry_run=False, output=_tail(output))
    finally:
        api.close()


def _refuse_or_replace(api: _Api, submission: native.Submission, replace: bool, clock: Clock) -> None:
    kind, name = submission.root
    try:
        exists = api.read_root(kind, submission.namespace, name) is not None or api.pod_group_exists(
            submission.namespace, submission.job_name
        )
    except Exception as exc:
        raise LaunchFailed(submission.engine, f"reading {kind} {name}: {_api_error(exc)}") from exc
    if not exists:
        return
    if not replace:
        raise PipelineExists(
            f"pipeline {submission.namespace}/{submission.job_name} exists (its {kind} {name} or PodGroup"
            f" {submission.job_name} is there): delete it or submit with replace"
        )
    _delete(api, submission.job_name, submission.namespace, [submission.root], DELETE_TIMEOUT_S, clock)


def _run(submission: native.Submission, env: dict[str, str], timeout_s: float) -> str:
    for path, text in submission.files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    status, output = run_client(submission.command, {**env, **submission.env}, submission.workdir, timeout_s)
    client = Path(submission.command[0]).name
    if status is None:
        raise LaunchFailed(
            submission.engine,
            f"{client} did not finish within {timeout_s:g} s (killed)",
            _tail(output),
            submission.command,
        )
    if status != 0:
        reason = native.failure_reason(output)
        raise LaunchFailed(
            submission.engine, f"{client} exited {status}: {reason}", _tail(output), submission.command
        )
    return output


def _adopt(
    api: _Api,
    submission: native.Submission,
    created: list[tuple[str, str]],
    output: str,
    owner_of_root: Mapping[str, Any] | None = None,
) -> None:
    kind, name = submission.root
    client = Path(submission.command[0]).name
    try:
        root = api.read_root(kind, submission.namespace, name)
    except Exception as exc:
        raise LaunchFailed(submission.engine, f"reading {kind} {name}: {_api_error(exc)}") from exc
    if root is None:
        raise LaunchFailed(
            submission.engine, f"{client} exited 0 but {kind} {name} does not exist", _tail(output)
        )
    owner = {
        "apiVersion": "v1" if kind == "Pod" else "apps/v1",
        "kind": kind,
        "name": name,
        "uid": root.metadata.uid,
    }
    for child_kind, child in created:
        try:
            api.own(child_kind, submission.namespace, child, owner)
        except Exception as exc:
            raise LaunchFailed(
                submission.engine, f"making {kind} {name} own {child_kind} {child}: {_api_error(exc)}"
            ) from exc
    if owner_of_root is not None:
        try:
            api.own(kind, submission.namespace, name, dict(owner_of_root))
        except Exception as exc:
            what = f"{owner_of_root.get('kind')} {owner_of_root.get('name')}"
            raise LaunchFailed(
                submission.engine, f"making {what} own {kind} {name}: {_api_error(exc)}"
            ) from exc


def _remove(api: _Api, job: str, namespace: str, named: list[tuple[str, str]]) -> list[str]:
    """Delete the job's objects (by label and ownership) and `named`; returns `Kind/name` deleted."""
    deleted: list[str] = []
    targets = list(dict.fromkeys([*named, *api.job_objects(job, namespace)]))
    # what the roots own first (else the garbage collector races us to it), then the roots, a Deployment
    # before its ReplicaSets and those before their pods (else each recreates the next)
    targets.sort(key=lambda t: DELETE_ORDER.index(t[0]))
    for kind, name in targets:
        with contextlib.suppress(Exception):  # best effort: report what went, leave the rest to the GC
            if api.delete(kind, namespace, name):
                deleted.append(f"{kind}/{name}")
    return deleted


def _delete(
    api: _Api, job: str, namespace: str, named: list[tuple[str, str]], timeout_s: float, clock: Clock
) -> list[str]:
    deleted = _remove(api, job, namespace, named)
    deadline = Deadline(timeout_s, clock)
    while True:
        left = api.job_objects(job, namespace) + [
            (k, n) for k, n in named if api_exists(api, k, namespace, n)
        ]
        if not left:
            return deleted
        if deadline.expired():
            raise PermanentError(
                f"pipeline {namespace}/{job}: still there after {timeout_s:g} s: "
                + ", ".join(f"{k}/{n}" for k, n in left)
            )
        # what a dying JobManager or driver may still have created (a TaskManager, an executor)
        _remove(api, job, namespace, [])
        clock.sleep(0.5)


def api_exists(api: _Api, kind: str, namespace: str, name: str) -> bool:
    if kind in ("Pod", "Deployment"):
        return api.read_root(kind, namespace, name) is not None
    if kind == "PodGroup":
        return api.pod_group_exists(namespace, name)
    return False


def delete_pipeline(
    job_name: str,
    *,
    kubeconfig: str | Path,
    namespace: str = "default",
    timeout_s: float = DELETE_TIMEOUT_S,
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[str, ...]:
    """Delete a natively submitted pipeline — its root (driver pod or JobManager Deployment), PodGroup,
    account, the pods and ReplicaSets labelled with it and the Services and ConfigMaps its root owns —
    and wait until they are gone. Returns `Kind/name` of what was deleted; () if there was nothing."""
    access = read_access(kubeconfig)
    api = _Api(access.kubeconfig)
    try:
        # a driver pod or Deployment of that name that is not a tidescale pipeline is not ours to delete
        ours: list[tuple[str, str]] = []
        for kind, name in (("Pod", f"{job_name}-driver"), ("Deployment", job_name)):
            root = api.read_root(kind, namespace, name)
            if root is not None and (root.metadata.labels or {}).get(native.JOB_LABEL) == job_name:
                ours.append((kind, name))
        return tuple(_delete(api, job_name, namespace, ours, timeout_s, clock))
    finally:
        api.close()
