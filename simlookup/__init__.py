"""The ``simlookup`` command line, on top of retrieval, ingest and benchmarks."""

__version__ = "0.1.0"
