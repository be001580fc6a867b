"""Write docs/file-formats.md from the pydantic models of planner/spec.

Run after changing a field of cluster.yaml or job.yaml: `python docs/gen_file_formats.py`.
"""
from pathlib import Path

from planner.report.file_formats import file_formats_markdown

TARGET = Path(__file__).with_name("file-formats.md")

if __name__ == "__main__":
    TARGET.write_text(file_formats_markdown(), encoding="utf-8")
    print(f"wrote {TARGET}")
