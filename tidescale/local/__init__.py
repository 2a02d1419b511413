"""The local environment harness: real Kafka, Prometheus and the simulated GPU exporter on 127.0.0.1.

Backs `tidescale local up/down/status`, `tidescale demo` and the pytest fixtures alike.
"""
