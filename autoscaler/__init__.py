"""Autoscaler: policy models, triggers, the pure decision core, baselines, the controller shell,
node-pool providers, the scaling-event stream and the DCGM-compatible exporter."""
