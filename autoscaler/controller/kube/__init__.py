"""The controller's Kubernetes access: informers, /scale targets, status, conditions."""
