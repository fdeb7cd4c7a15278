"""Benchmark harness for fusedupdates: ``python -m bench`` (see bench/README.md)."""
