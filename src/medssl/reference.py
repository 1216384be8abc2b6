"""The configuration reference (``docs/configuration.md``), rendered from the config schema.

The schema (:func:`medssl.config.load_schema`) is the one definition of every config key and its default, so
the reference is generated from it, never written by hand: one table per level of a config (top level,
``data``, ``datasets.<dataset>``, ``studies.<study>``, ``studies.<study>.runs.<run>``, the pretraining and
finetuning stages, the split, the reports), each row a key with its type (or allowed values), its default
(with the default for each paper where it depends on the study's ``paper``: ``x-paper-default``) and its
description. ``tests/test_docs.py`` checks that the file in the repository is this function's output::

    python -m medssl.reference > docs/configuration.md

Imports nothing but :mod:`medssl.config` (no torch).
"""

from __future__ import annotations

import json
import re

from medssl.config import load_schema

#: the levels of a config, each one table: (heading, the schema node's path, a hand-written introduction)
SECTIONS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Top level", (),
     "A config is one YAML file (`config/config.yaml` is the demo, `config/paper.yaml` the papers' settings)."),
    ("Data", ("properties", "data"),
     "Settings every dataset shares unless its own entry overrides them."),
    ("Datasets", ("properties", "datasets", "additionalProperties"),
     "Each key is a registered dataset (`src/medssl/registry.py`: `msd_heart`, `msd_liver`, `msd_prostate`, "
     "`msd_pancreas`, `msd_spleen`, `oai_zib`, `acdc`, `mnms`, `mmwhs_ct`, `mmwhs_mri`), with optional "
     "overrides, or a dataset of your own in MSD layout (`path`, `modality` and `classes`). An override left "
     "out takes the value of `data` (`image_size`, `ct_window`, `mri_percentiles`; `split` is merged over "
     "`data.split`; a twin's `patients` and `synthetic_scale` come from `data.synthetic`) or the registry's "
     "(`slice_axis`)."),
    ("Studies", ("properties", "studies", "additionalProperties"),
     "A study is one paper's grid: a pretraining pool, the datasets finetuned on, label budgets, seeds, the "
     "stage hyper-parameters and the runs."),
    ("Runs", ("$defs", "run"),
     "A run is one method on one architecture. Its `pretrain` and `finetune` blocks are merged over its "
     "study's; a run trained from scratch (`method: tfs`) or started from `pretrain_run` has no pretraining "
     "of its own. Each method's parameters, with their defaults and sources, are in its docstring "
     "(`src/medssl/methods/`)."),
    ("Pretraining stage", ("$defs", "pretrain_stage"),
     "Hyper-parameters of self-supervised pretraining."),
    ("Finetuning stage", ("$defs", "finetune_stage"),
     "Hyper-parameters of finetuning, which also evaluates the selected model on the test patients."),
    ("Split", ("$defs", "split"),
     "How a dataset's patients are split into train/val/test, and how paper B's labelled slices are drawn."),
    ("Reports", ("properties", "reports"),
     "The papers' tables and figures to build (`results/<experiment>/tables/`, `…/figures/`); each target maps "
     "the paper's row and column names to runs, datasets and ratios of the config. Targets left out are not "
     "built. The keys of each kind of target follow."),
)

#: what a mapping's keys are called in dotted paths (``datasets`` -> ``datasets.<dataset>``)
PLACEHOLDERS = {"datasets": "<dataset>", "studies": "<study>", "runs": "<run>", "panels": "<panel>",
                "series": "<series>"}

HEADER = """# Configuration reference

Every key of a medssl config: its type, its default and what it does, one table per level of the config.

*Generated from the schema, [`config/schemas/config.schema.yaml`](../config/schemas/config.schema.yaml), by
`src/medssl/reference.py`: do not edit by hand. Regenerate with
`python -m medssl.reference > docs/configuration.md`.* For how to write a config, see
[`config/README.md`](../config/README.md).

Defaults are the schema's: `medssl.config.resolve()` writes every one of them out, and `medssl plan --config
FILE` prints the result. "paper `p`: v" is the default of a study whose `paper` is `p` (the schema's
`x-paper-default`). A key with no default is absent unless given, or takes another key's value where its
description says so. Unknown keys are errors at every level."""


# --------------------------------------------------------------------------------------------- helpers

