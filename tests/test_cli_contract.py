"""docs/cli.md is the contract; these tests hold the code to its tables.

The page marks each machine-read table with an HTML comment (`<!-- options: solve -->`,
`<!-- json: plan -->`, ...). The options of every command are compared with the Typer command
itself (its parameters, defaults and required flags, not its help text), and every JSON document
is produced by running the commands on small jobs: the key paths they print must equal the
documented ones (an undocumented key fails, so does a documented key that is gone) and every
value must have its documented type.
"""
from __future__ import annotations

import json
import re

import pytest
import typer.main
import yaml
from conftest import EXAMPLES, ROOT
from typer.testing import CliRunner

from planner.cli.app import app
from planner.spec.load import load_cluster, load_job
from planner.spec.plan_keys import KEY_ALIASES, PLAN_KEYS

DOC = ROOT / "docs" / "cli.md"
TEXT = DOC.read_text(encoding="utf-8")
COMMANDS = typer.main.get_command(app).commands
runner = CliRunner()


# ---- reading the page


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:-1]
    return [re.sub(r"^`(.*)`$", r"\1", c.strip()).replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def _tables() -> dict[str, list[list[str]]]:
    """Every marked table: its marker ("options: solve") → rows of cells, header and rule left out."""
    tables, lines = {}, TEXT.splitlines()
    for i, line in enumerate(lines):
        marker = re.fullmatch(r"<!-- (.+) -->", line.strip())
        if not marker:
            continue
        rows = []
        for row in lines[i + 1:]:
            if not row.startswith("|"):
                break
            rows.append(_cells(row))
        assert len(rows) > 2, f"docs/cli.md: no table after <!-- {marker[1]} -->"
        tables[marker[1]] = rows[2:]
    return tables


TABLES = _tables()
JSON_DOCS = {name.split(": ", 1)[1] for name in TABLES if name.startswith("json: ")}
SCALARS = {"int", "number", "str", "bool", "object", "any"}


def _type(cell: str) -> tuple[str, bool, bool]:
    """(base, nullable, is_list) of a type cell: `list of [plan](#a-plan)` → ("plan", False, True)."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", cell).strip()
    nullable = text.endswith(" or null")
    text = text.removesuffix(" or null")
    is_list = text.startswith("list of ")
    base = text.removeprefix("list of ")
    assert base in SCALARS or base in JSON_DOCS, f"docs/cli.md: unknown type {cell!r}"
    return base, nullable, is_list


def schema(name: str, spliced: bool = False) -> dict[str, tuple[str, bool, bool]]:
    """Documented key path → type, with the documents a row links to spliced in. A key whose
    meaning starts with "only" is left out of a document that splices it in (`report` has no
    `--emit`), since that document may never meet the condition."""
    out: dict[str, tuple[str, bool, bool]] = {}
    for key, type_cell, meaning in TABLES[f"json: {name}"]:
        if spliced and meaning.startswith("only"):
            continue
        base, nullable, is_list = _type(type_cell)
        if key == "…":
            out.update(schema(base, spliced=True))
            continue
        out[key] = (base, nullable, is_list)
        if base in JSON_DOCS:
            prefix = key + ("[]." if is_list else ".")
            out.update({prefix + k: v for k, v in schema(base, spliced=True).items()})
    return out


def key_paths(document, documented: dict) -> dict[str, list]:
    """Every key path of a document, with its values; keys of open mappings (`a.*`) read as `*`."""
    open_maps = {p[:-2] for p in documented if p.endswith(".*")}
    leaves = {p for p, (base, _, _) in documented.items() if base == "any"}
    out: dict[str, list] = {}

    def walk(value, prefix: str) -> None:
        if prefix in leaves:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                path = f"{prefix}.{'*' if prefix in open_maps else k}" if prefix else k
                out.setdefault(path, []).append(v)
                walk(v, path)
        elif isinstance(value, list):
            for v in value:
                if isinstance(v, dict):
                    walk(v, prefix + "[]")
    walk(document, "")
    return out


def _is(value, base: str) -> bool:
    if base in ("int", "number") and isinstance(value, bool):
        return False
    return {"int": isinstance(value, int), "number": isinstance(value, (int, float)), "str": isinstance(value, str),
            "bool": isinstance(value, bool), "any": True}.get(base, isinstance(value, dict))


def type_ok(value, base: str, nullable: bool, is_list: bool) -> bool:
    if value is None:
        return nullable
    if is_list:
        return isinstance(value, list) and all(_is(v, base) for v in value)
    return _is(value, base)


# ---- the page's own tables


def test_the_commands_are_the_documented_ones():
    assert {row[0] for row in TABLES["commands"]} == set(COMMANDS)


def test_every_command_has_an_options_table_and_takes_json():
    for name in COMMANDS:
        assert f"options: {name}" in TABLES, f"docs/cli.md: no options table for `planner {name}`"
        assert "--json" in {row[0] for row in TABLES[f"options: {name}"]}


def _default(param) -> str:
    if param.required:
        return "required"
    if getattr(param, "is_flag", False) and param.default is False:
        return "off"
    if param.default is None or param.default == [] or param.default == ():
        return "—"
    return str(param.default)


def _name(param) -> str:
    if param.param_type_name == "argument":
        return param.name.upper()
    return "/".join([*param.opts, *param.secondary_opts])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_options_and_defaults_are_the_documented_ones(command):
    actual = {_name(p): _default(p) for p in COMMANDS[command].params}
    documented = {row[0]: row[2] for row in TABLES[f"options: {command}"]}
    assert documented == actual


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flags_and_repeatable_options_are_documented_as_such(command):
    documented = {row[0]: row[1] for row in TABLES[f"options: {command}"]}
    for param in COMMANDS[command].params:
        value = documented[_name(param)]
        assert (value == "flag") == bool(getattr(param, "is_flag", False)), _name(param)
        assert ("repeatable" in value) == bool(param.multiple), _name(param)


def test_plan_spec_keys_are_the_documented_ones():
    assert {row[0] for row in TABLES["plan-keys"]} == set(PLAN_KEYS) | set(KEY_ALIASES)


def _yaml_blocks(after: str) -> str:
    marker = f"`{after}`\n\n```yaml\n"
    start = TEXT.index(marker) + len(marker)
    return TEXT[start:TEXT.index("```", start)]


@pytest.mark.parametrize("name, load", [("cluster.yaml", load_cluster), ("job.yaml", load_job)])
def test_the_documented_input_files_load(tmp_path, name, load):
    path = tmp_path / name
    path.write_text(_yaml_blocks(name))
    spec = load(path)
    assert set(yaml.safe_load(path.read_text())) <= set(type(spec).model_fields)


def test_every_link_to_a_document_resolves():
    anchors = {"#" + re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", TEXT, flags=re.MULTILINE)}
    for target in re.findall(r"\]\((#[^)]+)\)", TEXT):
        assert target in anchors, f"docs/cli.md links to {target}, which no heading makes"


# ---- the documents, from the commands themselves


SMALL_CLUSTER = {"gpu": "h100_sxm_80gb", "gpus_per_node": 2, "nodes": 1}
ONE_GPU = {"gpu": "h100_sxm_80gb", "gpus_per_node": 1, "nodes": 1, "host_memory_gib": 64}
SMALL_JOB = {"model": "debug", "training": "pretrain", "seq_len": 1024, "global_batch": 8, "tokens": 1.0e9}
TOO_BIG = {"model": "llama3-70b", "training": "pretrain", "seq_len": 1024, "global_batch": 8}


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> dict[str, list[dict]]:
    """Each documented JSON document as the commands print it, from every run that makes it."""
    tmp = tmp_path_factory.mktemp("contract")
    files = {"cluster": SMALL_CLUSTER, "one-gpu": ONE_GPU, "job": SMALL_JOB, "too-big": TOO_BIG}
    for name, content in files.items():
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump(content))
    cluster, one_gpu, job, too_big = (str(tmp / f"{n}.yaml") for n in files)
    h100 = str(EXAMPLES / "clusters" / "h100-1node.yaml")
    finetune = str(EXAMPLES / "jobs" / "llama3-8b-full-finetune.yaml")
    runs = [  # (document, exit code, arguments)
        ("plan", 0, ["estimate", h100, finetune, "--plan", "tp=2,pp=2,zero=1,mbs=1"]),
        ("plan", 1, ["estimate", h100, finetune, "--plan", "tp=1,pp=1,zero=0,mbs=1"]),
        ("solve", 0, ["solve", cluster, job, "--top", "1"]),
        ("solve", 0, ["solve", cluster, job, "--top", "1", "--emit", "megatron", "--out", str(tmp / "launch")]),
        ("solve", 1, ["solve", one_gpu, too_big, "--top", "1"]),
        ("report", 0, ["report", cluster, job, "--top", "1", "--out", str(tmp / "report")]),
        ("check", 1, ["check", h100, finetune, "--deepspeed", str(EXAMPLES / "deepspeed" / "zero3-hf-auto.json"),
                      "--micro-batch", "1"]),
        ("check", 0, ["check", h100, str(EXAMPLES / "jobs" / "llama3-8b-pretrain.yaml"),
                      "--megatron", str(EXAMPLES / "megatron" / "llama3-8b-pretrain.sh")]),
        ("check", 1, ["check", h100, str(EXAMPLES / "jobs" / "llama3-8b-pretrain.yaml"),
                      "--megatron", str(ROOT / "tests" / "data" / "realfiles" / "undecided_recompute.sh")]),
        ("capacity", 0, ["capacity", job, "--gpu", "h100", "--max-gpus", "2", "--price", "2.5"]),
        ("params", 0, ["params", "deepseek-v3"]),
        ("params", 0, ["params", "debug"]),
        ("infer", 0, ["infer", "gpt3-175b"]),
        ("infer", 0, ["infer", "7B"]),
        ("gpus", 0, ["gpus"]),
        ("models", 0, ["models"]),
        ("error", 2, ["params", "no-such-model"]),
        ("error", 2, ["estimate", cluster, str(tmp / "missing.yaml"), "--plan", "tp=1"]),
    ]
    out: dict[str, list[dict]] = {}
    for name, code, args in runs:
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == code, f"planner {' '.join(args)}: exit {result.exit_code}\n{result.output}"
        out.setdefault(name, []).append(json.loads(result.stdout))  # stdout is one JSON document, nothing else
    return out


def test_every_document_is_run():
    assert JSON_DOCS == {"plan", "solve", "report", "check", "capacity", "params", "infer", "gpus", "models", "error"}


@pytest.mark.parametrize("name", sorted(JSON_DOCS))
def test_json_keys_are_the_documented_ones(documents, name):
    documented = schema(name)
    seen: dict[str, list] = {}
    for document in documents[name]:
        for path, values in key_paths(document, documented).items():
            seen.setdefault(path, []).extend(values)
    assert set(seen) - set(documented) == set(), "keys the documents print that docs/cli.md does not list"
    assert set(documented) - set(seen) == set(), "keys docs/cli.md lists that no document printed"
    for path, values in seen.items():
        wrong = [v for v in values if not type_ok(v, *documented[path])]
        assert not wrong, f"{name}: {path} is documented as {documented[path]}, got {wrong[:3]}"


def test_bad_input_goes_to_stderr_and_names_the_field(documents):
    result = runner.invoke(app, ["params", "no-such-model", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] in " ".join(result.stderr.split())
    assert "model" in result.stderr and "Traceback" not in result.output


def test_the_key_walk_sees_open_mappings_and_lists():
    documented = {"a": ("object", False, False), "a.*": ("int", False, False), "b": ("object", False, True),
                  "b[].c": ("str", False, False)}
    paths = key_paths({"a": {"x": 1, "y": 2}, "b": [{"c": "s"}, {"c": "t"}]}, documented)
    assert set(paths) == {"a", "a.*", "b", "b[].c"} and paths["a.*"] == [1, 2]
    assert not type_ok(True, "int", False, False) and type_ok(None, "int", True, False)
    assert type_ok([1, 2], "int", False, True) and not type_ok([1, "2"], "int", False, True)


def test_the_page_is_what_the_readme_and_help_point_at():
    assert "docs/cli.md" in (ROOT / "README.md").read_text()
    json_help = next(p for p in COMMANDS["solve"].params if p.name == "as_json").help
    assert "docs/cli.md" in json_help


def test_ci_runs_the_readme_test_command_exactly():
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("python3 -m venv") and "pytest" in line)
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
