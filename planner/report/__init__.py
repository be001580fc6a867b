"""Rendering results: JSON documents (docs/cli.md) and rich tables for people."""
