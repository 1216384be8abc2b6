"""Configuration: load, validate against ``config/schemas/config.schema.yaml``, and resolve defaults.

The schema is the single definition of what a config may hold; :func:`validate` applies it with the same
JSON-schema semantics as ``snakemake.utils.validate`` so the library and the workflow agree. Resolution
helpers merge the global defaults with per-dataset, per-study and per-run overrides, so every consumer
(slicing, splits, training, reports, the Snakefile) reads one resolved view.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import yaml

from medssl import registry

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "config" / "schemas" / "config.schema.yaml"

DEFAULT_NORMALISATION = {"ct_window": [-200.0, 300.0], "mri_percentiles": [0.5, 99.5]}
DEFAULT_SPLIT = {"ratios": [0.7, 0.1, 0.2], "seed": 0}
DEFAULT_SYNTHETIC = {"patients": 10, "seed": 0, "scale": 0.25}
DEFAULT_PRETRAIN = {
    "epochs": 1000, "batch_size": 30, "lr": 3e-4, "lr_scaling": "none", "lr_reference_batch": 256,
    "weight_decay": 0.0, "checkpoint_every": 10, "keep_epochs": [], "steps_per_epoch": None,
    "num_workers": 0, "crop_scale": [0.5, 1.0],
}
DEFAULT_FINETUNE = {
    "epochs": 100, "batch_size": 30, "lr": 5e-4, "poly_power": 0.9, "weight_decay": 0.0,
    "checkpoint_every": 10, "steps_per_epoch": None, "num_workers": 0, "val_every": 1,
    "crop_scale": [0.7, 1.0], "rotation_degrees": 15.0,
}


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def load_schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def validate(config: dict) -> dict:
    """Validate ``config`` against the schema (filling schema defaults); raise :class:`ConfigError`."""
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
    check_references(config)
    return config


def check_references(config: dict) -> None:
    """Cross-field checks the JSON schema cannot express (registry names, study datasets)."""
    for name in config["datasets"]:
        if name not in registry.REGISTRY:
            raise ConfigError(f"config key 'datasets/{name}': unknown dataset; registered: "
                              f"{', '.join(sorted(registry.REGISTRY))}")
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

    if config.get("reports"):
        from medssl.reports.targets import check_reports

        check_reports(config)


def load_config(path: str | Path) -> dict:
    with open(path) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    return validate(config)


# --------------------------------------------------------------------------------------------------
# Resolved views


def results_dir(config: dict) -> Path:
    return Path("results") / config["experiment"]


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


def dataset_settings(config: dict, name: str) -> DatasetSettings:
    spec = registry.get(name)
    data = config["data"]
    over = config["datasets"].get(name) or {}
    norm = {**DEFAULT_NORMALISATION, **data.get("normalisation", {})}
    split = {**DEFAULT_SPLIT, **data.get("split", {}), **over.get("split", {})}
    if "counts" in over.get("split", {}):
        split.pop("ratios", None)
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


def stage_settings(config: dict, study: str, stage: str, run: str | None = None) -> dict:
    """Hyper-parameters of ``stage`` ('pretrain' or 'finetune'): defaults < study < run."""
    base = DEFAULT_PRETRAIN if stage == "pretrain" else DEFAULT_FINETUNE
    s = config["studies"][study]
    merged = {**base, **s.get(stage, {})}
    if run is not None:
        merged.update(s["runs"][run].get(stage, {}))
    return merged


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
        "label_ratios": [str(x) for x in r.get("label_ratios", s.get("label_ratios", ["5", "10", "100"]))],
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


def used_datasets(config: dict) -> list[str]:
    return list(config["datasets"])
