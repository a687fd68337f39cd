"""Fake model servers on real sockets, for the provider tests and benchmarks."""
