"""The `planner` command line: `app` registers one module per command; `options` holds what they share."""
