"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK (fake nodes and pod lifecycles), from binaries built from the Go module proxy.

Certificates and the service-account key are generated per environment; RBAC authorization and the
default admission plugins are on. Nothing here dials a pod or node IP (they are strings in status).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from kernel import artefacts
from kernel.clock import SYSTEM_CLOCK
from kernel.errors import PermanentError
from tidescale.local import pki
from tidescale.local.process import (
    ComponentError,
    Spawned,
    SpawnHook,
    ensure_port_free,
    free_port,
    spawn,
    stop,
    wait_until,
)

COMPONENT = "kubernetes"
SERVICE_CIDR = "10.0.0.0/24"
KWOK_NODE_SELECTOR = "kwok.x-k8s.io/node=fake"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# The ports a restart keeps: the API server's (in every kubeconfig) and etcd's (in its member data). The
# health ports of the controller manager, the scheduler and KWOK are nobody else's business.
KEPT_PORTS = ("kube-apiserver", "etcd-client", "etcd-peer")


@dataclass(frozen=True)
class ControlPlane:
    """The processes of one control plane, the API server URL and the admin kubeconfig."""

    processes: tuple[Spawned, ...]
    server: str
    kubeconfig: Path
    ports: dict[str, int]  # KEPT_PORTS by name: what a restart on the same state directory binds again


# KWOK's default "fast" stages (what kwokctl passes it): nodes become Ready and renew leases; pods run,
# Job pods complete, deletions finish. Read from the KWOK module the build downloaded.
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


def built_versions() -> dict[str, str]:
    """`<cache>/bin/VERSIONS`, written by deps/build-kubernetes.sh: binary name → version."""
    path = artefacts.cache_dir() / "bin" / "VERSIONS"
    if not path.exists():
        return {}
    return dict(line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip())


def kwok_stages(destination: Path) -> Path:
    version = built_versions().get("kwok")
    if version is None:
        raise ComponentError("kwok", "no kwok version in <cache>/bin/VERSIONS: run `make setup`")
    root = artefacts.cache_dir() / "go" / "mod" / "sigs.k8s.io" / f"kwok@{version}" / "kustomize" / "stage"
    missing = [s for s in KWOK_STAGES if not (root / s).is_file()]
    if missing:
        raise ComponentError(
            "kwok", f"stage files {', '.join(missing)} missing under {root}: run `make setup`"
        )
    destination.write_text("\n---\n".join((root / s).read_text().strip() for s in KWOK_STAGES) + "\n")
    return destination


def _binary(name: str) -> Path:
    try:
        return artefacts.cached_binary(name)
    except PermanentError as exc:
        raise ComponentError(COMPONENT, str(exc)) from exc


def _https_ready(url: str, certs: pki.Pki) -> bool:
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))
    response = httpx.get(url, verify=context, timeout=2)
    return response.status_code == 200


def _insecure_ready(url: str) -> bool:
    # kcm and the scheduler serve /healthz with a self-signed certificate of their own.
    return httpx.get(url, verify=False, timeout=2).status_code == 200


