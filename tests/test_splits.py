"""Patient splits and nested label subsets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medssl import config as mcfg
from medssl.data.splits import make_split, split_counts, write_split
from medssl.jobs import SplitJob
from medssl.data.store import SliceStore

RATIOS = [5, 10, 50, 100]


def settings_for(name="msd_heart", split=None, scans=None) -> SplitJob:
    """A split job's record: ``split`` over the schema's split defaults (counts win over ratios)."""
    return SplitJob(dataset=name, split=mcfg.merged_split(mcfg.defaults("$defs", "split"), split or {}),
                    scans_subset=scans, label_ratios=tuple(float(r) for r in RATIOS))


def fake_store(path, cases: dict[str, tuple[str, int, list[int]]]) -> SliceStore:
    """cases: case id -> (patient, n_slices, foreground slice indices). Arrays are tiny zeros."""
    rows = []
    for cid in sorted(cases):
        patient, n, fg = cases[cid]
        for s in range(n):
            rows.append({"row": len(rows), "case": cid, "patient": patient, "slice": s, "n_slices": n,
                         "fg": int(s in fg), "c1": int(s in fg)})
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "images.npy", np.zeros((len(rows), 2, 2), np.float16))
    np.save(path / "labels.npy", np.zeros((len(rows), 2, 2), np.uint8))
    pd.DataFrame(rows).to_csv(path / "index.csv", index=False)
    (path / "meta.json").write_text(json.dumps({"dataset": "msd_heart", "n_classes": 2, "classes": ["x"]}))
    return SliceStore(path)


def simple_store(tmp_path, n_patients, n_slices=20, fg=range(5, 15), name="store"):
    return fake_store(tmp_path / name, {f"p{i:03d}": (f"p{i:03d}", n_slices, list(fg)) for i in range(n_patients)})


def slice_patients(store, pairs):
    lookup = dict(zip(store.index["case"], store.index["patient"]))
    return {lookup[c] for c, _ in pairs}


@pytest.mark.parametrize("n, expected", [(10, [7, 1, 2]), (20, [14, 2, 4]), (3, [1, 1, 1]), (4, [2, 1, 1]),
                                         (5, [3, 1, 1]), (100, [70, 10, 20])])
def test_split_counts(n, expected):
    assert split_counts(n, [0.7, 0.1, 0.2]) == expected
    assert split_counts(n, [7, 1, 2]) == expected


def test_split_counts_edge_cases():
    assert split_counts(5, [1, 0, 0]) == [5, 0, 0]
    assert split_counts(2, [0.5, 0, 0.5]) == [1, 0, 1]
    with pytest.raises(ValueError):
        split_counts(2, [0.7, 0.1, 0.2])


@pytest.mark.parametrize("n, expected", [(10, [7, 1, 2]), (20, [14, 2, 4])])
def test_patients_disjoint_and_proportions(tmp_path, n, expected):
    store = simple_store(tmp_path, n)
    split = make_split(settings_for(), store, RATIOS)
    groups = split["patients"]
    assert [len(groups[k]) for k in ("train", "val", "test")] == expected
    sets = [set(groups[k]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sets[0] | sets[1] | sets[2] == set(store.index["patient"])
    assert split["ratios"] == [0.7, 0.1, 0.2] and split["counts"] is None and split["scans_subset"] is None
    assert split["dataset"] == "msd_heart" and split["seed"] == 0
    for key, pairs in split["label_subsets"].items():
        assert slice_patients(store, pairs) <= sets[0], key


def test_counts_mode(tmp_path):
    store = simple_store(tmp_path, 12)
    split = make_split(settings_for(split={"counts": [5, 2, 3], "seed": 3}), store, RATIOS)
    groups = split["patients"]
    assert [len(groups[k]) for k in ("train", "val", "test")] == [5, 2, 3]
    assert len(set(groups["train"]) | set(groups["val"]) | set(groups["test"])) == 10
    assert split["counts"] == [5, 2, 3] and split["ratios"] is None
    with pytest.raises(ValueError, match="counts"):
        make_split(settings_for(split={"counts": [10, 2, 3], "seed": 0}), store, RATIOS)


def test_nested_label_subsets(tmp_path):
    store = simple_store(tmp_path, 20)  # 14 train patients x 10 foreground slices = 140 labelled
    split = make_split(settings_for(), store, RATIOS)
    subs = {k: {tuple(p) for p in v} for k, v in split["label_subsets"].items()}
    assert set(subs) == {"5", "10", "50", "100"}
    assert [len(subs[k]) for k in ("5", "10", "50", "100")] == [7, 14, 70, 140]
    assert subs["5"] <= subs["10"] <= subs["50"] <= subs["100"]
    assert all(5 <= s < 15 for _, s in subs["100"])  # foreground slices only
    train = set(split["patients"]["train"])
    assert subs["100"] == {(c, s) for c, s in subs["100"] if c in train}
    assert {c for c, _ in subs["100"]} == train
    # lists are written in store row order
    rows = store.rows_of(split["label_subsets"]["10"])
    assert (np.diff(rows) > 0).all()


def test_label_subsets_come_from_the_sample(tmp_path):
    """With a sample (paper A: Table 1's counts), labels are drawn from it, never from other foreground slices."""
    store = simple_store(tmp_path, 20)
    index = store.index.assign(sampled=store.index["fg"].astype(bool) & (store.index["slice"] % 2 == 0))
    index.astype({"sampled": int}).to_csv(store.path / "index.csv", index=False)
    store = SliceStore(store.path)
    split = make_split(settings_for(), store, RATIOS)
    full = {tuple(p) for p in split["label_subsets"]["100"]}
    assert len(full) == 14 * 5 and all(s % 2 == 0 and 5 <= s < 15 for _, s in full)


def test_small_ratio_gives_at_least_one_and_non_integer_keys(tmp_path):
    store = simple_store(tmp_path, 10, n_slices=3, fg=[1])  # 7 labelled slices
    split = make_split(settings_for(), store, [1, 12.5, 100])
    assert set(split["label_subsets"]) == {"1", "12.5", "100"}
    assert len(split["label_subsets"]["1"]) == 1 and len(split["label_subsets"]["12.5"]) == 1
    assert len(split["label_subsets"]["100"]) == 7


def test_no_foreground_uses_all_training_slices(tmp_path):
    store = simple_store(tmp_path, 10, n_slices=4, fg=[])
    split = make_split(settings_for(), store, [100])
    assert len(split["label_subsets"]["100"]) == 7 * 4


def test_deterministic_per_seed(tmp_path):
    store = simple_store(tmp_path, 20)
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    write_split(make_split(settings_for(), store, RATIOS), a)
    write_split(make_split(settings_for(), store, RATIOS), b)
    write_split(make_split(settings_for(split={"ratios": [0.7, 0.1, 0.2], "seed": 1}), store, RATIOS), c)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    ja, jc = json.loads(a.read_text()), json.loads(c.read_text())
    assert ja["patients"] != jc["patients"] and ja["label_subsets"]["5"] != jc["label_subsets"]["5"]
    assert list(ja) == ["dataset", "seed", "ratios", "counts", "patients", "label_subsets", "scans_subset",
                        "scans_subset_sampling"]


def test_scans_subset(tmp_path):
    # 20 patients with 30-slice scans, foreground on slices 4..23 (20 slices), one short scan
    cases = {f"p{i:03d}": (f"p{i:03d}", 30, list(range(4, 24))) for i in range(20)}
    store = fake_store(tmp_path / "s", cases)
    even = {"ratios": [0.7, 0.1, 0.2], "seed": 0, "scans_subset_sampling": "even"}
    split = make_split(settings_for("mmwhs_ct", split=even, scans=(5, 7)), store, RATIOS)
    assert split["scans_subset"] == [5, 7] and split["scans_subset_sampling"] == "even"
    pairs = split["label_subsets"]["scans"]
    by_case: dict[str, list[int]] = {}
    for c, s in pairs:
        by_case.setdefault(c, []).append(s)
    assert len(by_case) == 5 and all(len(v) == 7 for v in by_case.values())
    train = set(split["patients"]["train"])
    assert set(by_case) <= train  # here case id == patient id
    for slices in by_case.values():
        assert sorted(slices) == [4, 7, 10, 14, 17, 20, 23]  # evenly spaced over the 20 fg slices
    # ask for more per scan than there are foreground slices: all of them
    split = make_split(settings_for("mmwhs_ct", scans=(2, 50)), store, RATIOS)
    assert len(split["label_subsets"]["scans"]) == 2 * 20
    # more scans than training patients: all training scans
    split = make_split(settings_for("mmwhs_ct", scans=(100, 1)), store, RATIOS)
    assert len(split["label_subsets"]["scans"]) == 14
    assert slice_patients(store, split["label_subsets"]["scans"]) == train


def test_scans_subset_random_by_default(tmp_path):
    """Paper B draws its labelled slices at random; the same scans as 'even', other slices, seeded."""
    cases = {f"p{i:03d}": (f"p{i:03d}", 40, list(range(4, 34))) for i in range(20)}
    store = fake_store(tmp_path / "s", cases)

    def by_case(split):
        out: dict[str, list[int]] = {}
        for c, s in split["label_subsets"]["scans"]:
            out.setdefault(c, []).append(s)
        return out

    rnd = make_split(settings_for("mmwhs_ct", scans=(5, 7)), store, RATIOS)
    assert rnd["scans_subset_sampling"] == "random"
    even = make_split(settings_for("mmwhs_ct", split={"ratios": [0.7, 0.1, 0.2], "seed": 0,
                                                      "scans_subset_sampling": "even"}, scans=(5, 7)), store, RATIOS)
    r, e = by_case(rnd), by_case(even)
    assert set(r) == set(e) and all(len(v) == 7 and len(set(v)) == 7 for v in r.values())
    assert all(4 <= x < 34 for v in r.values() for x in v)  # labelled slices only
    assert r != e  # not the evenly spaced ones
    assert len({tuple(v) for v in r.values()}) > 1  # each scan gets its own draw
    again = make_split(settings_for("mmwhs_ct", scans=(5, 7)), store, RATIOS)
    assert by_case(again) == r  # deterministic
    other = make_split(settings_for("mmwhs_ct", split={"ratios": [0.7, 0.1, 0.2], "seed": 1}, scans=(5, 7)),
                       store, RATIOS)
    assert by_case(other) != r
    with pytest.raises(ValueError, match="scans_subset_sampling"):
        make_split(settings_for("mmwhs_ct", split={"ratios": [0.7, 0.1, 0.2], "scans_subset_sampling": "x"},
                                scans=(5, 7)), store, RATIOS)


def test_scans_subset_draws_only_from_training_patients(tmp_path):
    cases = {f"p{i:03d}": (f"p{i:03d}", 10, list(range(10))) for i in range(20)}
    store = fake_store(tmp_path / "s", cases)
    for seed in range(5):
        split = make_split(settings_for("mmwhs_mri", split={"counts": [4, 2, 10], "seed": seed}, scans=(4, 25)),
                           store, RATIOS)
        assert slice_patients(store, split["label_subsets"]["scans"]) == set(split["patients"]["train"])
        assert len(split["label_subsets"]["scans"]) == 40


def test_patients_with_two_cases_never_split_across(tmp_path):
    cases = {}
    for i in range(15):
        for frame, fg in (("ED", [1, 2]), ("ES", [2, 3])):
            cases[f"patient{i:03d}_{frame}"] = (f"patient{i:03d}", 6, fg)
    store = fake_store(tmp_path / "s", cases)
    split = make_split(settings_for("acdc"), store, RATIOS)
    groups = split["patients"]
    assert sum(len(v) for v in groups.values()) == 15
    case_patient = dict(zip(store.index["case"], store.index["patient"]))
    for key, pairs in split["label_subsets"].items():
        assert {case_patient[c] for c, _ in pairs} <= set(groups["train"])
    full = {tuple(p) for p in split["label_subsets"]["100"]}
    assert len(full) == len(groups["train"]) * 4  # both frames of each training patient
    assert {c.split("_")[1] for c, _ in full} == {"ED", "ES"}
    # scans subset: n patients with all their scans (cases), per_scan slices each
    split = make_split(settings_for("acdc", scans=(3, 1)), store, RATIOS)
    scans = split["label_subsets"]["scans"]
    assert len(scans) == 6 and len({c for c, _ in scans}) == 6
    assert len({case_patient[c] for c, _ in scans}) == 3
    assert {case_patient[c] for c, _ in scans} <= set(split["patients"]["train"])


# ------------------------------------------------------------- a split of another store: one line, not KeyError
def test_split_of_another_store_names_both(tmp_path):
    from medssl.data.splits import read_split
    from medssl.data.store import SplitMismatchError

    made_from = simple_store(tmp_path, 10, n_slices=20, name="store_axial")
    other = simple_store(tmp_path, 10, n_slices=8, fg=range(2, 6), name="store_coronal")  # same patients
    path = tmp_path / "splits" / "msd_heart.json"
    write_split(make_split(settings_for(), made_from, RATIOS), path)
    split = read_split(path)
    assert (made_from.rows_of(split["label_subsets"]["100"]) >= 0).all()  # the store it was made from: fine
    with pytest.raises(SplitMismatchError) as err:
        other.rows_of(split["label_subsets"]["100"])
    msg = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in msg
    assert str(path) in msg and str(other.path) in msg and "another slice store" in msg
    with pytest.raises(ValueError, match="the split.*store_coronal.*another slice store"):
        other.rows_of(json.loads(path.read_text())["label_subsets"]["100"])  # plain lists: no file to name


@pytest.mark.parametrize("text, expected", [('{"dataset": "msd_heart", "patients": {"tr', "not valid JSON"),
                                            ('{"dataset": "msd_heart"}', "not a split file"),
                                            ('{"patients": {}, "label_subsets": {"5": 3}}', "'5'")])
def test_a_broken_split_file_is_named(tmp_path, text, expected):
    from medssl.data.splits import read_split

    path = tmp_path / "split.json"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        read_split(path)
    assert str(path) in str(err.value) and expected in str(err.value)
