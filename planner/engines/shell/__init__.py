"""Reading a bash launch script as bash would, without running anything.

Megatron-LM jobs start from scripts like Megatron-LM's examples/gpt3/train_gpt3_175b_distributed.sh
and examples/llama/train_llama3_8b_h100_fp8.sh: variables (`TP=8`), arrays of arguments
(`GPT_MODEL_ARGS=( --num-layers 96 ... )`) or strings (`GPT_ARGS="--num-layers 96 ..."`), `case`
on a model size, `if` on a feature switch, and a launch line (`torchrun ${DISTRIBUTED_ARGS[@]}
pretrain_gpt.py ${GPT_MODEL_ARGS[@]} ...`). The reader follows the script's control flow
(if/elif/else, case, for, while, functions, && and ||) and expands words as bash does.

Values come from the script and from `env` (the caller's `--env KEY=VALUE`); a variable neither
gives is unset where the script supplies a default (`${NNODES:-8}` is 8) and not known where its
value is used (`$MASTER_ADDR` stays `${MASTER_ADDR}`). Command substitutions are not run. A
condition on something not known is not guessed: it is reported as an UndecidedBranch with the
values each way gives, and `evaluate(program, env, choices={branch.id: index})` reads another way.

Modules: lexer and parser (text to syntax), expand (words), arith ($((...))), patterns (globs),
conditions (test, [ ], [[ ]]), builtins, evaluate (commands and choices), results (what a
reading gives). Finding the launch line and its arguments: megatron_flags.py.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from planner.engines.shell.evaluate import Evaluator, FunctionReturn, LoopExit
from planner.engines.shell.expand import ScriptExit
from planner.engines.shell.parser import parse
from planner.engines.shell.results import Alternative, Command, ShellScript, UndecidedBranch, Value
from planner.engines.shell.state import Budget, LimitExceeded, State
from planner.engines.shell.syntax import Program

__all__ = ["Alternative", "Command", "Program", "ShellScript", "UndecidedBranch", "Value", "evaluate", "parse",
           "read_script", "readings"]


def evaluate(program: Program, env: Mapping[str, str] | None = None, args: Sequence[str] | None = None,
             choices: Mapping[int, int] | None = None, closed: bool = False) -> ShellScript:
    """One reading of a parsed script. `env`: the environment it starts with; `args`: its command-line
    arguments ($1 ...; None when not known); `choices`: {UndecidedBranch.id: alternative index};
    `closed`: `env` is the whole environment (other variables are unset, not unknown)."""
    state = State(variables=dict(env or {}), positional=None if args is None else tuple(args), closed=closed)
    ev = Evaluator(program, state, dict(choices or {}), Budget(), record=True)
    try:
        ev.run(program.body)
    except ScriptExit:
        ev.out.exited = ev.line
    except (FunctionReturn, LoopExit):
        pass
    except LimitExceeded as error:
        raise ev.fail(str(error)) from None
    except RecursionError:
        raise ev.fail("the script nests too deeply to be read") from None
    out = ev.out
    out.variables = {name: ([value[k] for k in sorted(value)] if isinstance(value, dict) else value)
                     for name, value in ev.state.variables.items()}
    out.unknown = set(ev.state.unknown) & set(out.variables)
    out.notes = list(ev._notes.values()) + [_describe(b) for b in out.branches]
    return out


def _describe(branch: UndecidedBranch) -> str:
    taken = branch.alternatives[branch.taken]
    others = [a for k, a in enumerate(branch.alternatives) if k != branch.taken]
    changes = sorted({name for a in branch.alternatives for name in a.values})
    what = f"; the ways differ in {', '.join(changes)}" if changes else ""
    return (f"line {branch.line}: `{branch.condition}` depends on {', '.join(branch.depends_on) or 'a value'}, which"
            f" is not known: read as {taken.label!r} (the other way{'s' if len(others) > 1 else ''}:"
            f" {', '.join(repr(a.label) for a in others)}){what}")


def read_script(text: str, env: Mapping[str, str] | None = None, args: Sequence[str] | None = None,
                choices: Mapping[int, int] | None = None, file: str = "<script>", closed: bool = False) -> ShellScript:
    """Variables, expanded commands, notes and undecided branches of a bash script."""
    return evaluate(parse(text, file), env, args, choices, closed)


def readings(program: Program, branch: UndecidedBranch, env: Mapping[str, str] | None = None,
             args: Sequence[str] | None = None, choices: Mapping[int, int] | None = None) -> list[ShellScript]:
    """The script read each way of one undecided branch (other choices as given)."""
    return [evaluate(program, env, args, {**(choices or {}), branch.id: k}) for k in range(len(branch.alternatives))]
