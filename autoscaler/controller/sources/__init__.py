"""The controller's metric sources: Prometheus (PromQL), Kafka lag, Kafka events; their registry."""
