"""What a finished run tells its user: where the tables and figures are, and one headline table."""

from __future__ import annotations

from pathlib import Path


def paper_layout_section(markdown: str) -> str:
    """The title and the first ``##`` section (the paper-layout grid) of a report table's Markdown."""
    title = markdown.splitlines()[0] if markdown else ""
    sections = markdown.split("\n## ")
    return f"{title}\n\n## {sections[1].strip()}" if len(sections) > 1 else title


def closing_summary(outputs: list[str | Path]) -> str:
    """Lines naming each report output that exists (and those missing), then the first table's grid."""
    outputs = [Path(p) for p in outputs]
    made = [p for p in outputs if p.is_file()]
    lines = [f"medssl: {len(made)} of {len(outputs)} tables and figures are in place:"]
    lines += [f"  {p}" for p in made]
    lines += [f"  (not made by this run) {p}" for p in outputs if not p.is_file()]
    table = next((p for p in made if p.suffix == ".md"), None)
    if table is not None:
        lines += ["", f"Headline ({table}):", "", paper_layout_section(table.read_text())]
    return "\n".join(lines)
