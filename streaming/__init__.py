"""Streaming runtime: pipeline specs, transforms, and engine adapters for PyFlink and Spark."""
