"""The autoscaler's API: ScalingPolicy and NodePool models, their CRDs, cron windows."""
