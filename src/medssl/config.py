"""Configuration: load, validate against the schema (:data:`SCHEMA_PATH`), and resolve every default once.

The schema is the single definition of what a config may hold and of every default value: :func:`validate`
applies it with the same JSON-schema semantics as ``snakemake.utils.validate``, and :func:`resolve` writes
out every default the library applies (per dataset, study, run and stage, each method's parameters
included), so that no other module applies one. Where a default is another key's value, resolve says which
(a dataset's ``image_size`` is ``data.image_size``; a run's ``finetune`` block is merged over its study's);
where it depends on the study's paper, the schema says so (``x-paper-default``). The resolved config is the
plan (nnU-Net's word): a valid config itself, written to ``results/<experiment>/plan.yaml`` after a run, and
the source of every job's settings record (:mod:`medssl.jobs`); typed views of it: :mod:`medssl.settings`.

The schema ships inside the package (``medssl/package_data/config.schema.yaml``, a link to
``config/schemas/config.schema.yaml`` in the repository, copied into wheels), so an installed medssl finds it
without the repository; the workflow validates with the same file.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib.resources import files
from pathlib import Path

import yaml

from medssl import registry

#: the JSON schema of a config (YAML), package data of medssl; the workflow validates with it too
SCHEMA_PATH: Path = files("medssl") / "package_data" / "config.schema.yaml"


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return SCHEMA_PATH.read_text()


def load_schema() -> dict:
    """The schema as a fresh dict (callers may change their copy)."""
    return yaml.safe_load(_schema_text())


@functools.lru_cache(maxsize=None)
def _defaults(*path: str) -> str:
    node = load_schema()
    for key in path:
        node = node[key]
        while "$ref" in node:
            node = load_schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return json.dumps({k: v["default"] for k, v in node.get("properties", {}).items() if "default" in v})


def defaults(*path: str) -> dict:
    """``{key: default}`` of the schema node at ``path`` (e.g. ``("$defs", "finetune_stage")``, ``()`` for the
    top level, ``("properties", "data", "properties", "synthetic")``): the one source of default values."""
    return json.loads(_defaults(*path))


def stage_defaults(stage: str) -> dict:
    """Every key of a ``pretrain`` or ``finetune`` block with its schema default."""
    return defaults("$defs", f"{stage}_stage")


def _study_defaults(paper: str | None) -> dict:
    """A study's scalar options with their defaults for ``paper`` (the schema's ``x-paper-default``)."""
    props = load_schema()["properties"]["studies"]["additionalProperties"]["properties"]
    out = {}
    for key, spec in props.items():
        if "default" in spec and key not in ("pretrain", "finetune", "runs"):
            out[key] = spec.get("x-paper-default", {}).get(paper, spec["default"])
    return out


def validate(config: dict, *, registries: bool = True) -> dict:
    """Validate ``config`` against the schema (filling the top-level defaults); raise :class:`ConfigError`
    naming every offending key, one line each.

    ``registries=False`` leaves out the check of methods, architectures and method parameters against their
    registries, which imports torch (~2 s)."""
    import jsonschema

    schema = load_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = "/".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"config key '{where}': {_short(err.message)}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    for key, value in defaults().items():
        config.setdefault(key, copy.deepcopy(value))
    check_references(config, registries=registries)
    return config


def _short(message: str, limit: int = 300) -> str:
    """A jsonschema message without the dump of a whole sub-config it may quote."""
    return message if len(message) <= limit else message[:limit] + " ..."


def check_references(config: dict, *, registries: bool = True) -> None:
    """Cross-field checks the JSON schema cannot express (registry names or datasets declared with a
    ``path``, study datasets, runs). The ``reports`` block is checked by
    :func:`medssl.reports.targets.check_reports`, which resolves the report targets (a layer above this one);
    label ratios and kept epochs, which depend on inherited values, by :func:`resolve`."""
    for name, entry in config["datasets"].items():
        declared = [k for k in registry.DECLARATION_KEYS if k in (entry or {}) and k != "path"]
        if name in registry.REGISTRY and declared and not registry.is_user_dataset(config, name):
            raise ConfigError(f"config key 'datasets/{name}': {name!r} is a registered dataset, so "
                              f"{', '.join(declared)} come from the registry; a dataset of your own needs a new "
                              f"name and 'path'")
        if registry.is_user_dataset(config, name):
            try:
                registry.spec_from_config(name, config["datasets"][name] or {})
            except registry.DatasetDeclarationError as err:
                raise ConfigError(f"config key '{err.key}': {err.reason}") from None
        elif name not in registry.REGISTRY:
            raise ConfigError(f"config key 'datasets/{name}': unknown dataset; registered: "
                              f"{', '.join(sorted(registry.REGISTRY))}; a dataset of your own needs 'path', "
                              f"'modality' and 'classes'")
    for sname, study in config.get("studies", {}).items():
        for key in ("pretrain_datasets", "finetune_datasets"):
            for ds in study[key]:
                if ds not in config["datasets"]:
                    raise ConfigError(f"config key 'studies/{sname}/{key}': dataset {ds!r} is not listed "
                                      f"under 'datasets'")
        for rname, run in study["runs"].items():
            where = f"config key 'studies/{sname}/runs/{rname}"
            if run.get("pretrain_run"):
                src_study, _, src_run = run["pretrain_run"].rpartition("/")
                src = config["studies"].get(src_study or sname, {}).get("runs", {}).get(src_run)
                if src is None or src["method"] == "tfs" or src.get("pretrain_run"):
                    raise ConfigError(f"{where}/pretrain_run': {run['pretrain_run']!r} is not a run with its "
                                      f"own pretraining")
            elif run.get("pretrain_epoch"):
                raise ConfigError(f"{where}/pretrain_epoch': needs pretrain_run")
            for ds in run.get("finetune_datasets", []):
                if ds not in config["datasets"]:
                    raise ConfigError(f"config key 'studies/{sname}/runs/{rname}/finetune_datasets': "
                                      f"dataset {ds!r} is not listed under 'datasets'")
            if run["method"] == "tfs" and run.get("params"):
                raise ConfigError(f"{where}/params': a tfs run (training from scratch) takes no method "
                                  f"parameters")
            if registries:
                _check_registered(run, run["method"], run.get("params") or {}, where)


def _check_registered(run: dict, method: str, params: dict, where: str) -> None:
    from medssl.methods import METHODS, method_params
    from medssl.models import MODELS

    if method != "tfs" and method not in METHODS:
        raise ConfigError(f"{where}/method': unknown method {method!r}; registered: tfs, "
                          f"{', '.join(sorted(METHODS))}")
    if run["arch"] not in MODELS:
        raise ConfigError(f"{where}/arch': unknown arch {run['arch']!r}; registered: {', '.join(sorted(MODELS))}")
    if params:
        known = method_params(METHODS[method])
        for name in params:
            if name not in known:
                raise ConfigError(f"{where}/params/{name}': not a parameter of method {method!r}; its "
                                  f"parameters: {', '.join(sorted(known)) or 'none'}")



_JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
               "null": (type(None),), "array": (list,), "object": (dict,)}


def _resolve(node: dict, schema: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node if isinstance(node, dict) else {}


def _allowed_types(node: dict, schema: dict) -> set[str] | None:
    """JSON types a (resolved) subschema accepts; None when it says nothing (free-form values)."""
    node = _resolve(node, schema)
    if "type" in node:
        return set([node["type"]] if isinstance(node["type"], str) else node["type"])
    if "enum" in node:
        return {name for name, types in _JSON_TYPES.items() for v in node["enum"] if _is_type(v, name)}
    for key in ("oneOf", "anyOf"):
        if key in node:
            parts = [_allowed_types(sub, schema) for sub in node[key]]
            return None if any(p is None for p in parts) else set().union(*parts)
    return None


def _is_type(value, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _JSON_TYPES[name])


def _child(node: dict, key, schema: dict) -> dict:
    node = _resolve(node, schema)
    if isinstance(key, int):
        items = node.get("items")
        if items is None:
            for sub in node.get("oneOf", []) + node.get("anyOf", []):
                sub = _resolve(sub, schema)
                if "items" in sub:
                    return sub["items"]
        return items or {}
    if key in node.get("properties", {}):
        return node["properties"][key]
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    for sub in node.get("oneOf", []) + node.get("anyOf", []):
        sub = _resolve(sub, schema)
        if key in sub.get("properties", {}) or isinstance(sub.get("additionalProperties"), dict):
            return _child(sub, key, schema)
    return {}


def _coerce(value, node: dict, schema: dict):
    allowed = _allowed_types(node, schema)
    if isinstance(value, str) and (allowed is None or "string" not in allowed or "null" in allowed):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        if isinstance(parsed, str) and allowed and "number" in allowed:
            try:
                parsed = float(parsed)  # "1e-3": YAML 1.1 reads it as a string
            except ValueError:
                pass
        if not isinstance(parsed, str) and (allowed is None or any(_is_type(parsed, t) for t in allowed)):
            value = parsed
    elif allowed == {"string"} and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # `--config experiment=2024`: Snakemake made it an int
    if isinstance(value, dict):
        return {k: _coerce(v, _child(node, k, schema), schema) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(v, _child(node, i, schema), schema) for i, v in enumerate(value)]
    return value


def parse_overrides(config: dict, schema: dict | None = None) -> dict:
    """Give ``snakemake --config`` values the types the schema asks for, in place; returns ``config``.

    Snakemake parses ``--config key=value`` as an int, a float, ``True``/``False``, else YAML with PyYAML's
    *BaseLoader*, which keeps every nested scalar a string: ``--config 'data={"image_size": 64}'`` merges
    ``{"image_size": "64"}`` into ``data`` and validation fails. Every string where the schema allows no
    string (or allows null) is read as YAML (``"64"`` -> 64, ``"true"`` -> True, ``"null"`` -> None,
    ``"[1, 2]"`` -> [1, 2]) and kept when the result has a type the schema allows; where the schema says
    nothing (method ``params``) the YAML reading is kept as a config file would give it. Strings the schema
    wants (``label_ratios: ["5", "10"]``, run names) stay strings, and a number where only a string is
    allowed (``--config experiment=2024``) becomes one. Values of the right type are untouched: on a config
    file's contents this changes nothing outside free-form values (where a quoted ``"0.5"`` becomes 0.5).
    """
    schema = schema or load_schema()
    for key, value in list(config.items()):
        config[key] = _coerce(value, _child(schema, key, schema), schema)
    return config


def read_config(path: str | Path) -> dict:
    """The YAML mapping in ``path``, unvalidated; :class:`ConfigError` (one line, naming the file) when it is
    missing, not YAML or not a mapping."""
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror or err}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    return config


def load_config(path: str | Path) -> dict:
    """The config in ``path``, validated and resolved (:func:`resolve`): every default written out."""
    return resolve(validate(read_config(path)))


# --------------------------------------------------------------------------------------------------
# Resolution: every default written out, once


def merged_split(*layers: dict) -> dict:
    """Split settings, later layers winning; ``counts`` override ``ratios``, wherever either was set."""
    split = {k: v for layer in layers for k, v in layer.items()}
    if "counts" in split:
        split.pop("ratios", None)
    return split


def ratio_key(ratio: float) -> str:
    """Canonical wildcard/JSON key for a label ratio in percent: 5 -> '5', 12.5 -> '12.5'."""
    return f"{float(ratio):g}"


def _no_nulls(mapping: dict) -> dict:
    """``mapping`` less its None values (the schema has no null for an absent reference or subset)."""
    return {k: v for k, v in mapping.items() if v is not None}


def _resolve_data(data: dict) -> dict:
    node = ("properties", "data", "properties")
    return {**data,
            "normalisation": {**defaults(*node, "normalisation"), **data.get("normalisation", {})},
            "split": merged_split(defaults("$defs", "split"), data.get("split", {})),
            "synthetic": {**defaults(*node, "synthetic"), **data.get("synthetic", {})},
            "label_ratios": list(data.get("label_ratios", defaults(*node[:2])["label_ratios"]))}


def _resolve_dataset(name: str, entry: dict, data: dict, synthetic: bool) -> dict:
    """A dataset entry with its settings: its own overrides, else ``data``'s (resolved), else the registry's."""
    entry = entry or {}
    spec = registry.get(name, {"datasets": {name: entry}})
    twin = {"patients": entry.get("patients", data["synthetic"]["patients"]),
            "synthetic_scale": entry.get("synthetic_scale", data["synthetic"]["scale"])} if synthetic else {}
    return _no_nulls({
        **entry, "image_size": entry.get("image_size", data["image_size"]),
        "slice_axis": entry.get("slice_axis", spec.slice_axis),
        "ct_window": list(entry.get("ct_window", data["normalisation"]["ct_window"])),
        "mri_percentiles": list(entry.get("mri_percentiles", data["normalisation"]["mri_percentiles"])),
        "split": merged_split(data["split"], entry.get("split", {})), **twin})


def _method_params(method: str, params: dict) -> dict:
    """``params`` with the method's own defaults filled in (imports torch); {} for training from scratch."""
    if method == "tfs":
        return {}
    from medssl.methods import METHODS, method_params

    return {**method_params(METHODS[method]), **params}


