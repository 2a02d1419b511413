"""The API client every process makes sends its kubeconfig's token: the client library's 36.0.0 did not
(kubernetes-client/python#2584), so a pod's requests went out as `system:anonymous`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kernel.kubeclient import api_client


def a_kubeconfig(folder: Path, token: str) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def sent(api: Any) -> dict[str, str]:
    """The headers the generated client adds to a request that names the BearerToken scheme."""
    headers: dict[str, str] = {}
    api.update_params_for_auth(headers, [], ["BearerToken"])
    return headers


def test_a_kubeconfigs_token_is_sent_as_a_bearer_token(tmp_path: Path) -> None:
    api = api_client(a_kubeconfig(tmp_path, "sa-token"))
    assert sent(api) == {"authorization": "Bearer sa-token"}
