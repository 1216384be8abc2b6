"""Settings records (medssl.jobs): every setting a job reads is in its record, the record is what reruns it,
and nothing else reaches it.

The central test is generated from the schema: every leaf key it knows is changed, one at a time, in a config
that holds every kind of job, and must either change the record of some job (or the set of jobs: the grid),
or be one of the declared keys that say where a job runs (they must change no record) or feed only the cost
model.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json

import pytest
import yaml

from conftest import REPO
from medssl import config as mcfg
from medssl import jobs
from medssl import settings as st
from medssl.plan import Plan

NOT_RECORDED = {  # schema keys that no record holds, and why
    **{k: "where it runs (medssl.settings.RUNTIME_KEYS)" for k in st.RUNTIME_KEYS},
    **{k: "the cost model's (medssl.settings.COST_KEYS)" for k in st.COST_KEYS},
    "keep_finetuned_models": "which files a finetune keeps: an output of the rule, which Snakemake checks",
}


def _base(synthetic: bool) -> dict:
    """The demo config, plus a dataset of one's own in a study of its own (declaration keys), real or synthetic."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["synthetic"] = synthetic
    config["datasets"]["mine"] = {"path": "/data/mine", "modality": "MRI", "classes": {"organ": 1},
                                  "channel": 0, "group": 7, "task": 9, "title": "Mine", "roi": "knee",
                                  "patient_pattern": "^(.+)_scan\\d$", "slice_axis": "axial"}
    config["studies"]["own"] = {"pretrain_datasets": ["mine", "msd_heart"], "finetune_datasets": ["mine"],
                                "label_ratios": ["100"],
                                "runs": {"tfs": {"method": "tfs", "arch": "unet"},
                                         "cl": {"method": "simclr", "arch": "hssl_net"}}}
    return config


def _records(config: dict) -> dict[tuple, str]:
    """(kind, wildcards) -> record JSON of every job of the resolved ``config``."""
    plan = Plan.of(config)
    found = {}

    def add(kind, **w):
        found[(kind, *sorted(w.items()))] = jobs.record(config, kind, **w).to_json()

    for d in plan.datasets:
        add("synthesize" if config["synthetic"] else "fetch", dataset=d)
        add("slice", dataset=d)
        add("split", dataset=d)
    for s, r, p in plan.pretrains:
        add("pretrain", study=s, run=r, pool=p)
    for s, r, d, ratio, seed in plan.evaluations:
        add("finetune", study=s, run=r, dataset=d, ratio=ratio, seed=seed)
    for s, r in plan.features:
        add("features", study=s, run=r)
    for t in plan.reports:
        add("report", target=t)
    for s in plan.summaries:
        add("summary", study=s)
    return found


def _leaves(node, schema, path=()):
    """(path, subschema) of every leaf key of the schema (no reports: report jobs hold their block whole)."""
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    props = dict(node.get("properties", {}))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and not props:
        props = {"*": extra}
    if not props:
        yield path, node
        return
    for key, sub in props.items():
        if path == () and key == "reports":
            continue
        if key in ("params", "classes"):  # free-form mappings: leaves
            yield (*path, key), sub
            continue
        yield from _leaves(sub, schema, (*path, key))


# Where a key of each wildcard level is changed in the base config
PLACES = {("datasets", "*"): {"path": "mine", "modality": "mine", "classes": "mine", "channel": "mine",
                              "group": "mine", "task": "mine", "title": "mine", "roi": "mine",
                              "patient_pattern": "mine", "scans_subset": "mmwhs_ct", "*": "msd_heart"},
          ("studies", "*"): {"noise_sigma": "ssmtl_denoise", "*": "hssl"},
          ("studies", "*", "runs", "*"): {"pretrain_run": ("hssl", "hssl_tasks"),
                                          "pretrain_epoch": ("ssmtl_ct", "unet_t5_e1"), "*": ("hssl", "hssl")}}


