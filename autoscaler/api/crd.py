"""The CustomResourceDefinitions of `ScalingPolicy` and `NodePool` (group tidescale.io, version v1alpha1),
generated from the pydantic models in `autoscaler.api.policy` so that the two never drift apart.

`crd_for(kind)` turns `ScalingPolicySpec` / `NodePoolSpec`'s JSON schema (pydantic, `by_alias=True`) into a
Kubernetes *structural* OpenAPI v3 schema:

- every `$ref` is inlined and every node has a `type` (or `x-kubernetes-int-or-string`);
- `X | None` becomes `X` with `nullable: true`; dicts become `additionalProperties`; `str | int | float`
  becomes `x-kubernetes-int-or-string: true` (a float resource quantity is written as a string, "500m");
- a discriminated union (triggers, provider) becomes one object with the union of the variants' fields,
  `type` a required enum, and CEL rules (`x-kubernetes-validations`) for what differs per variant: the
  fields each variant requires, the fields it does not have, and bounds that differ between variants;
- `const` becomes a one-value enum, JSON Schema 2020's numeric `exclusiveMinimum` OpenAPI's boolean;
- every spec object keeps the fields its schema does not name (`x-kubernetes-preserve-unknown-fields`,
  on each object: the flag does not reach into a nested object that has properties of its own). The API
  server still validates the fields it knows; an unknown one (a misspelt `maxReplica`) is stored as sent,
  and the controller, reading the object with the `extra="forbid"` models, reports it as `Ready=False
  InvalidSpec` naming the field. Pruned instead, it would vanish without a word for every client that does
  not ask for strict field validation (the Python client, client-go, Helm). The price: strict clients
  (`kubectl`) are no longer refused at admission, since nothing is pruned there is nothing to report;
  `tidescale policy validate` catches the misspelling before the object is sent;
- titles and defaults are left out: the controller validates every object with the same pydantic models,
  which apply the defaults, so the CRD only has to refuse what the models would refuse early, at the API
  server. Cross-field checks the schema cannot express (duplicate trigger names, cron syntax) stay with the
  controller, which reports them as `Ready=False`.

`NodePool` is cluster-scoped: it describes nodes, which are cluster-scoped; one pool serves policies in many
namespaces, which name it by name alone (`spec.nodePool: h100`) — as Karpenter's NodePool does. It is a
different resource from Karpenter's `nodepools.karpenter.sh` (another group), hence the short name `tnp`.
`ScalingPolicy` is namespaced, like the workload it scales.

`render(kind)` is the committed YAML (`helm/tidescale/crds/<plural>.tidescale.io.yaml`) with a header that
says it is generated and how to regenerate it (`tidescale crds --write helm/tidescale/crds`).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from autoscaler.api.policy import API_VERSION, NodePoolSpec, ScalingPolicySpec

GROUP, VERSION = API_VERSION.split("/")
CRD_DIR = "helm/tidescale/crds"
REGENERATE = f"tidescale crds --write {CRD_DIR}"

# Keywords a structural schema keeps from pydantic's JSON schema, per kind of node.
_SCALAR_KEYS = ("description", "minimum", "maximum", "pattern", "minLength", "maxLength", "enum", "format")
_ARRAY_KEYS = ("description", "minItems", "maxItems")
_SCALARS = frozenset({"string", "integer", "number", "boolean"})


class SchemaError(ValueError):
    """A model uses a schema shape this converter does not know how to make structural."""


@dataclass(frozen=True)
class Kind:
    """One custom resource: names, scope, spec model, extra spec rules, status schema, printer columns."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    spec_model: type[BaseModel]
    spec_description: str
    spec_rules: tuple[dict[str, str], ...]
    status: dict[str, Any]
    columns: tuple[dict[str, Any], ...]

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{self.name}.yaml"


# --- status -----------------------------------------------------------------------------------------------


def _conditions() -> dict[str, Any]:
    """metav1.Condition, as `kubectl explain` shows it for built-in resources."""
    return {
        "type": "array",
        "description": "The latest observations of the resource's state (Ready, Active, Fallback).",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status"],
            "properties": {
                "type": {"type": "string", "maxLength": 316, "description": "CamelCase condition type."},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "reason": {
                    "type": "string",
                    "maxLength": 1024,
                    "description": "CamelCase reason for the last transition.",
                },
                "message": {
                    "type": "string",
                    "maxLength": 32768,
                    "description": "A sentence with numbers saying why.",
                },
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            },
        },
    }


