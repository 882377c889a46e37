"""Shared test helpers: waiting on conditions, free ports, OTLP test receivers, binaries."""
