"""Commands beyond the core ones of `planner.cli`, one module each.

Each module registers its command on `planner.cli.app` when imported; `planner.cli` imports this
package last, so every module listed here can use the CLI's shared helpers.
"""
from planner.commands import capacity  # noqa: F401
from planner.commands import infer  # noqa: F401
from planner.commands import params  # noqa: F401
from planner.commands import check  # noqa: F401
from planner.commands import report  # noqa: F401
