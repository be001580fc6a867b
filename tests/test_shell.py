"""The bash reader: expansions, control flow, undecided branches, limits, and agreement with bash."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from planner.engines.megatron_flags import launch_arguments, parse_flags
from planner.engines.shell import evaluate, parse, read_script, readings
from planner.spec.errors import InputError

SCRIPTS = Path(__file__).parent / "data" / "scripts"


def script(name: str, **kw):
    path = SCRIPTS / name
    return read_script(path.read_text(), file=str(path), **kw)


def flags_of(result) -> dict:
    return parse_flags(launch_arguments(result).args)[0]


# -- the fixtures: real patterns ------------------------------------------------------------

def test_case_on_a_scale_variable_and_a_switch_that_is_off():
    result = script("scale_switch.sh")
    v = result.variables
    assert (v["TP"], v["GBS"], v["NUM_LAYERS"], v["GPUS"]) == ("1", "256", "24", "32")
    assert result.defaults == {"USE_FP8": "0", "NNODES": "4"}
    assert result.branches == [] and result.exited is None
    launch = launch_arguments(result)
    assert (launch.program, launch.line) == ("pretrain_gpt.py", 49)
    assert launch.launcher == ("torchrun", "--nproc_per_node", "8", "--nnodes", "4")
    flags = flags_of(result)
    assert flags["num-layers"] == "24" and flags["tensor-model-parallel-size"] == "1"
    assert flags["global-batch-size"] == "256" and flags["data-path"] == "${DATA_PATH}"
    assert "recompute-granularity" not in flags and "fp8-format" not in flags
    assert result.unset == {"DATA_PATH"}
    assert [c.words[0] for c in result.commands] == ["torchrun", "tee"]
    assert result.commands[0].unknown == {len(result.commands[0].words) - 1}


def test_the_environment_overrides_defaults():
    result = script("scale_switch.sh", env={"NNODES": "2", "USE_FP8": "1", "DATA_PATH": "/data/web"})
    assert result.variables["GPUS"] == "16" and result.defaults == {}
    flags = flags_of(result)
    assert flags["fp8-format"] == "hybrid" and flags["data-path"] == "/data/web"
    assert launch_arguments(result).launcher[-1] == "2"
    assert result.commands[0].unknown == frozenset()


def test_a_taken_else_branch_runs_no_launch_line():
    result = script("scale_switch.sh", env={"NNODES": "0"})
    assert result.python_scripts == []
    assert result.commands[0].words == ("echo", "needs at least 8 GPUs, got 0")


def test_branches_on_unknown_values_are_reported_with_each_way():
    program = parse((SCRIPTS / "env_switches.sh").read_text(), "env_switches.sh")
    result = evaluate(program)
    sp, wandb, cluster, mkdir = result.branches
    assert (sp.kind, sp.line, sp.condition, sp.depends_on) == ("if", 3, '[ "$ENABLE_SP" = "1" ]', ("ENABLE_SP",))
    assert [a.label for a in sp.alternatives] == ["then", "else"] and sp.taken == 1
    assert [a.values for a in sp.alternatives] == [{"TP": "4", "EXTRA": ["--sequence-parallel"]},
                                                   {"TP": "2", "EXTRA": []}]
    assert (wandb.kind, wandb.condition, wandb.taken) == ("&&", '[ -n "$WANDB_API_KEY" ]', 1)
    assert wandb.alternatives[0].values == {"LOGGING": ["--wandb-project", "demo"]}
    assert [a.label for a in cluster.alternatives] == ["eos)", "*)"] and cluster.taken == 1
    assert [a.values for a in cluster.alternatives] == [{"MBS": "2"}, {"MBS": "1"}]
    # a command's outcome: read as succeeding, not as the way that exits
    assert (mkdir.kind, mkdir.depends_on, mkdir.taken) == ("||", ("mkdir",), 0)
    assert [a.exits for a in mkdir.alternatives] == [False, True]
    assert flags_of(result) == {"tensor-model-parallel-size": "2", "micro-batch-size": "1"}
    assert any(n.startswith("line 3: `[ \"$ENABLE_SP\" = \"1\" ]` depends on ENABLE_SP") for n in result.notes)

    other = evaluate(program, choices={sp.id: 0, wandb.id: 0, cluster.id: 0})
    assert flags_of(other) == {"tensor-model-parallel-size": "4", "sequence-parallel": True, "micro-batch-size": "2",
                               "wandb-project": "demo"}
    assert [r.variables["TP"] for r in readings(program, sp)] == ["4", "2"]
    given_env = evaluate(program, env={"ENABLE_SP": "1", "WANDB_API_KEY": "", "CLUSTER": "eos"})
    assert [b.kind for b in given_env.branches] == ["||"]
    assert flags_of(given_env)["micro-batch-size"] == "2"
    with pytest.raises(InputError, match="choice 5 for the if at line 3: it has 2 ways"):
        evaluate(program, choices={sp.id: 5})


def test_a_default_way_that_exits_is_not_taken():
    result = read_script('case $SIZE in\n 8B) TP=1 ;;\n 70B) TP=8 ;;\n *) echo "no"; exit 1 ;;\nesac\n')
    (branch,) = result.branches
    assert [a.label for a in branch.alternatives] == ["8B)", "70B)", "*)"]
    assert [a.exits for a in branch.alternatives] == [False, False, True]
    assert branch.taken == 1 and result.variables["TP"] == "8" and result.exited is None


def test_functions_loops_and_positional_parameters():
    result = script("functions.sh", args=["48", "4096"])
    assert launch_arguments(result).args == ("--num-layers", "48", "--seq-length", "4096", "--bf16",
                                             "--use-flash-attn", "--pipeline-model-parallel-layout", "E,t|E,t")
    assert "name" not in result.variables  # local to the function
    no_args = script("functions.sh", args=[])
    assert flags_of(no_args)["num-layers"] == "32" and flags_of(no_args)["seq-length"] == "2048"
    unknown_args = script("functions.sh")
    assert flags_of(unknown_args)["num-layers"] == "32"
    assert flags_of(unknown_args)["seq-length"] == "${SEQ:-2048}"


# -- expansions -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ('A=(a "b c" "")\nf ${A[@]} "${A[@]}" "${A[*]}" ${#A[@]} "${A[1]}"', ["a", "b", "c", "a", "b c", "", "a b c ",
                                                                         "3", "b c"]),
    ('X=" a  b "\nf $X "$X" x${X}y ""', ["a", "b", " a  b ", "x", "a", "b", "y", ""]),
    ("f 'it''s' $'a\\tb' \"q\\\"\\$\" a\\ b", ["its", "a\tb", 'q"$', "a b"]),
    ("P=/d/m.tar.gz\nf ${P#*/} ${P##*/} ${P%.*} ${P%%.*} ${P/m/n} ${P//[.\\/]/_} ${P:3:1} ${P: -2}",
     ["d/m.tar.gz", "m.tar.gz", "/d/m.tar", "/d/m", "/d/n.tar.gz", "_d_m_tar_gz", "m", "gz"]),
    ("E=\nf ${E:-d} ${E-d} ${E:+a} ${U+a} ${U:=set} $U ${#U} \"$E\"", ["d", "set", "set", "3", ""]),
    ("f $((7 / -2)) $((-7 % 3)) $((2 ** 10)) $((1 << 4)) $((5 > 3 ? 1 : 0)) $((0x10 + 010 + 2#11))",
     ["-3", "-1", "1024", "16", "1", "27"]),
    ("f $(date) `hostname` $((X + 1))", ["$(date)", "$(hostname)", "$((X + 1))"]),
    ("cat <<EOF\nA=1 not a command $(x)\nEOF\nf after", ["after"]),
])
def test_word_expansion(text, expected):
    commands = read_script(text).commands
    assert list(commands[-1].words[1:]) == expected


def test_assignment_forms():
    result = read_script("export A=1 B=two\ndeclare -a L=(x y)\nreadonly R=$A\nL[3]=z\nL+=(w)\nS=a\nS+=b\n"
                         "local Q=1\nunset B\n")
    v = result.variables
    assert (v["A"], v["R"], v["L"], v["S"], v["Q"]) == ("1", "1", ["x", "y", "z", "w"], "ab", "1")
    assert "B" not in v


def test_source_eval_and_special_parameters_are_noted():
    result = read_script("source ./env.sh\n. other.sh\neval X=1\nfor a in \"$@\"; do :; done\n")
    assert result.notes[:2] == ["line 1: source ./env.sh is not followed; what it sets is not known",
                                "line 2: source other.sh is not followed; what it sets is not known"]
    assert "line 3: eval X=1 is not read; what it does is not known" in result.notes


@pytest.mark.parametrize("text, message", [
    ("A=1\nB='abc\nC=2\n", "line 2: the ' opened here is never closed"),
    ('A="abc\n', 'line 1: the " opened here is never closed'),
    ("X=${A:-1\n", "line 1: the ${ opened here is never closed"),
    ("X=$(date\n", "line 1: the $( opened here is never closed"),
    ("if true; then\n  X=1\n", "line 1: the if here has no 'fi'"),
    ("case $A in\n a) ;;\n", "line 1: the case here has no 'esac'"),
    ("for x in 1; do\n", "line 1: the for here has no 'done'"),
    ("fi\n", "line 1: syntax error near 'fi'"),
    ("TP=$((9**9**9))\n", "line 1: $((9**9**9)): the result does not fit bash's 64-bit integers"),
    ("X=$((1/0))\n", "line 1: $((1/0)): division by 0"),
    ("c=1x\nX=$(( 0 ? $c : 0 ))\n", "line 2: $((0 ? 1x : 0)): 1x: value too great for base"),
    ("X=$(( 0 && 9#9 ))\n", "9#9: value too great for base"),
    ("a=a\nX=$((a))\n", "line 2: $((a)): variables refer to expressions more than 100 deep"),
    ("f() { f; }\nf\n", "nest more than 100 deep"),
    ("if true; then\n" * 200 + "fi\n" * 200, "line 101: nested more than 100 levels deep"),
    ("X=$((" + "(" * 1000 + "1" + ")" * 1000 + "))", "parentheses nested more than 100 deep"),
    ("X=" + "${A:-" * 1000 + "}" * 1000, "nested more than 100 levels deep"),
    ("A=xx\n" + "A=$A$A\n" * 40, "a word expands to 8388608 characters, more than 4194304"),
])
def test_hostile_or_broken_scripts_are_clear_errors(text, message):
    with pytest.raises(InputError) as err:
        read_script(text, file="train.sh", closed=True)
    assert str(err.value).startswith("train.sh: ") and message in str(err.value)


def test_long_loops_stop_and_what_they_set_is_not_known():
    result = read_script("while true; do N=$((N+1)); done\nfor ((;;)); do :; done\nAFTER=1\n", closed=True)
    assert result.variables["AFTER"] == "1" and "N" in result.unknown
    assert result.notes[0].startswith("line 1: the loop runs more than 10000 times; stopped there")


def test_reading_is_linear_in_the_script():
    word = "x" * 1_000_000
    start = time.perf_counter()
    result = read_script(f'torchrun pretrain_gpt.py --data-path {word} --name "{word}"\nA={word}\n')
    assert time.perf_counter() - start < 0.5
    assert result.commands[0].words[3] == word and result.variables["A"] == word
    start = time.perf_counter()
    read_script("X=" + "a" * 100_000 + "\ncase $X in *a*a*a*a*a*b) Y=1 ;; esac\nZ=${X%%*a*a*b}\n")
    assert time.perf_counter() - start < 0.5


# -- agreement with bash --------------------------------------------------------------------

NAMES = ("a", "b", "c")
_ints = st.integers(0, 12).map(str)
_atoms = st.one_of(_ints, st.sampled_from(NAMES), st.sampled_from(NAMES).map(lambda n: "$" + n))
_arith_ops = st.sampled_from(["+", "-", "*", "/", "%", "**", "<<", ">>", "<", ">", "<=", ">=", "==", "!=", "&&",
                              "||", "&", "|", "^"])


def _combine(inner):
    binary = st.tuples(inner, _arith_ops, inner, st.booleans()).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})" if t[3] else f"{t[0]} {t[1]} {t[2]}")
    unary = st.tuples(st.sampled_from(["-", "!", "~"]), inner).map(lambda t: f"{t[0]}({t[1]})")
    ternary = st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})")
    return st.one_of(binary, unary, ternary)


_arith = st.recursive(_atoms, _combine, max_leaves=6)
_words = st.sampled_from(["x", "1x", "12", "", "a b"])
_assign = st.one_of(
    st.tuples(st.sampled_from(NAMES), _ints).map(lambda t: f"{t[0]}={t[1]}"),
    st.tuples(st.sampled_from(NAMES), _words).map(lambda t: f'{t[0]}="{t[1]}"'),
    st.tuples(st.sampled_from(NAMES), _arith).map(lambda t: f"{t[0]}=$(( {t[1]} ))"),
    st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES), _ints).map(lambda t: f"{t[0]}=${{{t[1]}:-{t[2]}}}"),
    st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)).map(lambda t: f"{t[0]}=${{#{t[1]}}}"),
    st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)).map(lambda t: f'{t[0]}+="${t[1]}x"'),
    st.tuples(st.sampled_from(NAMES), _ints).map(lambda t: f"bump {t[1]}"),
)
_test = st.one_of(
    st.tuples(st.sampled_from(NAMES), st.sampled_from(["-lt", "-ge", "-eq", "-ne"]), _ints).map(
        lambda t: f'[ "${t[0]}" {t[1]} {t[2]} ]'),
    st.tuples(st.sampled_from(NAMES), st.sampled_from(["=", "!="]), _words).map(
        lambda t: f'[ "${t[0]}" {t[1]} "{t[2]}" ]'),
    st.tuples(st.sampled_from(["-z", "-n"]), st.sampled_from(NAMES)).map(lambda t: f'[ {t[0]} "${t[1]}" ]'),
    st.tuples(st.sampled_from(NAMES), st.sampled_from(["1*", "?", "[0-4]", "*x", "12"])).map(
        lambda t: f"[[ ${t[0]} == {t[1]} ]]"),
    _arith.map(lambda e: f"(( {e} ))"),
)
_condition = st.recursive(_test, lambda inner: st.one_of(
    inner.map(lambda c: f"! {c}"),
    st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}")), max_leaves=3)


def _compound(inner):
    body = st.lists(inner, min_size=1, max_size=3).map("; ".join)
    if_ = st.tuples(_condition, body, st.lists(st.tuples(_condition, body), max_size=2), st.one_of(st.none(), body)
                    ).map(lambda t: f"if {t[0]}; then {t[1]}; " + "".join(f"elif {c}; then {b}; " for c, b in t[2])
                          + (f"else {t[3]}; " if t[3] else "") + "fi")
    case = st.tuples(st.sampled_from(NAMES), st.lists(st.tuples(
        st.lists(st.sampled_from(["1*", "?", "[0-4]", "*x", "12", "x", "''"]), min_size=1, max_size=2), body),
        min_size=1, max_size=3)).map(
        lambda t: f'case "${t[0]}" in ' + " ".join(f"{'|'.join(p)}) {b};;" for p, b in t[1]) + " esac")
    for_ = st.tuples(st.sampled_from(NAMES), st.lists(_ints, max_size=3), body).map(
        lambda t: f"for {t[0]} in {' '.join(t[1])}; do {t[2]}; done")
    c_for = st.tuples(st.integers(0, 3), body).map(lambda t: f"for ((i = 0; i < {t[0]}; i++)); do {t[1]}; done")
    and_or = st.tuples(_condition, st.sampled_from(["&&", "||"]), inner).map(lambda t: f"{t[0]} {t[1]} {{ {t[2]}; }}")
    return st.one_of(if_, case, for_, c_for, and_or)


_statement = st.recursive(_assign, _compound, max_leaves=8)
_PRELUDE = "bump() { local step=$1; a=$((a + step)); }\n"
_EPILOGUE = "".join(f'printf "%s\\n" "${{{n}-<unset>}}"\n' for n in NAMES)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_statement, min_size=1, max_size=5))
@example(['if [ -z "$b" ]; then c="1x"; fi', "a=$(( (0 ? $c : 0) ))"])  # a constant in a branch not taken
def test_agrees_with_bash(statements):
    text = _PRELUDE + "\n".join(statements) + "\n"
    try:
        ours = read_script(text, closed=True)
    except InputError:
        assume(False)  # overflow, division by zero ...: bash wraps or aborts the command; not compared
    assume(not any("the loop runs more than" in note for note in ours.notes))  # bash would not end
    assert ours.branches == []
    run = subprocess.run(["/bin/bash", "-c", text + _EPILOGUE], capture_output=True, text=True, env={}, timeout=10)
    expected = run.stdout.split("\n")[:len(NAMES)]
    assert [ours.variables.get(n, "<unset>") for n in NAMES] == expected, text
