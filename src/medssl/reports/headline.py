"""What a finished run tells its user: where the tables and figures are, and one headline table."""

from __future__ import annotations

from pathlib import Path


def paper_layout_section(markdown: str) -> str:
    """The title and the first ``##`` section (the paper-layout grid) of a report table's Markdown."""
    title = markdown.splitlines()[0] if markdown else ""
    sections = markdown.split("\n## ")
    return f"{title}\n\n## {sections[1].strip()}" if len(sections) > 1 else title


def blind_models(metrics_files) -> list[str]:
    """One line per evaluation whose model predicts no pixel of a class on its test slices (``never_predicted``
    of its metrics JSON)."""
    import json

    out = []
    for path in metrics_files:
        path = Path(path)
        if not path.is_file():
            continue
        try:
            m = json.loads(path.read_text())
        except ValueError:
            continue
        if m.get("never_predicted"):
            out.append(f"  {m['study']}/{m['run']} on {m['dataset']}, labels {m['ratio']}, seed {m['seed']}: "
                       f"no {', '.join(m['never_predicted'])} ({path})")
    return out


def closing_summary(outputs: list[str | Path], metrics_files=()) -> str:
    """Lines naming each report output that exists (and those missing), the models that learned nothing of a
    class (a warning), then the first results table's grid."""
    outputs = [Path(p) for p in outputs]
    made = [p for p in outputs if p.is_file()]
    lines = [f"medssl: {len(made)} of {len(outputs)} tables and figures are in place:"]
    lines += [f"  {p}" for p in made]
    lines += [f"  (not made by this run) {p}" for p in outputs if not p.is_file()]
    blind = blind_models(metrics_files)
    if blind:
        lines += ["", f"medssl: WARNING: {len(blind)} finetuned model(s) predict no pixel of a class on their test "
                  "slices (background only), so their scores for it mean nothing; the tables mark these cells "
                  "with †:"] + blind
    # the first table of results: one with a grid section (paper A's Table 1, the datasets, has none)
    table = next((p for p in made if p.suffix == ".md" and "\n## " in p.read_text()), None)
    if table is not None:
        lines += ["", f"Headline ({table}):", "", paper_layout_section(table.read_text())]
    return "\n".join(lines)
