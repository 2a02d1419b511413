"""The one way a process gets a Kubernetes API client: a kubeconfig file, or the pod's service account when
none is given; `PermanentError` naming the file and the reason when neither works (never a traceback).

The client library is pinned at 36.0.3 or later of 36.x: 36.0.0's generated client did not send the token
its config loaders set (kubernetes-client/python#2584), so every request of a pod went out as
`system:anonymous` and was refused (tests/kernel/test_kubeclient.py guards it)."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config

from kernel.errors import PermanentError


def api_client(kubeconfig: str | None, pool: int | None = None) -> Any:
    """`pool`: HTTP connections kept per host (threads that call the API at once need one each)."""
    if kubeconfig:
        try:
            api = config.new_client_from_config(config_file=kubeconfig)
        except (config.ConfigException, OSError) as e:
            raise PermanentError(f"--kubeconfig {kubeconfig}: {e}") from e
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException as e:
            raise PermanentError(f"no --kubeconfig and not in a cluster: {e}") from e
        api = client.ApiClient()
    if pool is not None:
        api.configuration.connection_pool_maxsize = pool
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = pool
    return api