def anchor(title: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _code(value) -> str:
    """A value as inline code: strings bare, everything else as JSON."""
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def _count(low, high, what: str) -> str:
    """`` (2 items)``, `` (at least 1 entry)`` or ``""``: how many items or entries a list or mapping holds."""
    def many(n):
        return f"{n} {what}" if n == 1 else f"{n} {what[:-1] + 'ies' if what.endswith('y') else what + 's'}"
    if low is not None and low == high:
        return f" ({many(low)})"
    return f" (at least {many(low)})" if low else ""


def _cell(text: str) -> str:
    """Prose for a table cell: one line, pipes escaped, ``<word`` not read as an HTML tag."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return re.sub(r"<(?=[A-Za-z/])", "&lt;", text)


class _Reference:
    def __init__(self, schema: dict):
        self.schema = schema
        self.sections = {path: title for title, path, _ in SECTIONS}
        self.used_at: dict[tuple[str, ...], list[str]] = {}
        self._find_uses(schema, (), ())

    # ---------------------------------------------------------------- schema navigation
    def node(self, path: tuple[str, ...]) -> dict:
        node = self.schema
        for key in path:
            node = node[key]
        return node

    def target(self, node: dict, path: tuple[str, ...]) -> tuple[dict, tuple[str, ...]]:
        """``node`` with its ``$ref`` resolved (its own keys win) and the path of the definition it names."""
        if "$ref" not in node:
            return node, path
        ref = tuple(node["$ref"].removeprefix("#/").split("/"))
        resolved, ref_path = self.target(self.node(ref), ref)
        return {**resolved, **{k: v for k, v in node.items() if k != "$ref"}}, ref_path

    def _find_uses(self, node, path: tuple[str, ...], where: tuple[str, ...]) -> None:
        """Record the config paths (dotted) at which each section's schema node applies."""
        if not isinstance(node, dict):
            return
        node, path = self.target(node, path)
        if path in self.sections:
            uses = self.used_at.setdefault(path, [])
            dotted = ".".join(where)
            if dotted not in uses:
                uses.append(dotted)
        for key, child in (node.get("properties") or {}).items():
            self._find_uses(child, path + ("properties", key), where + (key,))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            name = PLACEHOLDERS.get(where[-1] if where else "", "<name>")
            self._find_uses(extra, path + ("additionalProperties",), where + (name,))

    def link(self, path: tuple[str, ...]) -> str:
        title = self.sections[path]
        return f"[{title.lower()}](#{anchor(title)})"

    # ---------------------------------------------------------------- a row's cells
    def type_text(self, node: dict, path: tuple[str, ...]) -> str:
        node, path = self.target(node, path)
        if "enum" in node:
            return "one of " + ", ".join(_code(v) for v in node["enum"])
        if "oneOf" in node:
            return " or ".join(self.type_text(n, path + ("oneOf", str(i))) for i, n in enumerate(node["oneOf"]))
        types = node.get("type", [])
        types = types if isinstance(types, list) else [types]
        words = []
        for t in types:
            if t == "array":
                items = node.get("items", {})
                count = _count(node.get("minItems"), node.get("maxItems"), "item")
                words.append(f"list{count}" + (f" of {self.type_text(items, path + ('items',))}" if items else ""))
            elif t == "object" or (not types and "properties" in node):
                words.append(self.object_text(node, path))
            else:
                words.append(t)
        text = " or ".join(words) or ("object" if "properties" in node else "any")
        limits = [f"{sign} {json.dumps(node[key])}" for key, sign in
                  (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤")) if key in node]
        return text + (f" ({', '.join(limits)})" if limits else "")

    def object_text(self, node: dict, path: tuple[str, ...]) -> str:
        if path in self.sections:
            return f"object: see {self.link(path)}"
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            _, extra_path = self.target(extra, path + ("additionalProperties",))
            values = self.link(extra_path) if extra_path in self.sections else \
                self.type_text(extra, path + ("additionalProperties",))
            return f"mapping{_count(node.get('minProperties'), None, 'entry')}: name → {values}"
        return "object"

    def default_text(self, key: str, node: dict, required: bool) -> str:
        parts = ["required"] if required else []
        if "default" in node:
            parts.append(_code(node["default"]))
        parts += [f"paper `{paper}`: {_code(value)}" for paper, value in (node.get("x-paper-default") or {}).items()]
        return "; ".join(parts)

    def description(self, node: dict) -> str:
        text = node.get("description", "")
        names = (node.get("propertyNames") or {}).get("description")
        if names:
            text = " ".join(text.split())
            names = names[0].upper() + names[1:]
            text = f"{text}{'' if not text or text.endswith('.') else '.'} {names}".strip()
        return _cell(text)

    # ---------------------------------------------------------------- a table
    def rows(self, node: dict, path: tuple[str, ...], prefix: str = "") -> list[str]:
        node, path = self.target(node, path)
        required = set(node.get("required", []))
        out = []
        for key, child in (node.get("properties") or {}).items():
            child_path = path + ("properties", key)
            resolved, resolved_path = self.target(child, child_path)
            name = prefix + key
            nested = "properties" in resolved and resolved_path not in self.sections
            mapping = isinstance(resolved.get("additionalProperties"), dict) and resolved_path not in self.sections
            extra = resolved.get("additionalProperties") if mapping else None
            extra_resolved, extra_path = self.target(extra, resolved_path + ("additionalProperties",)) \
                if isinstance(extra, dict) else ({}, ())
            if not nested or resolved.get("description") or key in required:
                out.append(f"| `{name}` | {_cell(self.type_text(child, child_path))} | "
                           f"{self.default_text(key, resolved, key in required)} | {self.description(resolved)} |")
            if nested:  # an object of fixed keys: its keys in this table, dotted
                out += self.rows(resolved, resolved_path, prefix=f"{name}.")
            elif "properties" in extra_resolved and extra_path not in self.sections:  # a mapping of objects
                out += self.rows(extra_resolved, extra_path, prefix=f"{name}.{PLACEHOLDERS.get(key, '<name>')}.")
        return out

    def table(self, node: dict, path: tuple[str, ...]) -> str:
        head = "| key | type | default | description |\n|---|---|---|---|"
        return "\n".join([head, *self.rows(node, path)])

    # ---------------------------------------------------------------- the page
    def section(self, title: str, path: tuple[str, ...], intro: str) -> str:
        uses = self.used_at.get(path, [])
        where = ("The top level of a config." if uses == [""] else
                 "Keys of " + " and of ".join(f"`{u}`" for u in uses) + ".")
        parts = [f"## {title}", f"{where} {intro}"]
        if path == ("properties", "reports"):
            parts += self.report_parts(path)
        else:
            parts.append(self.table(self.node(path), path))
        return "\n\n".join(parts)

    def report_parts(self, path: tuple[str, ...]) -> list[str]:
        """The reports block in brief: its keys, then one table per kind of target (targets with the same
        schema, e.g. every paper table, share one)."""
        node = self.node(path)
        head = "| key | type | default | description |\n|---|---|---|---|"
        rows, kinds = [], []  # kinds: (schema, [target names]) in schema order
        for key, child in node["properties"].items():
            resolved, _ = self.target(child, path + ("properties", key))
            if "properties" not in resolved:
                rows.append(f"| `{key}` | {_cell(self.type_text(child, path))} | "
                            f"{self.default_text(key, resolved, False)} | {self.description(resolved)} |")
                continue
            same = next((names for schema, names in kinds if schema == resolved), None)
            if same is None:
                kinds.append((resolved, [key]))
            else:
                same.append(key)
        parts = []
        for schema, names in kinds:
            title = "Targets " + ", ".join(names)
            keys = ", ".join(f"`{n}`" for n in names)
            rows.append(f"| {keys} | object: see [{'their' if len(names) > 1 else 'its'} keys](#{anchor(title)}) | "
                        f"| {self.description(schema)} |")
            parts += [f"### {title}", "Keys of " + ", ".join(f"`reports.{n}`" for n in names) + ".",
                      "\n".join([head, *self.rows(schema, path + ("properties", names[0]))])]
        return ["\n".join([head, *rows]), *parts]

    def render(self) -> str:
        return "\n\n".join([HEADER, *(self.section(*s) for s in SECTIONS)]) + "\n"


def configuration_reference(schema: dict | None = None) -> str:
    """``docs/configuration.md``: the reference of every config key, rendered from ``schema`` (default: the
    package's, :func:`medssl.config.load_schema`)."""
    return _Reference(load_schema() if schema is None else schema).render()


if __name__ == "__main__":
    print(configuration_reference(), end="")