def _resolve_run(config: dict, study: dict, sname: str, rname: str, ratio_keys: list[str]) -> dict:
    run = study["runs"][rname]
    resolved = {**run, "domain": run.get("domain", "multi"), "transfer": run.get("transfer", "all"),
                "params": _method_params(run["method"], dict(run.get("params", {}))),
                "finetune_datasets": list(run.get("finetune_datasets", study["finetune_datasets"])),
                "label_ratios": [str(r) for r in run.get("label_ratios", study["label_ratios"])],
                "label": run.get("label", rname),
                "finetune": {**study["finetune"], **run.get("finetune", {})}}
    if run["method"] != "tfs" and not run.get("pretrain_run"):  # a run that pretrains itself
        resolved["pretrain"] = {**study["pretrain"], **run.get("pretrain", {})}
    else:
        resolved.pop("pretrain", None)
    where = f"config key 'studies/{sname}/runs/{rname}"
    key = f"{where}/label_ratios'" if "label_ratios" in run else f"config key 'studies/{sname}/label_ratios'"
    for ratio in resolved["label_ratios"]:
        if ratio == "scans":
            lacking = [ds for ds in resolved["finetune_datasets"]
                       if not (config["datasets"].get(ds) or {}).get("scans_subset")]
            if lacking:
                raise ConfigError(f"{key}: ratio 'scans' needs a scans_subset on every finetuning dataset of "
                                  f"{sname}/{rname}; missing on {', '.join(lacking)}")
        elif ratio not in ratio_keys:
            raise ConfigError(f"{key}: label ratio {ratio!r} of {sname}/{rname} is not in data.label_ratios "
                              f"({', '.join(ratio_keys)}), so the splits have no such subset")
    return resolved


