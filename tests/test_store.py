"""The slice store's writer (medssl.data.store.write_store) and reader (SliceStore) agree on the format."""

from __future__ import annotations

import numpy as np
import pytest

import pandas as pd

from medssl.data.store import SliceStore, draw_sample, write_store


def _slab(n, size, value, classes):
    images = np.full((n, size, size), value, dtype=np.float16)
    labels = np.zeros((n, size, size), dtype=np.uint8)
    for s, c in enumerate(classes):
        labels[s, 0, 0] = c
    return images, labels


def test_written_store_reads_back(tmp_path):
    out = tmp_path / "s"
    with write_store(out, n_slices=5, image_size=4, n_classes=3) as store:
        fg_a = store.write_case("a", "p1", [_slab(2, 4, 0.25, [0, 1]), _slab(1, 4, 0.5, [2])])
        fg_b = store.write_case("b", "p2", iter([_slab(2, 4, 1.0, [0, 0])]))
        store.finish({"dataset": "toy", "n_classes": 3, "classes": ["x", "y"]})
    assert fg_a.tolist() == [False, True, True] and fg_b.tolist() == [False, False]
    st = SliceStore(out)
    assert st.images.shape == st.labels.shape == (5, 4, 4) and st.images.dtype == np.float16
    np.testing.assert_array_equal(np.asarray(st.images)[:, 1, 1], np.float16([0.25, 0.25, 0.5, 1.0, 1.0]))
    assert list(st.index.columns) == ["row", "case", "patient", "slice", "n_slices", "fg", "c1", "c2", "sampled"]
    assert st.sampled.tolist() == st.index["fg"].astype(bool).tolist()  # no sample_slices: every fg slice
    assert st.index["slice"].tolist() == [0, 1, 2, 0, 1] and st.index["n_slices"].tolist() == [3, 3, 3, 2, 2]
    assert st.index["c1"].tolist() == [0, 1, 0, 0, 0] and st.index["c2"].tolist() == [0, 0, 1, 0, 0]
    assert st.case_start.tolist() == [0, 0, 0, 3, 3] and st.name == "toy" and st.n_classes == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


@pytest.mark.parametrize("problem", ["unfinished", "short", "dtype", "error"])
def test_a_failed_write_leaves_nothing(tmp_path, problem):
    out = tmp_path / "s"
    expected = {"unfinished": RuntimeError, "short": ValueError, "dtype": ValueError, "error": KeyError}[problem]
    with pytest.raises(expected):
        with write_store(out, n_slices=2, image_size=4, n_classes=2) as store:
            if problem == "dtype":
                images, labels = _slab(2, 4, 0.5, [1, 0])
                store.write_case("a", "p", [(images.astype(np.float32), labels)])
            store.write_case("a", "p", [_slab(1 if problem == "short" else 2, 4, 0.5, [1, 0][:1])])
            if problem == "error":
                raise KeyError("boom")
            if problem != "unfinished":
                store.finish({"dataset": "toy"})
    assert list(tmp_path.iterdir()) == []


def test_classes_present_among_rows(tmp_path):
    """What a finetuning job asks of its training rows: which classes have any pixel there."""
    out = tmp_path / "s"
    with write_store(out, n_slices=5, image_size=4, n_classes=4) as store:
        store.write_case("a", "p1", [_slab(3, 4, 0.25, [0, 1, 3])])
        store.write_case("b", "p2", [_slab(2, 4, 0.5, [0, 0])])
        store.finish({"dataset": "toy", "n_classes": 4, "classes": ["x", "y", "z"]})
    st = SliceStore(out)
    assert st.classes_present() == [1, 3]
    assert st.classes_present([0, 1]) == [1] and st.classes_present(np.array([2])) == [3]
    assert st.classes_present([3, 4]) == [] and st.classes_present([]) == []
    assert st.missing_classes([3, 4]) == ["x", "y", "z"] and st.missing_classes() == ["y"]
    st.index = st.index.drop(columns=["c1", "c2", "c3"])  # an index without class flags: read the labels
    assert st.classes_present() == [1, 3] and st.classes_present([0, 1]) == [1]


def test_rows_of_a_pair_not_in_the_store_is_a_value_error(tmp_path):
    out = tmp_path / "s"
    with write_store(out, n_slices=2, image_size=4, n_classes=2) as store:
        store.write_case("a", "p1", [_slab(2, 4, 0.25, [0, 1])])
        store.finish({"dataset": "toy", "n_classes": 2, "classes": ["x"]})
    st = SliceStore(out)
    assert st.rows_of([["a", 1], ["a", 0]]).tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"split s\.json: 1 of its 2 slices.*case a slice 5.*another slice store"):
        st.rows_of([["a", 1], ["a", 5]], split="s.json")
    with pytest.raises(ValueError, match="not a .case, slice. pair"):
        st.rows_of([["a"]])


# ---------------------------------------------------------------- the sample (paper A: Table 1's counts)
def _index(fg_per_patient: dict[str, int], background: int = 2) -> pd.DataFrame:
    rows = [{"patient": p, "fg": 0} for p in fg_per_patient for _ in range(background)]
    rows += [{"patient": p, "fg": 1} for p, n in fg_per_patient.items() for _ in range(n)]
    return pd.DataFrame(rows)


def test_the_sample_is_spread_over_patients_by_largest_remainder():
    index = _index({"C": 1, "A": 6, "B": 3})
    drawn = draw_sample(index, 5)
    per_patient = index[drawn].groupby("patient").size().to_dict()
    # 6, 3, 1 of 10 -> exact quotas 3, 1.5, 0.5: floors 3, 1, 0; the one left goes to B (tie with C, B first)
    assert per_patient == {"A": 3, "B": 2}
    assert index.loc[drawn, "fg"].all() and drawn.sum() == 5
    assert (draw_sample(index, 5) == drawn).all()  # seeded
    for n in (None, 10, 50):  # no sample, or one as large as the foreground: every slice with foreground
        assert (draw_sample(index, n) == index["fg"].astype(bool).to_numpy()).all()


def test_other_seeds_draw_other_slices_of_the_same_quotas():
    index = _index({"A": 40, "B": 20})
    draws = [draw_sample(index, 15, seed=s) for s in range(3)]
    assert all(index[d].groupby("patient").size().to_dict() == {"A": 10, "B": 5} for d in draws)
    assert len({tuple(np.flatnonzero(d)) for d in draws}) == 3


def test_a_store_with_a_sample_trains_on_it_only(tmp_path):
    out = tmp_path / "s"
    with write_store(out, n_slices=8, image_size=4, n_classes=2) as store:
        store.write_case("a", "p1", [_slab(5, 4, 0.25, [0, 1, 1, 1, 1])])
        store.write_case("b", "p2", [_slab(3, 4, 0.5, [1, 1, 0])])
        store.finish({"dataset": "toy", "n_classes": 2, "classes": ["x"]}, sample_slices=3)
    st = SliceStore(out)
    assert st.meta["sample"] == {"slices": 3, "seed": 0, "drawn": 3, "foreground_slices": 6}
    rows = st.rows(foreground_only=True)
    assert len(rows) == 3 and st.index.loc[rows, "fg"].all()
    assert st.index.loc[rows, "patient"].value_counts().to_dict() == {"p1": 2, "p2": 1}  # 4:2 of 6 -> 2:1
    assert len(st.rows()) == 8  # every slice is still there (all-slice scores, paper B's neighbours)
