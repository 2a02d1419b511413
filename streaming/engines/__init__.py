"""Engine adapters: the same transforms run on PyFlink and on Spark Structured Streaming."""