def _concrete(path: tuple) -> tuple:
    """The schema path with each '*' replaced by the dataset, study or run the key is changed on."""
    out = list(path)
    if path[:2] == ("datasets", "*"):
        places = PLACES[("datasets", "*")]
        out[1] = places.get(path[2], places["*"])
    if path[:2] == ("studies", "*"):
        if len(path) > 3 and path[2] == "runs":
            study, run = PLACES[("studies", "*", "runs", "*")].get(path[4], ("hssl", "hssl"))
            out[1], out[3] = study, run
        else:
            out[1] = PLACES[("studies", "*")].get(path[2], "hssl")
    return tuple(out)


METHOD_SWAP = {"simclr": "moco", "hssl": "simclr", "tfs": "tfs"}


def _altered(value, node, key):
    """A valid value of schema ``node`` other than ``value`` (the current or default one)."""
    if key == "method":
        return METHOD_SWAP.get(value, "simclr")
    if key == "arch":
        return "unet" if value != "unet" else "hssl_net"
    if key == "params":
        name, v = next(iter(value.items()))
        return {**value, name: _altered(v, {}, name)}
    if key == "classes":
        return {"organ": 2}
    if key == "pretrain_run":
        return "simclr"
    if "enum" in node:
        return next(e for e in node["enum"] if e != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int) and not isinstance(value, bool):
        hi = node.get("maximum")
        return value - 1 if hi is not None and value + 1 > hi else value + 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.5
    if isinstance(value, str):
        return value + "x" if key != "patient_pattern" else "^(.+)_s\\d$"
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value[:-1] if len(value) > 1 else value  # a grid list: one entry less
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        if key == "ratios":
            return [0.6, 0.2, 0.2]
        if key in ("crop_scale",):
            return [0.5, value[1]]
        if key == "label_ratios":
            return sorted({*value, 20})
        if key == "keep_epochs":
            return sorted({*value, 2})
        return [value[0] + 1, *value[1:]] if key != "counts" else [4, 2, 2]
    if value is None:
        if key in ("steps", "steps_per_epoch"):
            return 3
        if key == "keep_epochs":
            return [1]
        if key == "counts":
            return [4, 2, 2]
        if key == "images_per_second":
            return 123.0
        raise AssertionError(f"no value to try for {key}")
    if value == [] and key == "keep_epochs":
        return [1]
    if value == [] and key == "loggers":
        return ["tensorboard"]
    raise AssertionError(f"no value to try for {key} = {value!r}")


def _current(resolved: dict, path: tuple):
    node = resolved
    for k in path:
        node = node[k]
    return node


def _set(config: dict, path: tuple, value) -> None:
    node = config
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value


def _fallback(resolved: dict, path: tuple):
    """The value a key has when the config leaves it out, where the resolved config does not show it."""
    key = path[-1]
    defaults = {"channel": 0, "group": 1, "task": 1, "title": "t", "roi": "r", "patient_pattern": "x",
                "counts": None, "steps": None, "steps_per_epoch": None, "pretrain_epoch": 1, "path": "/data/x",
                "noise_sigma": 0.1, "scans_subset": [2, 2], "paper": "hssl", "keep_epochs": [],
                "images_per_second": None, "pretrain_run": "hssl", "patients": 8, "synthetic_scale": 0.25,
                "monitor_every": 10, "monitor_samples": 64, "sample_slices": 100}
    return defaults[key]


