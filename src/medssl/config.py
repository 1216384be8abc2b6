"""Configuration: load, validate against the schema (:data:`SCHEMA_PATH`), and resolve defaults.

The schema is the single definition of what a config may hold; :func:`validate` applies it with the same
JSON-schema semantics as ``snakemake.utils.validate`` so the library and the workflow agree. It ships inside
the package (``medssl/package_data/config.schema.yaml``, a link to ``config/schemas/config.schema.yaml`` in
the repository, copied into wheels), so an installed medssl finds it without the repository; the workflow
validates with the same file (``SCHEMA_PATH``). Resolution
helpers merge the global defaults with per-dataset, per-study and per-run overrides, so every consumer
(slicing, splits, training, reports, the Snakefile) reads one resolved view.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import yaml

from medssl import registry

#: the JSON schema of a config (YAML), package data of medssl; the workflow's ``validate`` reads it too
SCHEMA_PATH: Path = files("medssl") / "package_data" / "config.schema.yaml"

DEFAULT_NORMALISATION = {"ct_window": [-200.0, 300.0], "mri_percentiles": [0.5, 99.5]}
DEFAULT_SPLIT = {"ratios": [0.7, 0.1, 0.2], "seed": 0}
DEFAULT_SYNTHETIC = {"patients": 10, "seed": 0, "scale": 0.25}
DEFAULT_LABEL_RATIOS = ["5", "10", "100"]  # a study's finetuning label ratios (split keys)
DEFAULT_PRETRAIN = {
    "epochs": 1000, "batch_size": 30, "lr": 3e-4, "lr_scaling": "none", "lr_reference_batch": 256,
    "lr_schedule": "constant", "weight_decay": 0.0, "checkpoint_every": 10, "keep_epochs": [], "steps_per_epoch": None,
    "steps": None, "num_workers": 0, "crop_scale": [0.5, 1.0],
}
DEFAULT_FINETUNE = {
    "epochs": 100, "batch_size": 30, "lr": 5e-4, "poly_power": 0.9, "weight_decay": 0.0,
    "checkpoint_every": 10, "steps_per_epoch": None, "steps": None, "num_workers": 0, "val_every": 1,
    "crop_scale": [0.7, 1.0], "rotation_degrees": 15.0,
}


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def load_schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def validate(config: dict, *, registries: bool = True) -> dict:
    """Validate ``config`` against the schema (filling schema defaults); raise :class:`ConfigError`.

    ``registries=False`` leaves out the check of methods, architectures and method parameters against their
    registries, which imports torch (~2 s): for commands that build no model, on a config the workflow
    already checked in full when it was parsed."""
    import jsonschema

    schema = load_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = "/".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"config key '{where}': {err.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    for key, spec in schema["properties"].items():
        if "default" in spec:
            config.setdefault(key, copy.deepcopy(spec["default"]))
    check_references(config, registries=registries)
    return config


def check_references(config: dict, *, registries: bool = True) -> None:
    """Cross-field checks the JSON schema cannot express (registry names or datasets declared with a
    ``path``, study datasets, runs). The ``reports`` block is checked by
    :func:`medssl.reports.targets.check_reports`, which resolves the report targets (a layer above this one)."""
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
                src_study = src_study or sname
                src = config["studies"].get(src_study, {}).get("runs", {}).get(src_run)
                if src is None or src["method"] == "tfs" or src.get("pretrain_run"):
                    raise ConfigError(f"{where}/pretrain_run': {run['pretrain_run']!r} is not a run with its "
                                      f"own pretraining")
                if run.get("pretrain_epoch"):
                    keep = stage_settings(config, src_study, "pretrain", src_run)["keep_epochs"]
                    if run["pretrain_epoch"] not in keep:
                        raise ConfigError(f"{where}/pretrain_epoch': epoch {run['pretrain_epoch']} is not in "
                                          f"the keep_epochs {keep} of {src_study}/{src_run}")
            elif run.get("pretrain_epoch"):
                raise ConfigError(f"{where}/pretrain_epoch': needs pretrain_run")
            for ds in run.get("finetune_datasets", []):
                if ds not in config["datasets"]:
                    raise ConfigError(f"config key 'studies/{sname}/runs/{rname}/finetune_datasets': "
                                      f"dataset {ds!r} is not listed under 'datasets'")
            _check_run(config, sname, rname, registries=registries)


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


def _check_run(config: dict, sname: str, rname: str, *, registries: bool = True) -> None:
    """A run's method, arch and method parameters are registered (:mod:`medssl.methods`,
    :mod:`medssl.models`; skipped with ``registries=False``), and each of its label ratios is a key the splits
    hold: one of ``data.label_ratios`` (as :func:`ratio_key` writes it), or ``scans`` where every finetuning
    dataset of the run has a ``scans_subset``."""
    run = config["studies"][sname]["runs"][rname]
    where = f"config key 'studies/{sname}/runs/{rname}"
    method = run["method"]
    params = run.get("params") or {}
    if method == "tfs" and params:
        raise ConfigError(f"{where}/params': a tfs run (training from scratch) takes no method parameters")
    if registries:
        _check_registered(run, method, params, where)
    rs = run_settings(config, sname, rname)
    key = f"{where}/label_ratios'" if "label_ratios" in run else f"config key 'studies/{sname}/label_ratios'"
    keys = [ratio_key(r) for r in label_ratios(config)]
    for ratio in rs["label_ratios"]:
        if ratio == "scans":
            lacking = [ds for ds in rs["finetune_datasets"]
                       if not (config["datasets"].get(ds) or {}).get("scans_subset")]
            if lacking:
                raise ConfigError(f"{key}: ratio 'scans' needs a scans_subset on every finetuning dataset of "
                                  f"{sname}/{rname}; missing on {', '.join(lacking)}")
        elif ratio not in keys:
            raise ConfigError(f"{key}: label ratio {ratio!r} of {sname}/{rname} is not in data.label_ratios "
                              f"({', '.join(keys)}), so the splits have no such subset")


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


def load_config(path: str | Path, *, registries: bool = True) -> dict:
    with open(path) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    return validate(config, registries=registries)


# --------------------------------------------------------------------------------------------------
# Resolved views


@dataclass(frozen=True)
class DatasetSettings:
    """A registry entry merged with the config's global and per-dataset settings."""

    spec: registry.DatasetSpec
    image_size: int
    slice_axis: str
    ct_window: tuple[float, float]
    mri_percentiles: tuple[float, float]
    split: dict
    scans_subset: tuple[int, int] | None
    synthetic_patients: int = DEFAULT_SYNTHETIC["patients"]
    synthetic_scale: float = DEFAULT_SYNTHETIC["scale"]
    synthetic_seed: int = DEFAULT_SYNTHETIC["seed"]

    @property
    def name(self) -> str:
        return self.spec.name


