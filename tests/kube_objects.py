"""Kubernetes objects the integration tests create, built in one place."""

from __future__ import annotations

from typing import Any

GPU = "nvidia.com/gpu"


def a_deployment(
    name: str,
    replicas: int = 1,
    gpus: int = 0,
    *,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, str]] | None = None,
    container: str = "server",
    image: str = "vllm/vllm-openai:v0.11.0",
) -> dict[str, Any]:
    """A Deployment of `replicas` pods labelled `app=<name>`, each asking for `gpus` GPUs (as limits)."""
    pod: dict[str, Any] = {
        "containers": [
            {"name": container, "image": image, "resources": {"limits": {GPU: str(gpus)}} if gpus else {}}
        ]
    }
    if node_selector:
        pod["nodeSelector"] = node_selector
    if tolerations:
        pod["tolerations"] = tolerations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
        },
    }


def a_pdb(name: str, labels: dict[str, str], max_unavailable: int = 0) -> dict[str, Any]:
    """A PodDisruptionBudget over the pods with `labels`."""
    return {
        "metadata": {"name": name},
        "spec": {"maxUnavailable": max_unavailable, "selector": {"matchLabels": labels}},
    }


def a_kwok_node_pool(name: str) -> dict[str, Any]:
    """A tidescale NodePool of 4-GPU KWOK nodes (at most 2) that come Ready at once."""
    node = {"gpuModel": "NVIDIA L40S", "gpus": 4, "gpuMemoryMiB": 46068, "cpu": "48", "memory": "384Gi"}
    return {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "node": node,
            "maxNodes": 2,
            "hourlyPrice": 7.0,
            "provisioningSeconds": 0,
            "provider": {"type": "KWOK"},
        },
    }
