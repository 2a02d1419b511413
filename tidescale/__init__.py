"""The composition root: the `tidescale` command, the wiring of registries, and the local environment
harness (Kafka, Prometheus, the exporter) used by the demo and by the test fixtures."""
