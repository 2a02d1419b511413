"""The DCGM-compatible exporter: `tidescale exporter --simulate SPEC | --nvml`.

Serves NVIDIA dcgm-exporter's metric names, types, units and labels (../shared/reference/gpu-metrics.md)
for simulated GPUs driven by a load signal set over HTTP, or for real GPUs read through NVML, so that
the rest of tidescale cannot tell the sources apart.

Modules: `reading` (the field catalog and one collection's values), `spec` (the simulation YAML),
`model` (pure load → metric physics), `selector` (pure load-request parsing and GPU selection),
`render` (pure Prometheus text), `simulator` and `nvml` (the two metric sources), `server` (HTTP),
`cli` (the subcommand).
"""