def start(
    state_dir: Path,
    timeout: float = 120,
    ports: Mapping[str, int] | None = None,
    on_spawn: SpawnHook | None = None,
) -> ControlPlane:
    """Start etcd, the API server (until /readyz), the controller manager, the scheduler and KWOK. Given the
    `ports` of an earlier start (a restart), bind those again and keep its certificates, so that kubeconfigs
    and service-account tokens handed out before still work."""
    home = state_dir / COMPONENT
    logs = state_dir / "logs"
    binaries = {name: _binary(name) for name in BINARIES}
    certs = (ports and pki.existing(home / "pki")) or pki.generate(home / "pki", SYSTEM_CLOCK.now())
    kept = dict(ports or {})
    started: list[Spawned] = []
    try:
        # 1. etcd: the datastore, on loopback, without fsync (tests do not need durability).
        client, peer = kept.get("etcd-client") or free_port(), kept.get("etcd-peer") or free_port()
        ensure_port_free("etcd", client)
        ensure_port_free("etcd", peer)
        etcd = spawn(
            "etcd",
            [
                str(binaries["etcd"]),
                "--name=local",
                f"--data-dir={home / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=local=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ],
            logs / "etcd.log",
            on_spawn=on_spawn,
        )
        started.append(etcd)
        wait_until(
            etcd,
            lambda: httpx.get(f"http://127.0.0.1:{client}/health", timeout=2).status_code == 200,
            30,
            "healthy",
        )

        # 2. kube-apiserver: RBAC on, default admission plugins plus NodeRestriction, as kubeadm runs it.
        port = kept.get("kube-apiserver") or free_port()
        ensure_port_free("kube-apiserver", port)
        server = f"https://127.0.0.1:{port}"
        apiserver = spawn(
            "kube-apiserver",
            [
                str(binaries["kube-apiserver"]),
                f"--etcd-servers=http://127.0.0.1:{client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={home / 'apiserver-certs'}",
                f"--tls-cert-file={certs.serving_cert}",
                f"--tls-private-key-file={certs.serving_key}",
                f"--client-ca-file={certs.ca_cert}",
                f"--service-account-issuer={server}",
                f"--service-account-key-file={certs.sa_pub}",
                f"--service-account-signing-key-file={certs.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
            ],
            logs / "kube-apiserver.log",
            on_spawn=on_spawn,
        )
        started.append(apiserver)
        wait_until(apiserver, lambda: _https_ready(f"{server}/readyz", certs), timeout, "ready (/readyz)")

        kubeconfig = home / "admin.kubeconfig"
        kubeconfig.write_text(pki.kubeconfig(server, certs))
        kubeconfig.chmod(0o600)

        # 3. The controller manager (ReplicaSets, Jobs, GC, ServiceAccounts…) and the scheduler.
        kcm_port = free_port()
        kcm = spawn(
            "kube-controller-manager",
            [
                str(binaries["kube-controller-manager"]),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={home / 'kcm-certs'}",
                "--leader-elect=false",
                f"--service-account-private-key-file={certs.sa_key}",
                f"--root-ca-file={certs.ca_cert}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={certs.ca_cert}",
                f"--cluster-signing-key-file={certs.ca_key}",
                "--controllers=*",
                "--concurrent-deployment-syncs=2",
                "--concurrent-replicaset-syncs=2",
                "--v=1",
            ],
            logs / "kube-controller-manager.log",
            on_spawn=on_spawn,
        )
        started.append(kcm)
        scheduler_port = free_port()
        scheduler = spawn(
            "kube-scheduler",
            [
                str(binaries["kube-scheduler"]),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
                f"--cert-dir={home / 'scheduler-certs'}",
                "--leader-elect=false",
                "--v=1",
            ],
            logs / "kube-scheduler.log",
            on_spawn=on_spawn,
        )
        started.append(scheduler)

        # 4. KWOK: keeps annotated Nodes Ready and moves their pods through the default stages.
        kwok_port = free_port()
        stages = kwok_stages(home / "kwok-stages.yaml")
        kwok = spawn(
            "kwok",
            [
                str(binaries["kwok"]),
                f"--kubeconfig={kubeconfig}",
                f"--config={stages}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_SELECTOR}",
                "--manage-nodes-with-label-selector=",
                "--manage-single-node=",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{kwok_port}",
            ],
            logs / "kwok.log",
            on_spawn=on_spawn,
        )
        started.append(kwok)
        wait_until(kcm, lambda: _insecure_ready(f"https://127.0.0.1:{kcm_port}/healthz"), 60, "healthy")
        wait_until(
            scheduler, lambda: _insecure_ready(f"https://127.0.0.1:{scheduler_port}/healthz"), 60, "healthy"
        )
        wait_until(
            kwok,
            lambda: httpx.get(f"http://127.0.0.1:{kwok_port}/healthz", timeout=2).status_code == 200,
            60,
            "healthy",
        )
    except BaseException:
        for process in reversed(started):
            stop(process.pid, process.component)
        raise
    return ControlPlane(
        tuple(started), server, kubeconfig, {"kube-apiserver": port, "etcd-client": client, "etcd-peer": peer}
    )
