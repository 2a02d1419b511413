"""The Cluster API node-pool provider (`type: ClusterAPI`): a pool is one MachineDeployment, scaled through
its /scale subresource.

API: `cluster.x-k8s.io/v1beta2` — in the upstream CRD
(../shared/crds/cluster.x-k8s.io_machinedeployments.yaml) v1beta1 and v1beta2 are both served and v1beta2
is the storage version; the /scale subresource maps `.spec.replicas`. Machines are read and annotated at
the same group and version.

- `add(n)` raises `spec.replicas` by n (read-modify-write of /scale with its resourceVersion, retried on a
  409 conflict); the Cluster API controllers create the machines, which join as nodes later.
- `remove(names)` cordons and drains each node (PodDisruptionBudgets respected; a refused node stays
  cordoned and is reported blocked), marks the node's Machine with `cluster.x-k8s.io/delete-machine`
  (a MachineSet deletes marked machines first when it scales down), then lowers replicas by the number
  marked. A drained node whose Machine cannot be found is not counted: lowering replicas for it would let
  the MachineSet pick some other, undrained machine. The node's Machine is the one the node's
  `cluster.x-k8s.io/machine` annotation names, else the Machine of the deployment whose `status.nodeRef`
  is the node.
- `nodes()` lists real nodes only: those labelled `cluster.x-k8s.io/deployment-name=<md>` and those the
  deployment's Machines point at. A machine still provisioning has no Node yet and is no `PoolNode`;
  `provisioning(pool)` counts them (spec.replicas minus the nodes found) for the caller to add to the pool's
  size against maxNodes.

Only the API effects are tested locally (no Cluster API controllers run there). This module does not decide
which nodes go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autoscaler.api.policy import ClusterAPIProvider, MachineDeploymentRef, NodePool
from autoscaler.controller.pools.drain import MERGE_PATCH, NodeDrainer, api_error, cordon_members, kube_call
from autoscaler.controller.pools.kwok import ACTIVE_PODS, gpus_by_node, node_row
from autoscaler.controller.ports import PoolChangeResult
from autoscaler.core.decide import pool_nodes
from autoscaler.core.nodepool import PoolNode
from kernel.clock import SYSTEM_CLOCK, Clock
from kernel.errors import PermanentError, TemporaryError

GROUP = "cluster.x-k8s.io"
VERSION = "v1beta2"
MACHINE_DEPLOYMENTS = "machinedeployments"
MACHINES = "machines"
DEPLOYMENT_LABEL = "cluster.x-k8s.io/deployment-name"
MACHINE_ANNOTATION = "cluster.x-k8s.io/machine"  # on a Node: its Machine's name
CLUSTER_NAMESPACE_ANNOTATION = "cluster.x-k8s.io/cluster-namespace"  # on a Node: its Machine's namespace
DELETE_MACHINE_ANNOTATION = "cluster.x-k8s.io/delete-machine"
CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class Machine:
    namespace: str
    name: str
    node: str  # status.nodeRef.name, "" while provisioning


def _deployment(pool: NodePool) -> MachineDeploymentRef:
    provider = pool.spec.provider
    if not isinstance(provider, ClusterAPIProvider):
        raise PermanentError(f"pool {pool.metadata.name}: provider {provider.type}, not ClusterAPI")
    return provider.machine_deployment


class ClusterAPIPoolProvider:
    """Nodes of `ClusterAPI` pools through their MachineDeployment's /scale and Machines."""

    type = "ClusterAPI"

    def __init__(
        self,
        api: client.ApiClient,
        clock: Clock = SYSTEM_CLOCK,
        drain_timeout: float = 120.0,
        version: str = VERSION,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._drainer = NodeDrainer(api, clock, drain_timeout)
        self._version = version

    # --- reading ------------------------------------------------------------------------------------------

    def replicas(self, pool: NodePool) -> int:
        """The MachineDeployment's spec.replicas, read through /scale."""
        md = _deployment(pool)
        scale = kube_call(
            f"read /scale of MachineDeployment {md.namespace}/{md.name}",
            self._custom.get_namespaced_custom_object_scale,
            GROUP,
            self._version,
            md.namespace,
            MACHINE_DEPLOYMENTS,
            md.name,
        )
        return int(scale.get("spec", {}).get("replicas") or 0)

    def machines(self, pool: NodePool) -> list[Machine]:
        """The deployment's Machines; none where the Machine API is not installed."""
        md = _deployment(pool)
        try:
            listed = self._custom.list_namespaced_custom_object(
                GROUP, self._version, md.namespace, MACHINES, label_selector=f"{DEPLOYMENT_LABEL}={md.name}"
            )
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise api_error(exc, f"list Machines of MachineDeployment {md.namespace}/{md.name}") from exc
        out = []
        for item in listed.get("items", []):
            meta = item.get("metadata", {})
            ref = (item.get("status") or {}).get("nodeRef") or {}
            out.append(Machine(meta.get("namespace", md.namespace), meta["name"], ref.get("name", "")))
        return out

    def _nodes(self, pool: NodePool, machines: Sequence[Machine]) -> list[client.V1Node]:
        md = _deployment(pool)
        what = f"list nodes of MachineDeployment {md.namespace}/{md.name}"
        referenced = {m.node for m in machines if m.node}
        if not referenced:
            listed = kube_call(what, self._core.list_node, label_selector=f"{DEPLOYMENT_LABEL}={md.name}")
            return list(listed.items)
        # machines point at nodes by name: one list of all nodes beats one read per node
        listed = kube_call(what, self._core.list_node)
        return [
            n
            for n in listed.items
            if n.metadata.name in referenced or (n.metadata.labels or {}).get(DEPLOYMENT_LABEL) == md.name
        ]

    def nodes(self, pool: NodePool, now: float, previous: Mapping[str, PoolNode]) -> tuple[PoolNode, ...]:
        """The deployment's real nodes (not yet Ready ones included); machines without a node are not here
        (`provisioning`)."""
        listed = self._nodes(pool, self.machines(pool))
        if not listed:
            return ()
        pods = kube_call("list pods", self._core.list_pod_for_all_namespaces, field_selector=ACTIVE_PODS)
        requested = gpus_by_node(pods.items)
        rows = [node_row(n, requested) for n in sorted(listed, key=lambda n: n.metadata.name)]
        return pool_nodes(pool, rows, previous, now)

    def provisioning(self, pool: NodePool) -> int:
        """Machines asked for that have no node yet: spec.replicas minus the nodes found."""
        return max(0, self.replicas(pool) - len(self._nodes(pool, self.machines(pool))))

    # --- changing -----------------------------------------------------------------------------------------

    def _rescale(self, pool: NodePool, delta: int) -> tuple[int, int]:
        """Add `delta` to spec.replicas through /scale (not below 0), retrying conflicts: (before, after)."""
        md = _deployment(pool)
        what = f"scale MachineDeployment {md.namespace}/{md.name}"
        args = (GROUP, self._version, md.namespace, MACHINE_DEPLOYMENTS, md.name)
        for _ in range(CONFLICT_RETRIES):
            scale = kube_call(what, self._custom.get_namespaced_custom_object_scale, *args)
            before = int(scale.get("spec", {}).get("replicas") or 0)
            after = max(0, before + delta)
            if after == before:
                return before, after
            # the read resourceVersion travels with the body: a concurrent change makes this a 409
            body = {**scale, "spec": {**scale.get("spec", {}), "replicas": after}}
            try:
                self._custom.replace_namespaced_custom_object_scale(*args, body)
            except ApiException as exc:
                if exc.status == 409:
                    continue
                raise api_error(exc, f"{what} {before} → {after}") from exc
            return before, after
        raise TemporaryError(f"{what}: /scale kept conflicting ({CONFLICT_RETRIES} tries)")

    def add(self, pool: NodePool, count: int) -> PoolChangeResult:
        """Raise replicas by `count`; `added` names the requested replica slots (`<md>#<index>`): the
        machines' names are the Cluster API controllers' to choose."""
        md = _deployment(pool)
        if count <= 0:
            return PoolChangeResult(pool.metadata.name)
        before, after = self._rescale(pool, count)
        return PoolChangeResult(
            pool.metadata.name,
            added=tuple(f"{md.name}#{i}" for i in range(before, after)),
            reason=f"MachineDeployment {md.namespace}/{md.name}: replicas {before} → {after}",
        )

    def _machine_of(self, node: client.V1Node, machines: Sequence[Machine], namespace: str) -> Machine | None:
        annotations = node.metadata.annotations or {}
        named = annotations.get(MACHINE_ANNOTATION)
        if named:
            return Machine(
                annotations.get(CLUSTER_NAMESPACE_ANNOTATION, namespace), named, node.metadata.name
            )
        return next((m for m in machines if m.node == node.metadata.name), None)

    def _mark(self, machine: Machine) -> bool:
        """Annotate the Machine for deletion first; False when there is no such Machine."""
        try:
            self._custom.patch_namespaced_custom_object(
                GROUP,
                self._version,
                machine.namespace,
                MACHINES,
                machine.name,
                {"metadata": {"annotations": {DELETE_MACHINE_ANNOTATION: "true"}}},
                _content_type=MERGE_PATCH,
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise api_error(exc, f"mark Machine {machine.namespace}/{machine.name} for deletion") from exc
        return True

    def remove(self, pool: NodePool, names: Sequence[str]) -> PoolChangeResult:
        """Cordon and drain each node, mark its Machine for deletion, lower replicas by the machines marked.
        Blocked nodes (a PodDisruptionBudget said no) and nodes without a Machine stay, cordoned."""
        md = _deployment(pool)
        machines = self.machines(pool)
        by_name = {n.metadata.name: n for n in self._nodes(pool, machines)}
        members = [n for n in names if n in by_name]
        strangers = [n for n in names if n not in by_name]
        drained, refused = self._drainer.drain_nodes(members)
        marked: list[str] = []
        orphans: list[str] = []
        for name in drained:
            machine = self._machine_of(by_name[name], machines, md.namespace)
            if machine is not None and self._mark(machine):
                marked.append(name)
            else:
                orphans.append(name)
        reasons = []
        if marked:
            before, after = self._rescale(pool, -len(marked))
            reasons.append(
                f"{len(marked)} node(s) drained, their Machines marked for deletion; "
                f"MachineDeployment {md.namespace}/{md.name}: replicas {before} → {after}"
            )
        reasons += [r.why_not() for r in refused]
        if orphans:
            reasons.append(f"no Machine found for {', '.join(orphans)}: drained and left cordoned")
        if strangers:
            reasons.append(f"not nodes of MachineDeployment {md.namespace}/{md.name}: {', '.join(strangers)}")
        blocked = tuple(r.node for r in refused)
        return PoolChangeResult(
            pool.metadata.name,
            removed=tuple(marked),
            cordoned=blocked + tuple(orphans),
            blocked=blocked,
            reason="; ".join(reasons),
        )

    def cordon(self, pool: NodePool, names: Sequence[str], cordoned: bool) -> PoolChangeResult:
        mine = {n.metadata.name for n in self._nodes(pool, self.machines(pool))}
        members = [n for n in names if n in mine]
        strangers = [n for n in names if n not in mine]
        return cordon_members(self._drainer, pool.metadata.name, members, strangers, cordoned)
