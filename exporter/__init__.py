"""The DCGM-compatible exporter: `tidescale exporter --simulate SPEC | --kubeconfig FILE | --nvml`.

Serves NVIDIA dcgm-exporter's metric names, types, units and labels (../shared/reference/gpu-metrics.md)
for simulated GPUs driven by a load signal set over HTTP (described by a spec, or following a cluster's
GPU nodes and the pods bound there), or for real GPUs read through NVML, so that the rest of tidescale
cannot tell the sources apart.

Modules: `reading` (the field catalog and one collection's values), `spec` (the simulation YAML),
`model` (pure load → metric physics), `selector` (pure load-request parsing and GPU selection),
`allocation` (pure: a cluster's nodes and pods → devices), `render` (pure Prometheus text), `simulator`
and `nvml` (the two metric sources), `cluster` (watches a cluster into the simulator), `gateway` (pure: a
simulated inference gateway's queue and series) and `traffic` (it in front of the simulator's pods),
`server` (HTTP), `cli` (the subcommand).
"""