def _resolve_study(config: dict, sname: str, ratio_keys: list[str]) -> dict:
    block = config["studies"][sname]
    options = {**_study_defaults(block.get("paper")), **block}
    if options["downstream"] != "denoising":
        options.pop("noise_sigma", None)  # read only by a denoising study
    study = {**options, "title": block.get("title", sname),
             "label_ratios": [str(r) for r in block.get("label_ratios", ratio_keys)],
             "pretrain": {**stage_defaults("pretrain"), **block.get("pretrain", {})},
             "finetune": {**stage_defaults("finetune"), **block.get("finetune", {})}}
    study["runs"] = {rname: _resolve_run(config, study, sname, rname, ratio_keys) for rname in block["runs"]}
    return study


def _check_kept_epochs(studies: dict) -> None:
    for sname, study in studies.items():
        for rname, run in study["runs"].items():
            if run.get("pretrain_run") and run.get("pretrain_epoch"):
                src_study, src_run = pretraining_of({"studies": studies}, sname, rname)
                keep = studies[src_study]["runs"][src_run]["pretrain"]["keep_epochs"]
                if run["pretrain_epoch"] not in keep:
                    raise ConfigError(f"config key 'studies/{sname}/runs/{rname}/pretrain_epoch': epoch "
                                      f"{run['pretrain_epoch']} is not in the keep_epochs {keep} of "
                                      f"{src_study}/{src_run}")


