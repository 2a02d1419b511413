"""Where the controller's decisions go besides /scale: Kubernetes Events, Prometheus metrics, HTTP."""