def merged_split(*layers: dict) -> dict:
    """Split settings, later layers winning; ``counts`` override ``ratios``, wherever either was set."""
    split = {k: v for layer in layers for k, v in layer.items()}
    if "counts" in split:
        split.pop("ratios", None)
    return split


def dataset_settings(config: dict, name: str) -> DatasetSettings:
    spec = registry.get(name, config)
    data = config["data"]
    over = config["datasets"].get(name) or {}
    norm = {**DEFAULT_NORMALISATION, **data.get("normalisation", {})}
    split = merged_split(DEFAULT_SPLIT, data.get("split", {}), over.get("split", {}))
    synth = {**DEFAULT_SYNTHETIC, **data.get("synthetic", {})}
    scans = over.get("scans_subset")
    return DatasetSettings(
        spec=spec,
        image_size=int(over.get("image_size", data["image_size"])),
        slice_axis=over.get("slice_axis", spec.slice_axis),
        ct_window=tuple(over.get("ct_window", norm["ct_window"])),
        mri_percentiles=tuple(over.get("mri_percentiles", norm["mri_percentiles"])),
        split=split,
        scans_subset=tuple(scans) if scans else None,
        synthetic_patients=int(over.get("patients", synth["patients"])),
        synthetic_scale=float(over.get("synthetic_scale", synth["scale"])),
        synthetic_seed=int(synth["seed"]),
    )