_POLICY_STATUS: dict[str, Any] = {
    "type": "object",
    "description": "What the controller observed and did.",
    "properties": {
        "conditions": _conditions(),
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The spec generation the controller last acted on.",
        },
        "currentReplicas": {"type": "integer", "description": "Replicas of the target, read through /scale."},
        "desiredReplicas": {"type": "integer", "description": "Replicas the last decision asked for."},
        "lastScaleTime": {
            "type": "string",
            "format": "date-time",
            "description": "When the controller last changed the target's replicas.",
        },
        "lastDecision": {"type": "string", "description": "The last decision's reason, one sentence."},
        "state": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "description": (
                "The controller's decision state (stabilization history, failures, forecast), kept here so "
                "that a restarted controller continues where the last one stopped."
            ),
        },
    },
}

_POOL_STATUS: dict[str, Any] = {
    "type": "object",
    "description": "What the controller observed of the pool's nodes.",
    "properties": {
        "nodes": {"type": "integer", "description": "Nodes in the pool, ready or not."},
        "readyNodes": {"type": "integer", "description": "Nodes in the pool that are Ready."},
        "conditions": _conditions(),
    },
}

KINDS: dict[str, Kind] = {
    "ScalingPolicy": Kind(
        kind="ScalingPolicy",
        plural="scalingpolicies",
        short_names=("tsp",),
        namespaced=True,
        spec_model=ScalingPolicySpec,
        spec_description="What to scale, between which bounds, on which signals, and how fast.",
        spec_rules=(
            {
                "rule": "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
                "message": "minReplicas must not be above maxReplicas",
                "fieldPath": ".minReplicas",
            },
        ),
        status=_POLICY_STATUS,
        columns=(
            {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name"},
            {"name": "Min", "type": "integer", "jsonPath": ".spec.minReplicas"},
            {"name": "Max", "type": "integer", "jsonPath": ".spec.maxReplicas"},
            {"name": "Current", "type": "integer", "jsonPath": ".status.currentReplicas"},
            {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
    ),
    "NodePool": Kind(
        kind="NodePool",
        plural="nodepools",
        short_names=("tnp",),
        namespaced=False,
        spec_model=NodePoolSpec,
        spec_description="The shape of the pool's nodes, its bounds and price, and who provides the nodes.",
        spec_rules=(
            {
                "rule": "!has(self.minNodes) || self.minNodes <= self.maxNodes",
                "message": "minNodes must not be above maxNodes",
                "fieldPath": ".minNodes",
            },
        ),
        status=_POOL_STATUS,
        columns=(
            {"name": "GPU Model", "type": "string", "jsonPath": ".spec.node.gpuModel"},
            {"name": "Nodes", "type": "integer", "jsonPath": ".status.nodes"},
            {"name": "Min", "type": "integer", "jsonPath": ".spec.minNodes"},
            {"name": "Max", "type": "integer", "jsonPath": ".spec.maxNodes"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ),
    ),
}


# --- JSON schema → structural schema ----------------------------------------------------------------------


class _Converter:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """The node with its `$ref` inlined (sibling keys such as a description win over the target's)."""
        while "$ref" in node:
            name = node["$ref"].removeprefix("#/$defs/")
            if name not in self.defs:
                raise SchemaError(f"unresolvable $ref {node['$ref']!r}")
            node = self.defs[name] | {k: v for k, v in node.items() if k != "$ref"}
        return node

    def convert(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        node = self.resolve(node)
        if "anyOf" in node:
            return self._any_of(node, where)
        if "oneOf" in node:
            if "discriminator" not in node:
                raise SchemaError(f"{where}: oneOf without a discriminator")
            return self._discriminated(node, where)
        kind = node.get("type")
        if kind == "object":
            return self._object(node, where)
        if kind == "array":
            out = {"type": "array"} | {k: node[k] for k in _ARRAY_KEYS if k in node}
            out["items"] = self.convert(node["items"], f"{where}[]")
            return out
        if kind in _SCALARS:
            return self._scalar(node)
        raise SchemaError(f"{where}: no type in {sorted(node)}")

    def _scalar(self, node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": node["type"]}
        out |= {k: node[k] for k in _SCALAR_KEYS if k in node}
        if "const" in node:
            out["enum"] = [node["const"]]
        # JSON Schema 2020 writes `exclusiveMinimum: 0`, OpenAPI v3.0 `minimum: 0, exclusiveMinimum: true`.
        for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            if flag in node:
                out[bound] = node[flag]
                out[flag] = True
        return out

    def _object(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object"}
        if "description" in node:
            out["description"] = node["description"]
        if "properties" in node:
            out["properties"] = {
                name: self.convert(sub, f"{where}.{name}") for name, sub in node["properties"].items()
            }
            if node.get("required"):
                out["required"] = list(node["required"])
            out["x-kubernetes-preserve-unknown-fields"] = True  # for the models to refuse (module docstring)
        elif isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = self.convert(node["additionalProperties"], f"{where}.*")
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out

    def _any_of(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        members = [self.resolve(m) for m in node["anyOf"]]
        present = [m for m in members if m.get("type") != "null"]
        nullable = len(present) < len(members)
        if len(present) == 1:
            out = self.convert(present[0], where)
        elif {m.get("type") for m in present} <= {"string", "integer", "number"} and any(
            m.get("type") == "string" for m in present
        ):
            out = {"x-kubernetes-int-or-string": True}
        else:
            raise SchemaError(
                f"{where}: a union of {[m.get('type') for m in present]} has no structural form"
            )
        if "description" in node:
            out["description"] = node["description"]
        if nullable:
            out["nullable"] = True
        return out

    def _discriminated(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        tag = node["discriminator"]["propertyName"]
        variants: list[tuple[str, dict[str, Any]]] = []
        for member in node["oneOf"]:
            converted = self.convert(member, where)
            enum = converted.get("properties", {}).get(tag, {}).get("enum", [])
            if len(enum) != 1:
                raise SchemaError(f"{where}: a variant without a single {tag!r} value")
            variants.append((str(enum[0]), converted))
        return _merge_variants(tag, variants, node.get("description"), where)


def _merge_variants(
    tag: str, variants: list[tuple[str, dict[str, Any]]], description: str | None, where: str
) -> dict[str, Any]:
    """One object for a discriminated union: every variant's fields, and CEL rules for what differs."""
    tags = [t for t, _ in variants]
    longest = max(len(t) for t in tags)
    # maxLength lets the API server bound the cost of the string comparisons in the rules below.
    properties: dict[str, Any] = {
        tag: {
            "type": "string",
            "enum": tags,
            "maxLength": longest,
            "description": f"Which kind: {', '.join(tags)}.",
        }
    }
    rules: list[dict[str, str]] = []
    owners: dict[str, list[str]] = {}
    for t, variant in variants:
        for name in variant["properties"]:
            owners.setdefault(name, []).append(t)
    for name, having in owners.items():
        if name == tag:
            continue
        schemas = [v["properties"][name] for t, v in variants if t in having]
        merged, differing = _merge_field(tag, name, list(zip(having, schemas, strict=True)), where)
        properties[name] = merged
        rules.extend(differing)
        if len(having) < len(tags):
            allowed = " || ".join(f"self.{tag} == '{t}'" for t in having)
            rules.append(
                {
                    "rule": f"!has(self.{name}) || {allowed}",
                    "messageExpression": f"'{name} is not a field of type ' + self.{tag}",
                    "fieldPath": f".{name}",
                    "reason": "FieldValueForbidden",
                }
            )
    for t, variant in variants:
        for name in variant.get("required", []):
            if name != tag and not all(name in v.get("required", []) for _, v in variants):
                rules.append(
                    {
                        "rule": f"self.{tag} != '{t}' || has(self.{name})",
                        "message": f"{name} is required for type {t}",
                        "fieldPath": f".{name}",
                        "reason": "FieldValueRequired",
                    }
                )
    out: dict[str, Any] = {"type": "object"}
    if description:
        out["description"] = description
    out["required"] = [tag] + [
        n for n in owners if n != tag and all(n in v.get("required", []) for _, v in variants)
    ]
    out["properties"] = properties
    out["x-kubernetes-preserve-unknown-fields"] = True  # for the models to refuse (module docstring)
    out["x-kubernetes-validations"] = rules
    return out


def _merge_field(
    tag: str, name: str, schemas: list[tuple[str, dict[str, Any]]], where: str
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A field several variants have: the common schema, and a rule per variant for what it adds."""
    first = schemas[0][1]
    if all(s == first for _, s in schemas):
        return copy.deepcopy(first), []
    types = {str(s.get("type")) for _, s in schemas}
    if types == {"integer", "number"}:
        kind = "number"
    elif len(types) == 1 and types <= _SCALARS:
        kind = next(iter(types))
    else:
        raise SchemaError(f"{where}.{name}: variants disagree on its type ({sorted(types)})")
    merged: dict[str, Any] = {"type": kind}
    descriptions = [(t, s["description"]) for t, s in schemas if "description" in s]
    if descriptions:
        merged["description"] = "; ".join(f"{t}: {d}" for t, d in descriptions)
    keys = {k for _, s in schemas for k in s} - {"type", "description"}
    for key in sorted(keys):
        values = [s.get(key) for _, s in schemas]
        if all(v == values[0] for v in values):
            merged[key] = values[0]
    for key, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if key not in merged:
            merged.pop(flag, None)
    if any(s.get("nullable") for _, s in schemas):
        merged["nullable"] = True
    rules = []
    for t, schema in schemas:
        checks = _checks(f"self.{name}", schema, merged, kind)
        if checks:
            conditions = " && ".join(c for c, _ in checks)
            rules.append(
                {
                    "rule": f"self.{tag} != '{t}' || !has(self.{name}) || ({conditions})",
                    "message": f"{name} must be {' and '.join(m for _, m in checks)} for type {t}",
                    "fieldPath": f".{name}",
                    "reason": "FieldValueInvalid",
                }
            )
    return merged, rules


def _checks(field: str, schema: dict[str, Any], merged: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """CEL conditions (and their words) for the constraints of one variant's field the merged schema lacks."""

    def literal(value: Any) -> str:
        return repr(float(value)) if kind == "number" else str(int(value))

    out = []
    if schema.get("type") == "integer" and kind == "number":
        out.append((f"double(int({field})) == {field}", "a whole number"))
    for key, flag, inclusive, exclusive in (
        ("minimum", "exclusiveMinimum", (">=", "at least"), (">", "above")),
        ("maximum", "exclusiveMaximum", ("<=", "at most"), ("<", "below")),
    ):
        bound = (schema.get(key), schema.get(flag, False))
        if bound[0] is not None and (merged.get(key), merged.get(flag, False)) != bound:
            op, word = exclusive if bound[1] else inclusive
            out.append((f"{field} {op} {literal(bound[0])}", f"{word} {bound[0]}"))
    for key in ("minLength", "maxLength", "pattern", "enum", "format"):
        if key in schema and merged.get(key) != schema[key]:
            if key == "minLength":
                out.append((f"size({field}) >= {schema[key]}", f"at least {schema[key]} characters"))
            elif key == "maxLength":
                out.append((f"size({field}) <= {schema[key]}", f"at most {schema[key]} characters"))
            else:
                raise SchemaError(f"{field}: variants disagree on {key}; no CEL form for it yet")
    return out


def spec_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic spec model."""
    source = model.model_json_schema(by_alias=True)
    return _Converter(source.get("$defs", {})).convert(
        {k: v for k, v in source.items() if k != "$defs"}, "spec"
    )


# --- the CRD documents ------------------------------------------------------------------------------------


def crd_for(kind: str) -> dict[str, Any]:
    """The `apiextensions.k8s.io/v1` CustomResourceDefinition of `kind` (ScalingPolicy or NodePool)."""
    if kind not in KINDS:
        raise KeyError(f"no custom resource kind {kind!r} (known: {', '.join(KINDS)})")
    k = KINDS[kind]
    spec = spec_schema(k.spec_model)
    spec["description"] = k.spec_description
    spec["x-kubernetes-validations"] = [dict(r) for r in k.spec_rules]
    schema = {
        "type": "object",
        "description": f"A tidescale {k.kind} ({API_VERSION}).",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": copy.deepcopy(k.status),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": k.name, "labels": {"app.kubernetes.io/name": "tidescale"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": k.kind,
                "listKind": f"{k.kind}List",
                "plural": k.plural,
                "singular": k.kind.lower(),
                "shortNames": list(k.short_names),
                "categories": ["tidescale"],
            },
            "scope": "Namespaced" if k.namespaced else "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in k.columns],
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-documents out in full: no `&id001` anchors in a file people read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(kind: str) -> str:
    """The committed YAML of `kind`'s CRD: a header saying it is generated, then the document."""
    header = (
        f"# Generated from autoscaler/api/policy.py by autoscaler/api/crd.py: do not edit.\n"
        f"# Regenerate with `{REGENERATE}`; `tidescale crds --check {CRD_DIR}` (and a test) check it.\n"
    )
    # `---` after the header: `helm show crds` and `cat` join the files into one valid stream
    return (
        header
        + "---\n"
        + yaml.dump(crd_for(kind), Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
    )


def files() -> dict[str, str]:
    """File name → text, for every kind."""
    return {k.file_name: render(name) for name, k in KINDS.items()}
