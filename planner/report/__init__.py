"""Rendering results: JSON documents (INTERFACE.md) and rich tables for people."""
