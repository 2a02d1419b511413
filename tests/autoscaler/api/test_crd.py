"""The CRDs generated from the policy models: equal to the committed files, structural, and accepting every
example policy and node pool (validated here with jsonschema; the CEL rules are checked on the real API
server in tests/autoscaler/controller/test_crds_on_apiserver.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from autoscaler.api import crd
from tidescale.cli import main

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / crd.CRD_DIR
EXAMPLES = sorted((ROOT / "examples" / "policies").glob("*.yaml"))
# Keywords a structural schema may not use (they need a type of their own, or defeat pruning).
FORBIDDEN = ("$ref", "anyOf", "oneOf", "allOf", "not", "discriminator", "const", "title", "$defs")


def example_documents() -> list[Any]:
    return [
        pytest.param(doc, id=f"{path.stem}/{doc['metadata']['name']}")
        for path in EXAMPLES
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def open_api_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd.crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def as_strict_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI schema as JSON Schema draft 4 (the API server's checks of the fields it knows); unknown
    fields pass where the schema keeps them, as the API server keeps them there."""
    out = copy.deepcopy(node)
    for key in [k for k in out if k.startswith("x-kubernetes-")] + ["nullable"]:
        out.pop(key, None)
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable"):
        out["type"] = [out["type"], "null"]
    if "properties" in node:
        out["properties"] = {name: as_strict_json_schema(sub) for name, sub in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = as_strict_json_schema(node["additionalProperties"])
    if "items" in node:
        out["items"] = as_strict_json_schema(node["items"])
    return out


def schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path or "(root)", node
    for name, sub in node.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")


def validate(doc: dict[str, Any]) -> None:
    jsonschema.Draft4Validator(as_strict_json_schema(open_api_schema(doc["kind"]))).validate(doc)


def a_policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tidescale.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "targetRef": {"name": "web"},
            "maxReplicas": 4,
            "triggers": [{"type": "GPUUtilization", "target": 70}],
        }
        | spec,
    }


# --- the committed files ----------------------------------------------------------------------------------


def test_the_committed_crds_are_the_generated_ones() -> None:
    generated = crd.files()
    committed = {p.name: p.read_text() for p in COMMITTED.glob("*.yaml")}
    assert (
        sorted(committed)
        == sorted(generated)
        == [
            "nodepools.tidescale.io.yaml",
            "scalingpolicies.tidescale.io.yaml",
        ]
    )
    for name, text in generated.items():
        assert committed[name] == text, f"{name} is stale: run `{crd.REGENERATE}`"


def test_each_committed_file_says_it_is_generated_and_how_to_regenerate_it() -> None:
    for path in COMMITTED.glob("*.yaml"):
        header = path.read_text().splitlines()[:2]
        assert header[0].startswith("# Generated from autoscaler/api/policy.py")
        assert crd.REGENERATE in header[1]


def test_crds_check_passes_on_the_committed_folder_and_fails_on_a_stale_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["crds", "--check", str(COMMITTED)]) == 0
    assert main(["crds", "--write", str(tmp_path)]) == 0
    stale = tmp_path / "nodepools.tidescale.io.yaml"
    stale.write_text(stale.read_text().replace("minimum: 1", "minimum: 2"))
    capsys.readouterr()

    assert main(["crds", "--check", str(tmp_path)]) == 1
    assert "nodepools.tidescale.io.yaml: differs from the generated CRD" in capsys.readouterr().err


def test_crds_without_a_folder_prints_both_documents(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert [d["metadata"]["name"] for d in docs] == ["scalingpolicies.tidescale.io", "nodepools.tidescale.io"]


# --- names, scope, subresources, columns --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "short", "scope"),
    [
        ("ScalingPolicy", "scalingpolicies", "tsp", "Namespaced"),
        ("NodePool", "nodepools", "tnp", "Cluster"),
    ],
    ids=["scaling-policy", "node-pool"],
)
def test_each_kind_has_its_names_scope_and_a_status_subresource(
    kind: str, plural: str, short: str, scope: str
) -> None:
    doc = crd.crd_for(kind)
    assert doc["metadata"]["name"] == f"{plural}.tidescale.io"
    assert doc["spec"]["group"] == "tidescale.io"
    assert doc["spec"]["names"]["plural"] == plural
    assert doc["spec"]["names"]["shortNames"] == [short]
    assert doc["spec"]["scope"] == scope
    (version,) = doc["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_the_printer_columns_show_target_bounds_replicas_readiness_and_gpu_model() -> None:
    def columns(kind: str) -> list[str]:
        return [c["name"] for c in crd.crd_for(kind)["spec"]["versions"][0]["additionalPrinterColumns"]]

    assert columns("ScalingPolicy") == ["Target", "Min", "Max", "Current", "Desired", "Ready", "Age"]
    assert columns("NodePool")[:4] == ["GPU Model", "Nodes", "Min", "Max"]


def test_an_unknown_kind_is_refused_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="ScalingPolicy, NodePool"):
        crd.crd_for("HorizontalPodAutoscaler")


