"""The MSD lister (medssl.data.listers.list_msd_cases): a broken dataset.json is one line naming it."""

from __future__ import annotations

import pytest

from medssl import registry
from medssl.data.listers import list_cases


# ----------------------------------------------------------------------- MSD dataset.json: one line errors
@pytest.mark.parametrize("text, expected", [
    ('{"name": "Heart", "training": [{"image": "./imagesTr/la_003.nii.gz", "la', "not valid JSON"),
    ("", "not valid JSON"),
    ('{"name": "Heart", "numTraining": 1}', "no 'training' list"),
    ('{"name": "Heart", "training": {"image": "x"}}', "no 'training' list"),
    ('[1, 2]', "no 'training' list"),
    ('{"training": [{"image": "./imagesTr/la_003.nii.gz"}]}', "'label'"),
    ('{"training": ["./imagesTr/la_003.nii.gz"]}', "'image' and 'label'"),
])
def test_msd_dataset_json_problems_name_the_file(tmp_path, text, expected):
    root = tmp_path / "Task02_Heart"
    root.mkdir()
    (root / "dataset.json").write_text(text)
    with pytest.raises(ValueError) as err:
        list_cases(registry.get("msd_heart"), root)
    msg = str(err.value)
    assert str(root / "dataset.json") in msg and expected in msg and "\n" not in msg
