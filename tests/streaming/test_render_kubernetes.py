"""The rendered FlinkDeployment and SparkApplication are accepted by the real API server with the
upstream operator CRDs (from ../shared/crds) installed: a server-side dry-run create of each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kernel.clock import SYSTEM_CLOCK, Deadline
from streaming import pipeline_file, render
from streaming.plan import plan
from tidescale.local import environment

pytestmark = pytest.mark.integration
CRDS = Path(__file__).resolve().parents[3] / "shared" / "crds"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
OPERATOR_CRDS = ("flinkdeployments.flink.apache.org-v1.yml", "sparkoperator.k8s.io_sparkapplications.yaml")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.ApiClient]:
    state_dir = tmp_path_factory.mktemp("kubernetes-render")
    env = environment.up(["kubernetes"], state_dir)
    try:
        api_client = config.new_client_from_config(config_file=env.kubeconfig)
        extensions = client.ApiextensionsV1Api(api_client)
        for name in OPERATOR_CRDS:
            crd = yaml.safe_load((CRDS / name).read_text())
            try:
                extensions.create_custom_resource_definition(crd)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            deadline = Deadline(60)
            while not deadline.expired():
                status = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status
                if any(c.type == "Established" and c.status == "True" for c in (status.conditions or [])):
                    break
                SYSTEM_CLOCK.sleep(0.25)
        yield api_client
    finally:
        environment.down(state_dir)


def dry_run_create(api_client: client.ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    group, version = obj["apiVersion"].split("/")
    plural = {"FlinkDeployment": "flinkdeployments", "SparkApplication": "sparkapplications"}[obj["kind"]]
    created: dict[str, Any] = client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        group, version, "default", plural, obj, dry_run="All"
    )
    return created


@pytest.mark.parametrize("engine", ["flink", "spark"])
@pytest.mark.parametrize("example", ["llm-preprocessor", "feature-aggregator"])
def test_the_api_server_accepts_the_rendered_manifest_of_each_example(
    engine: str, example: str, api: client.ApiClient
) -> None:
    p = plan(pipeline_file.load(EXAMPLES / f"{example}.yaml"))
    obj = (render.flink(p) if engine == "flink" else render.spark(p)).objects[0]

    created = dry_run_create(api, obj)

    assert created["kind"] == obj["kind"] and created["spec"]["image"] == obj["spec"]["image"]


def test_the_api_server_refuses_a_manifest_the_crd_schema_forbids(api: client.ApiClient) -> None:
    p = plan(pipeline_file.load(EXAMPLES / "llm-preprocessor.yaml"))
    obj = render.spark(p).objects[0]
    obj["spec"]["executor"]["instances"] = "two"  # the CRD says integer
    with pytest.raises(ApiException) as refused:
        dry_run_create(api, obj)
    assert refused.value.status == 422