# --- structural -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(crd.KINDS))
def test_every_schema_node_has_a_type_and_no_construct_a_structural_schema_forbids(kind: str) -> None:
    for path, node in schema_nodes(open_api_schema(kind)):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{kind} {path}: no type"
        used = [k for k in FORBIDDEN if k in node]
        assert not used, f"{kind} {path}: {used}"
        assert node.get("additionalProperties") is not False, f"{kind} {path}: additionalProperties: false"
        assert not ("properties" in node and "additionalProperties" in node), f"{kind} {path}: both"
        if node.get("exclusiveMinimum") is not None:
            assert node["exclusiveMinimum"] is True and "minimum" in node, f"{kind} {path}: exclusiveMinimum"


def test_optional_fields_are_nullable_and_pod_requests_are_int_or_string() -> None:
    spec = open_api_schema("ScalingPolicy")["properties"]["spec"]["properties"]
    assert spec["behavior"]["nullable"] is True
    assert spec["nodePool"] == {"type": "string", "nullable": True}
    assert spec["podRequests"] == {
        "type": "object",
        "additionalProperties": {"x-kubernetes-int-or-string": True},
    }


def test_triggers_are_one_object_with_a_type_enum_and_a_rule_per_field_a_type_requires() -> None:
    trigger = open_api_schema("ScalingPolicy")["properties"]["spec"]["properties"]["triggers"]["items"]
    assert trigger["required"] == ["type"]
    assert trigger["properties"]["type"]["enum"] == [
        "GPUUtilization",
        "DCGM",
        "Prometheus",
        "KafkaLag",
        "QueueDepth",
        "Schedule",
        "SLO",
    ]
    rules = {r["rule"]: r for r in trigger["x-kubernetes-validations"]}
    assert rules["self.type != 'KafkaLag' || has(self.topic)"]["fieldPath"] == ".topic"
    assert "!has(self.topic) || self.type == 'KafkaLag'" in rules
    # descriptions survive the merge
    assert "percent" in trigger["properties"]["target"]["description"]


def test_the_provider_union_requires_a_machine_deployment_for_cluster_api_only() -> None:
    provider = open_api_schema("NodePool")["properties"]["spec"]["properties"]["provider"]
    assert provider["properties"]["type"]["enum"] == ["KWOK", "ClusterAPI"]
    rules = [r["rule"] for r in provider["x-kubernetes-validations"]]
    assert "self.type != 'ClusterAPI' || has(self.machineDeployment)" in rules


def test_the_policy_status_keeps_conditions_by_type_and_the_controller_state_unpruned() -> None:
    status = open_api_schema("ScalingPolicy")["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert set(status["conditions"]["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert status["state"]["x-kubernetes-preserve-unknown-fields"] is True
    assert {
        "observedGeneration",
        "currentReplicas",
        "desiredReplicas",
        "lastScaleTime",
        "lastDecision",
    } <= set(status)


# --- examples validate; the invalid are refused -------------------------------------------------------------


@pytest.mark.parametrize("doc", example_documents())
def test_every_example_validates_against_the_generated_schema(doc: dict[str, Any]) -> None:
    validate(doc)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["spec"].pop("maxReplicas"), "maxReplicas"),
        (lambda d: d["spec"].update(minReplicas=-1), "-1"),
        (lambda d: d["spec"]["triggers"][0].update(type="GPUUtil"), "GPUUtil"),
        (lambda d: d["spec"].update(podRequests={"cpu": ["8"]}), "['8']"),
    ],
    ids=["no-max-replicas", "negative-min", "unknown-trigger-type", "list-as-quantity"],
)
def test_a_policy_the_schema_forbids_is_refused_naming_the_field(change: Any, field: str) -> None:
    doc = a_policy()
    validate(doc)
    change(doc)
    with pytest.raises(jsonschema.ValidationError, match=field.replace("[", r"\[")):
        validate(doc)


@pytest.mark.parametrize("kind", list(crd.KINDS))
def test_every_spec_object_with_fields_keeps_unknown_ones_for_the_controller_to_refuse(kind: str) -> None:
    # The flag does not reach into a nested object with properties of its own: each one carries it.
    spec = open_api_schema(kind)["properties"]["spec"]
    objects = [(path, node) for path, node in schema_nodes(spec, ".spec") if "properties" in node]
    assert len(objects) > 3
    for path, node in objects:
        assert node.get("x-kubernetes-preserve-unknown-fields") is True, f"{kind} {path}"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["spec"].update(maxReplica=3), "spec.maxReplica"),
        (lambda d: d["spec"]["triggers"][0].update(treshold=3), "spec.triggers.0.GPUUtilization.treshold"),
        (lambda d: d["spec"]["targetRef"].update(nmae="x"), "spec.targetRef.nmae"),
    ],
    ids=["top-level", "in-a-trigger", "in-target-ref"],
)
def test_a_misspelt_field_passes_the_schema_and_the_models_refuse_it_by_its_path(
    change: Any, where: str
) -> None:
    from pydantic import ValidationError

    from autoscaler.api.policy import ScalingPolicy

    doc = a_policy()
    change(doc)
    validate(doc)  # the API server keeps it...
    with pytest.raises(ValidationError) as refused:  # ...and the controller's models refuse it
        ScalingPolicy.model_validate(doc)
    first = refused.value.errors()[0]
    assert ".".join(str(p) for p in first["loc"]) == where
    assert first["msg"] == "Extra inputs are not permitted"
