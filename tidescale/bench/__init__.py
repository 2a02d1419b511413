"""The benchmarks behind `tidescale bench …`."""
