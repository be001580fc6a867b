"""docs/file-formats.md is generated from the pydantic models of planner/spec and must match them."""
from conftest import ROOT

from planner.report.file_formats import (
    changed_lines,
    field_docstrings,
    file_formats_markdown,
    type_text,
)
from planner.spec import ClusterSpec, JobSpec

COMMITTED = ROOT / "docs" / "file-formats.md"


def test_committed_file_formats_page_is_up_to_date():
    generated = file_formats_markdown()
    committed = COMMITTED.read_text(encoding="utf-8")
    assert committed == generated, (
        "docs/file-formats.md is out of date; run `python docs/gen_file_formats.py`: "
        + "; ".join(list(changed_lines(committed, generated))[:3]))


def test_every_field_of_both_files_is_listed():
    page = file_formats_markdown()
    for model in (ClusterSpec, JobSpec):
        for name in model.model_fields:
            assert f"| `{name}` |" in page


def test_field_docstrings_are_read_from_the_class_body():
    docs = field_docstrings(JobSpec)
    assert docs["seq_len"] == "Tokens per sequence, at most 16,777,216 (2^24)."
    assert docs["training"].startswith("pretrain or full")  # joined from two source lines
    assert "\n" not in docs["training"]


def test_every_input_field_has_a_meaning():
    for model in (ClusterSpec, JobSpec):
        assert set(field_docstrings(model)) == set(model.model_fields), model.__name__


def test_types_read_like_prose():
    fields = ClusterSpec.model_fields
    assert type_text(fields["gpus_per_node"].annotation, fields["gpus_per_node"].metadata) == "int > 0 and ≤ 1,024"
    assert (type_text(fields["host_memory_gib"].annotation, fields["host_memory_gib"].metadata)
            == "float > 0 and ≤ 1,048,576 (optional)")
    assert type_text(JobSpec.model_fields["training"].annotation) == "`pretrain` \\| `full` \\| `lora` \\| `qlora`"
