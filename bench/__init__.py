"""Benchmark suite for mcp-router: ``uv run python -m bench [--quick]`` (see bench/README.md)."""