def _try(path: tuple, node: dict, bases: dict) -> tuple[set, bool]:
    """Change ``path`` in each base config; the job kinds whose records changed, and whether the set of jobs
    (the grid) changed."""
    changed, grid = set(), False
    for synthetic, (raw, resolved, records) in bases.items():
        where = _concrete(path)
        if where[0] == "datasets" and where[1] == "mine" and where[2] != "path" and synthetic is None:
            continue
        try:
            value = _current(resolved, where)
        except KeyError:
            value = _fallback(resolved, where)
        config = copy.deepcopy(raw)
        if path[-1] == "pretrain_epoch":  # the epoch must be kept by the pretraining it names
            config["studies"]["ssmtl_ct"]["pretrain"]["keep_epochs"] = [1, 2]
            config["studies"]["ssmtl_ct"]["pretrain"]["epochs"] = 2
        if path[-1] == "counts" and where[0] == "data":
            config["data"]["split"].pop("ratios", None)
        _set(config, where, _altered(value, node, path[-1]))
        new = _records(mcfg.resolve(mcfg.validate(config)))
        if path[-1] == "pretrain_epoch":
            records = _records(mcfg.resolve(mcfg.validate(_with_kept(raw))))
        grid |= new.keys() != records.keys()
        changed |= {k[0] for k in new.keys() & records.keys() if new[k] != records[k]}
    return changed, grid


def _with_kept(raw):
    config = copy.deepcopy(raw)
    config["studies"]["ssmtl_ct"]["pretrain"]["keep_epochs"] = [1, 2]
    config["studies"]["ssmtl_ct"]["pretrain"]["epochs"] = 2
    return config


@pytest.fixture(scope="module")
def bases():
    out = {}
    for synthetic in (True, False):
        raw = _base(synthetic)
        resolved = mcfg.resolve(mcfg.validate(copy.deepcopy(raw)))
        out[synthetic] = (raw, resolved, _records(resolved))
    return out


def test_every_schema_key_reaches_a_record_or_is_declared(bases):
    """Generated from the schema: each leaf key either changes some job's record (so Snakemake reruns that
    job, and its dependents through their inputs) or the grid, or is declared in NOT_RECORDED and then
    changes no record at all."""
    schema = mcfg.load_schema()
    leaves = list(_leaves(schema, schema))
    assert len(leaves) > 60
    silent, leaking = [], []
    for path, node in leaves:
        changed, grid = _try(path, node, bases)
        if path[-1] in NOT_RECORDED:
            if changed:
                leaking.append(f"{'/'.join(path)} changed {sorted(changed)}")
        elif not changed and not grid:
            silent.append("/".join(path))
    assert not silent, f"keys that reach no job's record: {silent}"
    assert not leaking, f"runtime keys inside records: {leaking}"


@pytest.mark.parametrize("path, kinds", [
    (("model_width",), {"pretrain", "finetune"}),  # the fault of issue 21: read by training, hashed nowhere
    (("studies", "hssl", "finetune", "lr"), {"finetune"}),
    (("studies", "hssl", "pretrain", "lr"), {"pretrain"}),
    (("data", "split", "seed"), {"split"}),
    (("data", "image_size"), {"slice"}),
    (("data", "synthetic", "patients"), {"synthesize"}),
    (("studies", "hssl", "runs", "hssl", "label"), {"report"}),
])
def test_a_key_reruns_the_jobs_that_read_it(bases, path, kinds):
    raw, resolved, records = bases[True]
    config = copy.deepcopy(raw)
    _set(config, path, _altered(_current(resolved, path), {}, path[-1]))
    new = _records(mcfg.resolve(mcfg.validate(config)))
    assert {k[0] for k in new.keys() & records.keys() if new[k] != records[k]} == kinds


def test_runtime_keys_reach_the_job_outside_its_record():
    config = mcfg.load_config(REPO / "config" / "paper.yaml")
    rt = st.runtime(config, "hssl", "finetune", "hssl")
    assert (rt.device, rt.threads, rt.checkpoint_every, rt.num_workers) == ("auto", 8, 100, 6)
    assert rt.args() == ["--device", "auto", "--threads", "8", "--num-workers", "6", "--checkpoint-every", "100",
                         "--data-on-gpu", "auto", "--data-on-gpu-fraction", "0.25"]
    pre = st.runtime(config, "hssl", "pretrain", "hssl")
    assert pre.args("pretrain")[-2:] == ["--gpus", "1"] and "--compile" not in pre.args("pretrain")
    record = jobs.record(config, "finetune", study="hssl", run="hssl", dataset="msd_heart", ratio="5", seed=0)
    text = record.to_json()
    for key in st.RUNTIME_KEYS:
        assert f'"{key}"' not in text