def label_ratios(config: dict) -> list[float]:
    return list(config["data"].get("label_ratios", [5, 10, 50, 100]))


def ratio_key(ratio: float) -> str:
    """Canonical wildcard/JSON key for a label ratio in percent: 5 -> '5', 12.5 -> '12.5'."""
    return f"{float(ratio):g}"


DEFAULT_NOISE_SIGMA = 0.1  # denoising downstream: Gaussian noise sd on [0, 1] images (paper B is silent)


def study_options(config: dict, study: str) -> dict:
    """A study's options with their defaults, which depend on its ``paper``:

    * ``slice_filter``: ``foreground`` (paper A's Table 1 counts only labelled slices) for ``paper: hssl``;
      ``all`` for ``paper: ssmtl`` and studies without ``paper``.
    * ``input_norm``: ``instance`` (zero mean, unit variance per image, paper B) for ``paper: ssmtl``; ``none``
      otherwise.
    * ``downstream``: ``segmentation`` (default) or ``denoising`` with ``noise_sigma`` (:data:`DEFAULT_NOISE_SIGMA`).
    """
    s = config["studies"][study]
    paper = s.get("paper")
    return {
        "paper": paper,
        "downstream": s.get("downstream", "segmentation"),
        "slice_filter": s.get("slice_filter", "foreground" if paper == "hssl" else "all"),
        "input_norm": s.get("input_norm", "instance" if paper == "ssmtl" else "none"),
        "noise_sigma": float(s.get("noise_sigma", DEFAULT_NOISE_SIGMA)),
    }


def stage_settings(config: dict, study: str, stage: str, run: str | None = None) -> dict:
    """Hyper-parameters of ``stage`` ('pretrain' or 'finetune'): defaults < study < run."""
    base = DEFAULT_PRETRAIN if stage == "pretrain" else DEFAULT_FINETUNE
    s = config["studies"][study]
    merged = {**base, **s.get(stage, {})}
    if run is not None:
        merged.update(s["runs"][run].get(stage, {}))
    return merged


def run_params(config: dict, study: str, run: str) -> dict:
    """A run's method parameters with the method's own defaults filled in (:func:`medssl.methods.method_params`;
    imports torch); {} for a run trained from scratch."""
    rs = run_settings(config, study, run)
    if rs["method"] == "tfs":
        return {}
    from medssl.methods import METHODS, method_params

    return {**method_params(METHODS[rs["method"]]), **rs["params"]}


def run_settings(config: dict, study: str, run: str) -> dict:
    """A run entry with its defaults filled: method, arch, domain, params, transfer, datasets, ratios."""
    s = config["studies"][study]
    r = s["runs"][run]
    return {
        "name": run,
        "method": r["method"],
        "arch": r["arch"],
        "domain": r.get("domain", "multi"),
        "params": dict(r.get("params", {})),
        "transfer": r.get("transfer", "all"),
        "finetune_datasets": list(r.get("finetune_datasets", s["finetune_datasets"])),
        "label_ratios": [str(x) for x in r.get("label_ratios", s.get("label_ratios", DEFAULT_LABEL_RATIOS))],
        "label": r.get("label", run),
        "pretrain_run": r.get("pretrain_run"),
        "pretrain_epoch": r.get("pretrain_epoch"),
    }


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
    """Pool name of a pretraining: 'all' (domain multi: the study's pretrain_datasets) or the dataset."""
    return "all" if run_settings(config, study, run)["domain"] == "multi" else dataset


def features_pool(config: dict, study: str, run: str) -> str:
    """Pool of the pretraining whose features Figure 3b shows: 'all' for a multi-domain run, else the pool of
    the study's first finetuning dataset."""
    return pretrain_pool(config, study, run, config["studies"][study]["finetune_datasets"][0])
