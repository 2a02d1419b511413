"""Prometheus text exposition (format 0.0.4) of readings, laid out as dcgm-exporter lays it out.

Pure: values in, text out. No I/O, no clock (a collection time is passed in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from exporter.reading import FIELDS, NOT_ON_MIG, DeviceLabels, Field, Reading

HostnameLabel = Literal["hostname", "Hostname"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

COLLECTION_TIMESTAMP = "tidescale_exporter_last_collection_timestamp_seconds"


def render(
    readings: Sequence[Reading],
    *,
    hostname_label: HostnameLabel = "hostname",
    collected_at: float | None = None,
) -> str:
    """One `# HELP`/`# TYPE` block per field that at least one device reported, in the catalog's order,
    one sample per device in the readings' order. `collected_at` (Unix seconds) adds a freshness gauge."""
    lines: list[str] = []
    for field in FIELDS:
        samples = [
            f"{field.name}{{{label_text(r.labels, hostname_label)}}} {format_value(field, r.values[field])}"
            for r in readings
            if field in r.values and not (r.labels.mig_profile is not None and field in NOT_ON_MIG)
        ]
        if samples:
            lines.append(f"# HELP {field.name} {_escape_help(field.help)}")
            lines.append(f"# TYPE {field.name} {field.type}")
            lines.extend(samples)
    if collected_at is not None:
        lines.append(
            f"# HELP {COLLECTION_TIMESTAMP} When the exporter last collected device values (Unix s)."
        )
        lines.append(f"# TYPE {COLLECTION_TIMESTAMP} gauge")
        lines.append(f"{COLLECTION_TIMESTAMP} {collected_at:f}")
    return "\n".join(lines) + "\n" if lines else ""


def label_pairs(labels: DeviceLabels, hostname_label: HostnameLabel = "hostname") -> list[tuple[str, str]]:
    """The labels of a series in dcgm-exporter's order (render_metrics.go's template)."""
    pairs = [
        ("gpu", str(labels.gpu)),
        ("UUID", labels.uuid),
        ("pci_bus_id", labels.pci_bus_id),
        ("device", f"nvidia{labels.gpu}"),
        ("modelName", labels.model_name),
    ]
    if labels.mig_profile is not None:
        pairs.append(("GPU_I_PROFILE", labels.mig_profile))
        pairs.append(("GPU_I_ID", str(labels.gpu_instance_id)))
    pairs.append((hostname_label, labels.hostname))
    pairs.append(("DCGM_FI_DRIVER_VERSION", labels.driver_version))
    if labels.pod is not None:
        pairs.append(("container", labels.pod.container))
        pairs.append(("namespace", labels.pod.namespace))
        pairs.append(("pod", labels.pod.name))
    return pairs


def label_text(labels: DeviceLabels, hostname_label: HostnameLabel = "hostname") -> str:
    return ",".join(f'{k}="{_escape_label(v)}"' for k, v in label_pairs(labels, hostname_label))


def format_value(field: Field, value: float) -> str:
    """DCGM's formatting: integer fields as integers, double fields with `%f` (six decimals)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if field.integral:
        return str(round(value))
    return f"{value:f}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
