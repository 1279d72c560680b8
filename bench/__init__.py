"""Benchmarks: each runs with one command and writes JSON and a short markdown table."""
