"""Dataset registry: one entry per source dataset of the two papers.

Every entry says what the papers need to know about a dataset (paper-A task and group ids, modality,
classes in the papers' order), where it comes from (a URL with its md5, or a manual download with
registration instructions), how its release arranges its files (``source_format``, read by that format's case lister), which channel or frames to use, and
along which axis it is sliced. Adding a new dataset in Medical Segmentation Decathlon (MSD) layout is one
:class:`DatasetSpec` added to :data:`REGISTRY` (or passed to :func:`register`).

Class maps go from *source* label values to the papers' named classes; class ids are contiguous and follow
the order of ``classes`` (0 is background). Source values not listed map to background.

Real-data formats, checked against the datasets' public descriptions and against public converters of
them (read in December 2026; what each lister expects is in :mod:`medssl.data.listers`):

* **ACDC** (Bernard et al. 2018; CREATIS "humanheart-project" zip): ``training/patientXXX/`` holds
  ``Info.cfg`` with ``ED: <n>`` / ``ES: <n>`` (also ``Group``, ``Height``, ``NbFrame``, ``Weight``), the
  cine ``patientXXX_4d.nii.gz``, and the two annotated frames as ``patientXXX_frameNN.nii.gz`` plus
  ``patientXXX_frameNN_gt.nii.gz``. The Info.cfg numbers are **1-based frame numbers equal to the NN of
  the file names** (ED is usually 1, i.e. ``frame01``; public loaders format ``"%s_frame%02d.nii.gz" %
  (patient, ED)`` directly), so frame NN is index NN - 1 of the 4D file. Labels 1 RV, 2 MYO, 3 LV. The
  lister reads the 3D frame files, never the 4D file, so no index conversion happens.
* **M&Ms** (Campello et al. 2021; OpenDataset): ``Training/Labeled/<code>/<code>_sa.nii.gz`` (4D cine) and
  ``<code>_sa_gt.nii.gz`` (4D, labelled at ED and ES only), and an info CSV
  (``211230_M&Ms_Dataset_information_diagnosis_opendataset.csv``; older releases ``201014_...`` /
  ``211006_M&Ms_Dataset_Information_-_opendataset.csv``) with columns ``External code``, ``VendorName``,
  ``Vendor``, ``Centre``, ``ED``, ``ES``, ... The ED/ES values are **0-based time indices** into the 4th
  dimension: public loaders index ``volume[..., ED]`` with the CSV value unchanged, and ED = 0 occurs in the
  CSV (a 1-based reading would make it invalid). Labels 1 LV, 2 MYO, 3 RV (not ACDC's order).
* **OAI-ZIB** (Ambellan et al. 2019, pubdata.zib.de): 507 knees; segmentation masks as
  ``segmentation/segmentation_masks/<id>.segmentation_masks.mhd`` + ``.raw`` with labels **1 femoral bone, 2
  femoral cartilage, 3 tibial bone, 4 tibial cartilage**; the images are the OAI baseline sagittal 3D DESS
  scans (about 384 x 384 x 160 voxels, 0.36 x 0.36 x 0.7 mm), obtained from the OAI (NDA) and matched to the
  masks by the package's ``doc/oai_mri_paths.txt``. The release's README: the masks "do not carry a
  transformation (pose information)"; SimpleITK reads them with the sagittal slice index first (160 x 384 x
  384; its ``readMaskSimpleITK.py`` shows sagittal slice n as ``array[:, :, n]``), while a DESS DICOM series
  read by SimpleITK is 384 x 384 x 160. How medssl pairs them is in :mod:`medssl.data.slicing`. The 2024
  re-release OAI-ZIB-CM ships NIfTI in nnU-Net layout and splits the tibial cartilage into **4 medial and
  5 lateral**; mapping tibia cartilage to ``(4, 5)`` reads both releases the same way.
* **MM-WHS 2017** (Zhuang et al. 2019): ``ct_train``/``mr_train`` with ``<case>_image.nii.gz`` and
  ``<case>_label.nii.gz``, labels 205 MYO, 420 LA, 500 LV, 550 RA, 600 RV, 820 AO, 850 PA. Paper B's Table
  1: CT all axial (20 scans), MRI **sagittal only, 14 scans** of the 20 (the others are frontal/coronal);
  see ``acquired_plane`` below for how the 14 are identified.

``acquired_plane`` (MM-WHS MRI): only cases acquired in that plane are listed
(:func:`medssl.data.orientation.acquired_plane` decides from the image header: the index axis with the largest
spacing, or the file's third index axis when the spacing is isotropic, and the physical axis it runs along).
Paper B pretrains, finetunes (4 scans) and tests (10 scans) on the 14 sagittal MRI scans only, slicing each
along its own acquisition axis; listing only those cases keeps the 4 + 10 split inside them. Listed from the
release itself, exactly 14 must be sagittal, else listing stops naming every scan's plane and spacing
(:data:`medssl.data.listers.PAPER_PLANE_SCANS`); a folder declared with ``path:`` is not held to that count.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping

Modality = Literal["CT", "MRI"]
SourceFormat = Literal["msd", "acdc", "mnms", "mmwhs", "oai_zib"]  # how a release arranges its files
SliceAxis = Literal["axial", "coronal", "sagittal", "acquisition"]


@dataclass(frozen=True)
class UrlSource:
    """A public archive: streamed download, md5 verified before extraction."""

    url: str
    md5: str
    archive: str  # file name of the archive under resources/downloads/
    root: str  # folder the archive extracts to (holds dataset.json for MSD)


@dataclass(frozen=True)
class ManualSource:
    """A dataset behind a registration wall: the user downloads it and puts it in place."""

    register_url: str
    archive: str  # what to download there
    root: str  # folder under resources/raw/ that must exist after unpacking
    expect: tuple[str, ...]  # files/folders (relative to root) whose presence proves the data are in place
    note: str = ""  # placement instructions; "{root}" stands for the actual <resources>/raw/<root> folder


@dataclass(frozen=True)
class LocalSource:
    """A dataset already on disk at ``path``, declared in the config (``datasets: {name: {path: ...}}``):
    nothing is downloaded, and nothing is written into ``path``."""

    path: str  # absolute, or relative to the working directory (the workflow directory under Snakemake)


@dataclass(frozen=True)
class Release:
    """The size of a dataset's public release, for estimates made before its slice store exists
    (:mod:`medssl.cost`): patients, all slices along the slicing axis over all cases, and the slices with a
    labelled structure (``None``: the registry's ``paper_slices``, HSSL Table 1)."""

    patients: int
    slices: int
    fg_slices: int | None = None
    note: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the pipeline needs to know about one source dataset."""

    name: str  # registry key, also the folder name under resources/ and results/<experiment>/data/
    title: str
    modality: Modality
    roi: str
    classes: tuple[tuple[str, tuple[int, ...]], ...]  # (class name, source label values), papers' order
    source: UrlSource | ManualSource | LocalSource
    source_format: SourceFormat = "msd"
    slice_axis: SliceAxis = "axial"
    channel: int | None = None  # 4D multi-channel images: the channel to keep (MSD prostate: 0 = T2)
    acquired_plane: SliceAxis | None = None  # list only cases acquired in this plane (MM-WHS MRI: sagittal)
    frames: tuple[str, ...] = ()  # cine data: named frames kept as separate cases of one patient
    patient_pattern: str | None = None  # regex on the case id; group(1) is the patient id
    paper_task: int | None = None  # HSSL Table 1 task id (1-8)
    paper_group: int | None = None  # HSSL Table 1 group id (1-4)
    paper_slices: int | None = None  # slices reported in HSSL Table 1
    release: Release | None = None  # size of the public release (cost estimates before slicing)
    # how its synthetic phantom twin looks: the fields of medssl.data.phantoms.Twin (real size and spacing, the
    # view of the anatomy, intensity character); None: a default from modality, ROI and slice axis
    twin: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)
    reference: str = ""
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def class_names(self) -> list[str]:
        return [name for name, _ in self.classes]

    @property
    def n_classes(self) -> int:
        """Number of output classes including background."""
        return len(self.classes) + 1

    def label_map(self) -> dict[int, int]:
        """Source label value -> contiguous class id (1..n); unlisted values map to 0."""
        return {value: cid for cid, (_, values) in enumerate(self.classes, start=1) for value in values}

    @property
    def is_manual(self) -> bool:
        return isinstance(self.source, ManualSource)

    @property
    def is_local(self) -> bool:
        """Declared with a ``path`` in the config: the data are in place, nothing to download."""
        return isinstance(self.source, LocalSource)


_MSD = "https://msd-for-monai.s3-us-west-2.amazonaws.com/{}.tar"


def _msd(task: str, md5: str) -> UrlSource:
    return UrlSource(url=_MSD.format(task), md5=md5, archive=f"{task}.tar", root=task)


_CINE = r"^(.+)_(?:ED|ES)$"

REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry (name must be new)."""
    if spec.name in REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


for _spec in (
    DatasetSpec(
        name="msd_heart", title="Left atrium (LASC 2013, MSD Task02_Heart)", modality="MRI", roi="heart",
        classes=(("left atrium", (1,)),), source=_msd("Task02_Heart", "06ee59366e1e5124267b774dbd654057"),
        paper_task=1, paper_group=1, paper_slices=1262, reference="Simpson et al. 2019 (MSD)",
        release=Release(20, 2271),
        twin=dict(anatomy="thorax", shape=(320, 320, 110), spacing=(1.25, 1.25, 1.37), centre="la",
                  coverage=(200, 200, 140), gain=1200.0, noise=0.035, bias=0.3),
    ),
    DatasetSpec(
        name="msd_liver", title="Liver and tumour (LiTS, MSD Task03_Liver)", modality="CT", roi="liver",
        classes=(("liver", (1,)), ("tumour", (2,))),
        source=_msd("Task03_Liver", "a90ec6c4aa7f6a3d087205e23d4e6397"),
        paper_task=2, paper_group=2, paper_slices=4342, reference="Bilic et al. 2019 (LiTS)",
        release=Release(131, 58638),
        twin=dict(anatomy="abdomen", shape=(512, 512, 128), spacing=(0.75, 0.75, 2.0), centre=(0, 0, 45),
                  coverage=(384, 384, 256), noise=14.0),
    ),
    DatasetSpec(
        name="msd_prostate", title="Prostate zones (MSD Task05_Prostate)", modality="MRI", roi="prostate",
        # MSD labels 1 = PZ, 2 = TZ, in that order: the paper's per-class Dice fits it, whatever its Table 1 says
        # (docs/choices.md); the names say the zone and its label value
        classes=(("peripheral zone (label 1)", (1,)), ("transition zone (label 2)", (2,))),
        source=_msd("Task05_Prostate", "35138f08b1efaef89d7424d2bcc928db"), channel=0,
        paper_task=3, paper_group=3, paper_slices=483, notes="4D images (T2, ADC): channel 0 = T2 is used.",
        release=Release(32, 602),
        twin=dict(anatomy="pelvis", shape=(320, 320, 20), spacing=(0.625, 0.625, 3.6), contrasts=("t2", "adc"),
                  gain=900.0, noise=0.03, bias=0.35),
    ),
    DatasetSpec(
        name="msd_pancreas", title="Pancreas and tumour (MSD Task07_Pancreas)", modality="CT", roi="pancreas",
        classes=(("pancreas", (1,)), ("tumour", (2,))),
        source=_msd("Task07_Pancreas", "4f7080cfca169fa8066d17ce6eb061e4"),
        paper_task=4, paper_group=2, paper_slices=8607,
        release=Release(281, 26719),
        twin=dict(anatomy="abdomen", shape=(512, 512, 96), spacing=(0.8, 0.8, 2.5), centre=(0, 0, 15),
                  coverage=(410, 410, 120), noise=9.0,
                  overrides={"pancreas": 135, "liver": 85, "spleen": 135, "aorta": 260}),
    ),
    DatasetSpec(
        name="msd_spleen", title="Spleen (MSD Task09_Spleen)", modality="CT", roi="spleen",
        classes=(("spleen", (1,)),), source=_msd("Task09_Spleen", "410d4a301da4e5b2f6f86ec3ddba524e"),
        paper_task=5, paper_group=2, paper_slices=1466,
        release=Release(41, 3650),
        twin=dict(anatomy="abdomen", shape=(512, 512, 48), spacing=(0.79, 0.79, 5.0), centre=(0, 0, 55),
                  coverage=(400, 400, 240), noise=20.0, overrides={"spleen": 120, "liver": 110},
                  direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)),
    ),
    DatasetSpec(
        name="oai_zib", title="Knee bones and cartilage (OAI-ZIB)", modality="MRI", roi="knee",
        # OAI-ZIB masks: 1 femoral bone, 2 femoral cartilage, 3 tibial bone, 4 tibial cartilage (OAI-ZIB-CM:
        # 4 medial, 5 lateral tibial cartilage; see the module docstring).
        classes=(("femur bone", (1,)), ("tibia bone", (3,)), ("femur cartilage", (2,)),
                 ("tibia cartilage", (4, 5))),
        source=ManualSource(
            register_url="https://pubdata.zib.de/ (OAI-ZIB) and https://nda.nih.gov/oai/ (OAI images)",
            archive="OAI-ZIB segmentation masks plus the matching OAI DESS MR images",
            root="oai_zib", expect=("images", "labels"),
            note="Put each knee's OAI baseline DESS scan (the DICOM series the release's "
                 "doc/oai_mri_paths.txt names for <id>), converted to NIfTI, at {root}/images/<id>.nii.gz "
                 "(<id>: the 7-digit id of the mask); put the release's masks as shipped, "
                 "<id>.segmentation_masks.mhd with its <id>.segmentation_masks.raw, in {root}/labels/ (or keep "
                 "the release's segmentation_masks/ folder as {root}/segmentation_masks/). The masks carry no "
                 "pose: slicing gives each mask its image's origin, direction and spacing when both have the "
                 "same voxel grid size; a mask whose voxel axes are in another order than its image's (e.g. "
                 "160 x 384 x 384 against 384 x 384 x 160) stops slicing with how to convert it to "
                 "{root}/labels/<id>.nii.gz.",
        ),
        source_format="oai_zib", slice_axis="sagittal", paper_task=6, paper_group=4, paper_slices=8187,
        reference="Ambellan et al. 2019",
        release=Release(507, 507 * 160, note="~160 sagittal slices per knee"),
        twin=dict(anatomy="knee", shape=(160, 384, 384), spacing=(0.7, 0.365, 0.365), gain=700.0, noise=0.03,
                  bias=0.2),
    ),
    DatasetSpec(
        name="acdc", title="Cardiac cine MRI (ACDC)", modality="MRI", roi="heart",
        # ACDC labels 1 RV, 2 MYO, 3 LV; the paper lists LV, RV, myocardium.
        classes=(("LV", (3,)), ("RV", (1,)), ("myocardium", (2,))),
        source=ManualSource(
            register_url="https://humanheart-project.creatis.insa-lyon.fr/database/#collection/637218c173e9f0047faa00fb",
            archive="ACDC training set (database.zip or training.zip)", root="acdc",
            expect=("training",),
            note="Unzip so that {root}/training/patient001/Info.cfg exists.",
        ),
        source_format="acdc", slice_axis="acquisition", frames=("ED", "ES"), patient_pattern=_CINE,
        paper_task=7, paper_group=1, paper_slices=1891, reference="Bernard et al. 2018",
        release=Release(100, 1902, note="ED + ES, ~9.5 slices per stack"),
        twin=dict(anatomy="thorax", shape=(232, 256, 10), spacing=(1.45, 1.45, 10.0), centre="lv",
                  coverage=(300, 330, 110), view="short_axis", gain=300.0, noise=0.04, bias=0.3),
    ),
    DatasetSpec(
        name="mnms", title="Multi-centre, multi-vendor cardiac MRI (M&Ms)", modality="MRI", roi="heart",
        # M&Ms labels 1 LV, 2 MYO, 3 RV: a different order from ACDC's.
        classes=(("LV", (1,)), ("RV", (3,)), ("myocardium", (2,))),
        source=ManualSource(
            register_url="https://www.ub.edu/mnms/",
            archive="OpenDataset (Training/Labeled/*/<code>_sa.nii.gz, _sa_gt.nii.gz) and the info CSV",
            root="mnms", expect=("Training/Labeled",),
            note="Also place the ED/ES info CSV (211230_M&Ms_Dataset_information_diagnosis_opendataset.csv "
                 "or an older release's, any *.csv with columns External code, ED, ES) in {root}/ or "
                 "{root}/OpenDataset/.",
        ),
        source_format="mnms", slice_axis="acquisition", frames=("ED", "ES"), patient_pattern=_CINE,
        paper_task=8, paper_group=1, paper_slices=3120, reference="Campello et al. 2021",
        release=Release(150, 3120, note="ED + ES, ~10.4 slices per stack"),
        twin=dict(anatomy="thorax", shape=(256, 256, 12), spacing=(1.25, 1.25, 9.2), centre="lv",
                  coverage=(340, 340, 120), view="short_axis", view_turn=35.0, gain=1500.0, noise=0.025, bias=0.4,
                  overrides={"myo": 0.32, "lv": 0.85, "rv": 0.8}),
    ),
    DatasetSpec(
        name="mmwhs_ct", title="Whole heart CT (MM-WHS 2017)", modality="CT", roi="heart",
        # MM-WHS values: 205 MYO, 420 LA, 500 LV, 550 RA, 600 RV, 820 AO, 850 PA. Paper B segments
        # LV, RV, LA, RA; myocardium, aorta and pulmonary artery become background.
        classes=(("LV", (500,)), ("RV", (600,)), ("LA", (420,)), ("RA", (550,))),
        source=ManualSource(
            register_url="https://zmiclab.github.io/zxh/0/mmwhs/",
            archive="MM-WHS 2017 training data (ct_train.zip)", root="mmwhs_ct", expect=("ct_train",),
            note="Unzip so that {root}/ct_train/ct_train_1001_image.nii.gz exists.",
        ),
        source_format="mmwhs", slice_axis="axial", reference="Zhuang et al. 2019",
        release=Release(20, 20 * 270, int(20 * 270 * 0.6), "estimate: ~270 axial slices/scan, 60% heart"),
        twin=dict(anatomy="thorax", shape=(512, 512, 256), spacing=(0.49, 0.49, 0.625), centre="heart",
                  coverage=(250, 250, 160), noise=12.0),
    ),
    DatasetSpec(
        name="mmwhs_mri", title="Whole heart MRI (MM-WHS 2017)", modality="MRI", roi="heart",
        classes=(("LV", (500,)), ("RV", (600,)), ("LA", (420,)), ("RA", (550,))),
        source=ManualSource(
            register_url="https://zmiclab.github.io/zxh/0/mmwhs/",
            archive="MM-WHS 2017 training data (mr_train.zip)", root="mmwhs_mri", expect=("mr_train",),
            note="Unzip so that {root}/mr_train/mr_train_1001_image.nii.gz exists (all 20 scans; the 14 "
                 "acquired sagittally are used, and slicing stops if the count differs).",
        ),
        # Paper B uses the 14 sagittally acquired scans only (Table 1; module docstring).
        source_format="mmwhs", slice_axis="sagittal", acquired_plane="sagittal", reference="Zhuang et al. 2019",
        notes="Only the scans acquired sagittally are used (paper B: 14 of the 20).",
        release=Release(20, 20 * 150, int(20 * 150 * 0.6), "estimate: ~150 sagittal slices/scan, 60% heart"),
        twin=dict(anatomy="thorax", shape=(120, 288, 288), spacing=(1.6, 1.25, 1.25), centre="heart",
                  coverage=(180, 280, 280), gain=600.0, noise=0.035, bias=0.3),
    ),
):
    register(_spec)


