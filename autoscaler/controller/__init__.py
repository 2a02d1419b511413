"""The autoscaler controller: the I/O shell around the pure decision core (`autoscaler.core.decide`).

Watches ScalingPolicy and NodePool objects, reads metrics in batches, decides, patches /scale and node pools,
and records every decision that matters as events, conditions and metrics.
"""
