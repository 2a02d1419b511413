"""The tidescale scheduler on the cluster: a secondary Kubernetes scheduler over the pure core."""