class DatasetDeclarationError(ValueError):
    """A dataset entry of the config that declares no usable dataset: ``key`` (e.g. ``datasets/x/classes``)
    and ``reason``."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


#: config keys of a dataset entry that describe a dataset of one's own (the others are settings overrides)
DECLARATION_KEYS = ("path", "modality", "classes", "channel", "group", "task", "title", "roi",
                    "patient_pattern")


def spec_from_config(name: str, entry: dict) -> DatasetSpec:
    """The :class:`DatasetSpec` of config entry ``datasets/<name>`` that has a ``path``.

    - ``name`` registered: the registry entry read from ``path`` instead of downloaded (its source format, classes
      and modality stay the registry's; only ``path`` may be given of :data:`DECLARATION_KEYS`).
    - ``name`` new: a dataset in MSD layout (``path/dataset.json`` lists ``training`` image/label pairs)
      described by the entry: ``modality`` (CT or MRI), ``classes`` ({class name: label value or list of
      values}, in the order of the model's output channels), optional ``slice_axis``, ``channel`` (4D images),
      ``group``/``task`` (HSSL group and task ids), ``title``, ``roi`` (default: the name) and
      ``patient_pattern`` (regex on the case id whose group 1 is the patient id, for several scans per
      patient). :class:`DatasetDeclarationError` names what is missing or wrong.
    """
    where = f"datasets/{name}"
    path = entry.get("path")
    if not isinstance(path, str) or not path:
        raise DatasetDeclarationError(f"{where}/path", "a dataset of one's own needs the folder holding it")
    source = LocalSource(path=path)
    if name in REGISTRY:
        extra = sorted(k for k in DECLARATION_KEYS if k in entry and k != "path")
        if extra:
            raise DatasetDeclarationError(
                where, f"{name!r} is a registered dataset, so {', '.join(extra)} come from the registry; "
                f"give only 'path' to read it from disk, or use a new name for a dataset of your own")
        return replace(REGISTRY[name], source=source)
    missing = [k for k in ("modality", "classes") if k not in entry]
    if missing:
        raise DatasetDeclarationError(where, f"a dataset of one's own needs {' and '.join(missing)}")
    if entry["modality"] not in ("CT", "MRI"):
        raise DatasetDeclarationError(f"{where}/modality", f"{entry['modality']!r} is neither CT nor MRI")
    classes = []
    for cname, values in dict(entry["classes"]).items():
        values = values if isinstance(values, (list, tuple)) else [values]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise DatasetDeclarationError(f"{where}/classes/{cname}", f"label values must be positive integers "
                                          f"(0 is background), got {entry['classes'][cname]!r}")
        classes.append((str(cname), tuple(values)))
    if not classes:
        raise DatasetDeclarationError(f"{where}/classes", "needs at least one class")
    seen = [v for _, values in classes for v in values]
    if len(seen) != len(set(seen)):
        raise DatasetDeclarationError(f"{where}/classes", "a label value belongs to two classes")
    return DatasetSpec(
        name=name, title=str(entry.get("title", name)), modality=entry["modality"],
        roi=str(entry.get("roi", name)), classes=tuple(classes), source=source, source_format="msd",
        slice_axis=entry.get("slice_axis", "axial"), channel=entry.get("channel"),
        patient_pattern=entry.get("patient_pattern"), paper_task=entry.get("task"),
        paper_group=entry.get("group"), notes=f"declared in the config; read from {path}",
    )


def get(name: str, config: dict | None = None) -> DatasetSpec:
    """Look a dataset up by name, with a helpful error.

    With ``config``, an entry ``datasets/<name>`` that has a ``path`` is a dataset on disk
    (:func:`spec_from_config`): one of one's own, or a registered one read from there instead of downloaded.
    """
    entry = ((config or {}).get("datasets") or {}).get(name) or {}
    if "path" in entry:
        return spec_from_config(name, entry)
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}: not registered ({', '.join(sorted(REGISTRY))}) and not "
                       f"declared in the config with a 'path'") from None


def is_user_dataset(config: dict, name: str) -> bool:
    """True when the config gives dataset ``name`` a ``path``: its source is that folder, never a download
    or a manual-placement check."""
    return "path" in (((config or {}).get("datasets") or {}).get(name) or {})


def paper_a_datasets() -> list[DatasetSpec]:
    """The eight HSSL datasets in Table 1 order."""
    return sorted((s for s in REGISTRY.values() if s.paper_task), key=lambda s: s.paper_task)
