"""Cross-checks against the real frameworks (marker `validate`; needs the `validate` extra)."""