def test_shared_sources_carry_only_the_dataset_settings():
    """Two experiments that differ in everything but a dataset's own settings hand its source jobs the same
    record, so neither reruns the other's twin or fetch."""
    a = mcfg.load_config(REPO / "config" / "config.yaml")
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw.update(experiment="other", threads=2, model_width=0.5)
    raw["studies"]["hssl"]["finetune"]["lr"] = 1e-4
    raw["data"]["image_size"] = 96
    b = mcfg.resolve(mcfg.validate(raw))
    for d in a["datasets"]:
        assert jobs.record(a, "synthesize", dataset=d) == jobs.record(b, "synthesize", dataset=d)
        assert jobs.record(a, "fetch", dataset=d) == jobs.record(b, "fetch", dataset=d)
        assert jobs.record(a, "slice", dataset=d) != jobs.record(b, "slice", dataset=d) or \
            a["datasets"][d]["image_size"] != 64


@pytest.mark.parametrize("kind", sorted(jobs.JOBS))
def test_records_round_trip_through_json(kind):
    config = mcfg.load_config(REPO / "config" / "config.yaml")
    plan = Plan.of(config)
    wildcards = {"synthesize": {"dataset": "msd_heart"}, "fetch": {"dataset": "acdc"}, "slice": {"dataset": "mnms"},
                 "split": {"dataset": "mmwhs_ct"},
                 "pretrain": dict(zip(("study", "run", "pool"), plan.pretrains[0])),
                 "finetune": dict(zip(("study", "run", "dataset", "ratio", "seed"), plan.evaluations[0])),
                 "features": dict(zip(("study", "run"), plan.features[0])),
                 "report": {"target": "hssl_table2"}, "summary": {"study": "hssl"}, "weights": {"name": "vgg19"}}[kind]
    if kind == "summary":
        config = {**config, "reports": {}}
    record = jobs.record(config, kind, **wildcards)
    text = record.to_json()
    assert jobs.JOBS[kind].from_json(text) == record
    assert json.loads(text) == json.loads(jobs.JOBS[kind].from_json(text).to_json())
    assert len(record.digest()) == 16 and record.readable()


def test_a_bad_record_is_one_line():
    good = json.loads(jobs.record(mcfg.load_config(REPO / "config" / "config.yaml"), "split",
                                  dataset="msd_heart").to_json())
    for text, expect in (("{not json", "not a JSON settings record"),
                         (json.dumps({**good, "extra": 1}), "unknown extra"),
                         (json.dumps({k: v for k, v in good.items() if k != "split"}), "missing split")):
        with pytest.raises(ValueError, match=expect) as err:
            jobs.SplitJob.from_json(text)
        assert "\n" not in str(err.value)


def test_jobs_are_handed_records_not_configs():
    """The library functions that jobs run take a settings record and paths: none takes a config."""
    from medssl.data.phantoms import write_phantom_dataset
    from medssl.data.slicing import slice_dataset
    from medssl.data.sources import prepare_source
    from medssl.data.splits import make_split
    from medssl.reports.extract import extract_features
    from medssl.train.evaluate import evaluate, evaluate_model
    from medssl.train.finetune import finetune
    from medssl.train.pretrain import pretrain

    for func in (write_phantom_dataset, slice_dataset, prepare_source, make_split, extract_features, evaluate,
                 evaluate_model, finetune, pretrain):
        assert "config" not in inspect.signature(func).parameters, func.__qualname__
    for cls in jobs.JOBS.values():
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
