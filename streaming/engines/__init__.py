"""Engine adapters: the same pipeline plan runs on PyFlink, Spark Structured Streaming or a plain Python
loop. `register_builtins` is the one place they are put in the registry."""

from __future__ import annotations

from streaming.engine import EngineRegistry


def register_builtins(registry: EngineRegistry) -> EngineRegistry:
    """Fill `registry` with the built-in engines; called once by whoever wires a run."""
    from streaming.engines.flink import FlinkEngine
    from streaming.engines.python import PythonEngine
    from streaming.engines.spark import SparkEngine

    for engine in (FlinkEngine(), SparkEngine(), PythonEngine()):
        registry.register(engine)
    return registry