def resolve(config: dict) -> dict:
    """The plan: ``config`` (validated) with every default the library applies written out.

    Each dataset entry holds its image size, slice axis, normalisation window, split (and, for a synthetic
    config, its twin's size); each study its options, seeds, label ratios and stage blocks; each run its
    method parameters with the method's defaults, datasets, ratios and merged stage blocks. It is itself a
    valid config and resolving it again changes nothing (``tests/test_plan.py``). Plain values only: no
    tuples, no YAML anchors. Raises :class:`ConfigError` for label ratios the splits do not hold and kept
    epochs a run does not keep.
    """
    config = {**defaults(), **config}
    data = _resolve_data(config["data"])
    ratio_keys = [ratio_key(r) for r in data["label_ratios"]]
    resolved = {
        **config, "data": data,
        "datasets": {name: _resolve_dataset(name, entry, data, bool(config["synthetic"]))
                     for name, entry in config["datasets"].items()},
        "studies": {sname: _resolve_study(config, sname, ratio_keys) for sname in config.get("studies") or {}},
    }
    _check_kept_epochs(resolved["studies"])
    return json.loads(json.dumps(resolved))


# --------------------------------------------------------------------------------------------------
# The grid: which pretraining a run starts from, and on which pool


def pretraining_of(config: dict, study: str, run: str) -> tuple[str, str] | None:
    """The (study, run) whose pretraining initialises ``run``: itself, the run named by ``pretrain_run``
    ('run' or 'study/run'), or None for runs trained from scratch (method ``tfs``)."""
    r = config["studies"][study]["runs"][run]
    ref = r.get("pretrain_run")
    if ref is None:
        return None if r["method"] == "tfs" else (study, run)
    src_study, _, src_run = ref.rpartition("/")
    return (src_study or study, src_run)


def pool_datasets(config: dict, study: str, pool: str) -> list[str]:
    """Datasets of a pretraining pool: ``all`` = the study's pretrain_datasets, else the single dataset."""
    return list(config["studies"][study]["pretrain_datasets"]) if pool == "all" else [pool]


def pretrain_pool(config: dict, study: str, run: str, dataset: str) -> str:
    """Pool name of a pretraining (resolved config): 'all' (domain multi: the study's pretrain_datasets) or the
    dataset."""
    return "all" if config["studies"][study]["runs"][run]["domain"] == "multi" else dataset


def features_pool(config: dict, study: str, run: str) -> str:
    """Pool of the pretraining whose features Figure 3b shows: 'all' for a multi-domain run, else the pool of
    the study's first finetuning dataset."""
    return pretrain_pool(config, study, run, config["studies"][study]["finetune_datasets"][0])
