"""Synthetic phantom twins: a small, deterministic stand-in for every registered dataset.

:func:`write_phantom_dataset` writes, for any :class:`~medssl.registry.DatasetSpec`, a folder in Medical
Segmentation Decathlon (MSD) layout that :func:`medssl.data.listers.list_msd_cases` reads unchanged::

    out_dir/dataset.json            MSD fields + "synthetic": true + "phantom": {seed, scale, geometry}
    out_dir/imagesTr/<case>.nii.gz  CT: int16 Hounsfield units; MRI: int16, arbitrary positive scale
    out_dir/labelsTr/<case>.nii.gz  uint8 (uint16 when a source label value is > 255), *source* values

How a twin is made
------------------
Each ROI has an **anatomy** (:data:`ANATOMIES`): an ordered list of :class:`Structure` s (ellipsoids or
elliptic cylinders in a patient frame in mm, LPS axes: +x patient's left, +y posterior, +z superior) with
a semantic ``role`` and an intensity per contrast ("ct" in HU, "bssfp", "t2", "adc", "dess" on a 0-1 scale).
Structures are painted in order, later ones over earlier ones, so nested shapes (myocardium then LV cavity,
cartilage shell then bone) and occlusions come out of the order alone. Classes of the spec are matched to
roles by name (:data:`CLASS_ROLES`; "tumour" -> "<roi>_tumour"); a class without a matching role gets a
generic blob, so *any* registry entry gets a twin. The label written is the class's first source value
(MM-WHS 500/600/420/550, prostate 2 = TZ / 1 = PZ, ...); structures that are no class write 0.

Each dataset has a **twin** (:class:`Twin`, its registry entry's ``twin``; a default from modality, ROI and
slice axis for a dataset without one): the real typical volume size and
spacing, the patch of the anatomy the field of view covers (``centre``/``coverage``, a view rotation for
cardiac short-axis stacks), contrasts, noise, bias field and MRI gain. Datasets of one ROI share the anatomy
(all heart twins are views of one thorax, the three CT abdomen twins share one body outline) and differ in
field of view, slice thickness, contrast phase, noise and intensity scale, so a task classifier can tell
them apart.

Per patient (seeded from ``(seed, crc32(name), patient)``) the renderer draws a body size, a small
patient rotation and shift, a smooth global displacement field (a few long-wavelength separable cosines),
a random pose/size per structure group (nested structures move together), lesion positions, and intensity
jitter. Everything is a smooth function of 3D position, so neighbouring slices are similar along every
axis. MRI gets a smooth multiplicative bias field (exp of a random linear + quadratic polynomial) and
Rician noise; CT gets Gaussian noise. Images are rendered with partial-volume edges (linear ramp over one
voxel); labels are the hard inside tests of the same shapes.

Geometry and on-disk conventions
--------------------------------
* Volume size = typical real size x ``scale``, at least 16 voxels along the slice axis and 32 in-plane.
  Spacing is the real dataset's spacing; the anatomy's field of view (``coverage``) is mapped onto the
  smaller volume, so a twin is a miniature patient (per-axis zoom), not a crop.
* The slice axis is physical z for axial and cine ("acquisition": the stored third index axis) twins and
  physical x for sagittal ones (MM-WHS MRI, OAI-ZIB knee), with the thick spacing on it.
* Direction matrices are identity (LPS) except **msd_spleen**, whose images and labels are stored with
  the signed permutation ``diag(-1, -1, 1)`` ("RAS" storage, as many NIfTI files read in SimpleITK):
  index i runs towards the patient's right (-x), index j towards anterior (-y), index k superior, and the
  origin is the left-posterior-inferior corner voxel. The voxel content is the same physical anatomy:
  ``SimpleITK.DICOMOrient(img, "LPS")`` gives back exactly the canonical rendering (the spleen sits at
  +x, the patient's left, as in every other abdomen twin). Any signed permutation works (``Twin.direction``).
* Multi-channel twins (``spec.channel`` is not None, e.g. MSD prostate): the image is a **4D scalar
  NIfTI** with the channel as the 4th dimension, like MSD Task05 (channel 0 = T2-like, 1 = ADC-like).
  ``SimpleITK.ReadImage`` returns a 4D image of size ``(x, y, z, C)`` (array ``(C, z, y, x)``); pick a
  channel with ``SimpleITK.Extract(img, [x, y, z, 0], [0, 0, 0, c])`` or ``GetArrayFromImage(img)[c]``.
  Labels stay 3D.
* Cine twins (``spec.frames``, ACDC/M&Ms): each frame is its own 3D case ``<patient>_<frame>`` (e.g.
  ``acdc_003_ED``, ``acdc_003_ES``), so ``spec.patient_pattern`` groups them by patient. ES has the same
  patient, pose and bias field as ED with the LV cavity (x0.76), RV (x0.8) and myocardium (x0.92)
  contracted and the atria filled (x1.12).
* Determinism: the same ``(spec, n_patients, seed, scale)`` gives byte-identical files; every class of the
  spec is present in every case (a patient is redrawn if a class falls outside the field of view).
* Atomic: everything is written into a temporary folder beside ``out_dir`` (dataset.json last), which is
  then renamed onto ``out_dir``.
"""

from __future__ import annotations

import re

import logging
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from medssl.io import atomic_dir, write_json
from medssl.registry import DatasetSpec

log = logging.getLogger("medssl.data")

Vec = tuple[float, float, float]
IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1)
MIN_SLICES = 16  # voxels along the slice axis, whatever the scale
MIN_INPLANE = 32  # voxels along each in-plane axis
CT_RANGE = (-1024, 3071)
MRI_MAX = 32767
QUANTITATIVE = {"adc"}  # maps computed from several acquisitions: no coil bias field
CYL = 4000.0  # half-length (mm) of "infinite" elliptic cylinders


# --------------------------------------------------------------------------------------------------
# Anatomy description


def rot(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    """Rotation matrix (columns = rotated axes) for angles in degrees about x, then y, then z."""
    ax, ay, az = (math.radians(v) for v in (x, y, z))
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def frame_from_axis(z_axis: Sequence[float], x_hint: Sequence[float]) -> np.ndarray:
    """Orthonormal frame (columns x, y, z) whose z is ``z_axis`` and whose x leans towards ``x_hint``."""
    z = np.asarray(z_axis, float)
    z = z / np.linalg.norm(z)
    x = np.asarray(x_hint, float)
    x = x - (x @ z) * z
    x = x / np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


@dataclass(frozen=True)
class Structure:
    """One ellipsoid (or elliptic cylinder when a radius is :data:`CYL`) of an anatomy."""

    role: str  # semantic name; spec classes map onto roles (see CLASS_ROLES)
    centre: Vec  # mm, patient frame (LPS)
    radii: Vec  # semi-axes in mm, along the columns of ``rotation``
    values: Mapping[str, float]  # intensity per contrast: "ct" (HU), MRI contrasts on a 0-1 scale
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3), compare=False)
    group: str = ""  # structures of one group share one random pose/size (nested shapes); "" = own
    clip: tuple[int, float, float] | None = None  # keep lo <= q[axis] <= hi (normalised local coords)
    grow: float = 0.0  # mm added to every radius (>= one voxel): shells around a sibling painted after
    wiggle: float = 0.0  # mm of independent random displacement inside the group (lesions)
    size: tuple[float, float] = (0.88, 1.12)  # random per-axis size factor range
    optional: float = 1.0  # probability of being present in a patient


@dataclass(frozen=True)
class Anatomy:
    """The shared layout of one ROI: structures in painting order plus named landmarks."""

    name: str
    structures: tuple[Structure, ...]
    landmarks: Mapping[str, Vec]
    centre: Vec = (0.0, 0.0, 0.0)  # default view centre
    coverage: Vec = (300.0, 300.0, 200.0)  # default field of view (mm)
    contrasts: tuple[str, ...] = ("mri",)  # default MRI contrasts
    shift: float = 6.0  # group pose: translation sd (mm)
    turn: float = 6.0  # group pose: rotation sd (degrees)
    deform: float = 5.0  # amplitude (mm) of the smooth global displacement field
    wavelength: tuple[float, float] = (150.0, 400.0)  # of the displacement field (mm)


def _fat(ct=-100.0, **mri) -> dict:
    return {"ct": ct, "bssfp": 0.72, "t2": 0.82, "adc": 0.15, "dess": 0.1, "mri": 0.7, **mri}


def _muscle(ct=50.0, **mri) -> dict:
    return {"ct": ct, "bssfp": 0.28, "t2": 0.28, "adc": 1.4, "dess": 0.32, "mri": 0.3, **mri}


def _bone(ct=450.0, **mri) -> dict:
    return {"ct": ct, "bssfp": 0.3, "t2": 0.5, "adc": 0.5, "dess": 0.16, "mri": 0.25, **mri}


def _blood(ct=330.0, **mri) -> dict:
    return {"ct": ct, "bssfp": 0.95, "t2": 0.3, "adc": 1.8, "dess": 0.55, "mri": 0.9, **mri}


def _air(ct=-950.0) -> dict:
    return {"ct": ct, "bssfp": 0.03, "t2": 0.04, "adc": 0.05, "dess": 0.02, "mri": 0.03}


def _thorax() -> Anatomy:
    # Heart frame: z = long axis from base to apex (apex left, anterior, inferior); x towards the RV.
    heart = frame_from_axis((0.55, -0.5, -0.65), (-1.0, -0.4, 0.1))
    lv_centre = np.array([15.0, -15.0, 0.0])

    def h(local, radii, role, values, **kw) -> Structure:
        return Structure(role, tuple(lv_centre + heart @ np.asarray(local, float)), radii, values,
                         rotation=heart, group="heart", **kw)

    base = lv_centre - 50.0 * heart[:, 2]
    la = (5.0, 45.0, 35.0)
    s = (
        Structure("body", (0, 0, 0), (160, 112, CYL), _fat(), size=(0.92, 1.08)),
        Structure("chest_wall", (0, 0, 0), (148, 100, CYL), _muscle(), size=(0.92, 1.08)),
        Structure("lung", (85, 15, 40), (62, 80, 170), _air(-860), group="lungs"),
        Structure("lung", (-85, 15, 40), (66, 80, 170), _air(-860), group="lungs"),
        Structure("mediastinum", (5, 15, 15), (62, 58, 130), {"ct": -40, "bssfp": 0.42, "mri": 0.4}),
        Structure("spine", (0, 82, 0), (18, 17, CYL), _bone(), size=(0.95, 1.05)),
        Structure("canal", (0, 102, 0), (8, 8, CYL), {"ct": 20, "bssfp": 0.85, "mri": 0.8}),
        Structure("sternum", (0, -98, 0), (16, 7, CYL), _bone(350)),
        Structure("descending_aorta", (22, 58, 0), (12, 12, CYL), _blood(320)),
        Structure("liver", (-60, 0, -150), (95, 85, 75), _muscle(70, bssfp=0.3)),
        Structure("la", la, (30, 22, 24), _blood(340), group="heart"),
        Structure("ra", (-40.0, 12.0, 30.0), (26, 26, 30), _blood(260, bssfp=0.9), group="heart"),
        Structure("ascending_aorta", tuple(base + (5, -5, 35)), (14, 14, 45), _blood(350), group="heart"),
        h((22, 0, -8), (28, 36, 44), "rv", _blood(250, bssfp=0.9)),
        h((0, 0, 0), (32, 32, 50), "myo", {"ct": 110, "bssfp": 0.22, "mri": 0.25, "dess": 0.3}),
        h((0, 0, -5), (22, 22, 42), "lv", _blood(350)),
    )
    heart_centre = tuple(lv_centre - 20.0 * heart[:, 2])
    return Anatomy("thorax", s, {"lv": tuple(lv_centre), "heart": heart_centre, "la": la,
                                 "short_axis": heart}, centre=heart_centre, coverage=(260, 260, 180),
                   contrasts=("bssfp",), deform=5.0)


def _abdomen() -> Anatomy:
    s = (
        Structure("body", (0, 0, 0), (175, 125, CYL), _fat(), size=(0.9, 1.1)),
        Structure("abdominal_wall", (0, 0, 0), (165, 115, CYL), _muscle(), size=(0.9, 1.1)),
        Structure("viscera", (0, 5, 0), (152, 100, CYL), {"ct": -30, "t2": 0.55, "mri": 0.5}),
        Structure("paraspinal", (40, 95, 0), (30, 24, CYL), _muscle()),
        Structure("paraspinal", (-40, 95, 0), (30, 24, CYL), _muscle()),
        Structure("spine", (0, 80, 0), (22, 20, CYL), _bone(), size=(0.95, 1.05)),
        Structure("canal", (0, 100, 0), (9, 9, CYL), {"ct": 20, "t2": 0.9, "mri": 0.8}),
        Structure("kidney", (72, 52, -15), (28, 32, 55), {"ct": 165, "t2": 0.5}, rotation=rot(z=-20)),
        Structure("kidney", (-72, 50, -25), (28, 32, 55), {"ct": 165, "t2": 0.5}, rotation=rot(z=20)),
        Structure("aorta", (12, 45, 0), (11, 11, CYL), _blood(170)),
        Structure("ivc", (-22, 40, 0), (14, 12, CYL), _blood(130)),
        Structure("lung", (85, 35, 235), (75, 80, 110), _air(-860)),
        Structure("lung", (-85, 35, 245), (75, 80, 110), _air(-860)),
        Structure("stomach", (55, -35, 85), (50, 35, 45), {"ct": 25, "t2": 0.6}, rotation=rot(z=30)),
        Structure("gas", (55, -62, 100), (30, 12, 25), _air(), optional=0.7),
        Structure("gas", (-95, -40, -70), (25, 18, 30), _air(), optional=0.6),
        Structure("gas", (95, -30, -50), (22, 18, 28), _air(), optional=0.6),
        Structure("liver", (-70, -5, 50), (85, 75, 95), {"ct": 100, "t2": 0.35}, rotation=rot(z=20),
                  group="liver"),
        Structure("liver_tumour", (-92, -20, 62), (18, 17, 19), {"ct": 45, "t2": 0.7}, group="liver",
                  wiggle=12, size=(0.6, 1.4)),
        Structure("liver_tumour", (-50, 15, 30), (12, 12, 12), {"ct": 50, "t2": 0.7}, group="liver",
                  wiggle=12, size=(0.6, 1.4), optional=0.5),
        Structure("liver_tumour", (-85, 15, 95), (10, 10, 11), {"ct": 40, "t2": 0.7}, group="liver",
                  wiggle=10, size=(0.6, 1.4), optional=0.4),
        Structure("gallbladder", (-40, -48, 15), (14, 14, 30), {"ct": 10, "t2": 0.95}, group="liver"),
        Structure("spleen", (88, 48, 55), (35, 55, 60), {"ct": 112, "t2": 0.55}, rotation=rot(z=-30)),
        Structure("pancreas", (15, 22, 12), (75, 15, 18), {"ct": 100, "t2": 0.45},
                  rotation=rot(y=-12, z=20), group="pancreas"),
        Structure("pancreas_tumour", (-35, 12, 3), (15, 14, 15), {"ct": 55, "t2": 0.6},
                  group="pancreas", wiggle=6, size=(0.75, 1.25)),
    )
    return Anatomy("abdomen", s, {"liver": (-70, -5, 50), "pancreas": (15, 22, 12), "spleen": (88, 48, 55)},
                   centre=(0, 0, 40), coverage=(400, 400, 240), contrasts=("t2",), deform=6.0)


def _pelvis() -> Anatomy:
    s = (
        Structure("body", (0, 0, 0), (180, 125, CYL), _fat(), size=(0.9, 1.1)),
        Structure("gluteus", (75, 78, 0), (65, 45, CYL), _muscle()),
        Structure("gluteus", (-75, 78, 0), (65, 45, CYL), _muscle()),
        Structure("obturator", (62, 5, 0), (15, 40, CYL), _muscle()),
        Structure("obturator", (-62, 5, 0), (15, 40, CYL), _muscle()),
        Structure("femoral_head", (100, 0, 15), (26, 26, 26), _bone(400)),
        Structure("femoral_head", (-100, 0, 15), (26, 26, 26), _bone(400)),
        Structure("symphysis", (0, -72, 20), (25, 10, 25), _bone(400)),
        Structure("bladder", (0, -32, 48), (42, 32, 30), {"ct": 5, "t2": 1.0, "adc": 2.9, "mri": 0.95}),
        Structure("rectum", (0, 42, 0), (17, 15, 80), {"ct": 30, "t2": 0.22, "adc": 1.1, "mri": 0.3}),
        Structure("rectal_gas", (0, 42, 0), (6, 5, 80), _air(-800), optional=0.7),
        Structure("seminal_vesicle", (0, 26, 30), (22, 6, 8), {"ct": 30, "t2": 0.9, "adc": 1.8}),
        Structure("pz", (0, 6, 0), (28, 20, 22), {"ct": 40, "t2": 0.78, "adc": 1.7, "mri": 0.7},
                  group="prostate", size=(0.85, 1.2)),
        Structure("tz", (0, -3, 3), (19, 13, 18), {"ct": 45, "t2": 0.42, "adc": 1.1, "mri": 0.45},
                  group="prostate", size=(0.85, 1.3)),
    )
    return Anatomy("pelvis", s, {"prostate": (0, 5, 2)}, centre=(0, 5, 2), coverage=(180, 180, 72),
                   contrasts=("t2", "adc"), deform=4.0, shift=4.0)


def _knee() -> Anatomy:
    cart = {"ct": 80, "dess": 0.72, "t2": 0.4, "mri": 0.6}
    marrow = _bone(300)
    s = (
        Structure("leg", (0, 0, 0), (68, 62, CYL), _fat(), size=(0.9, 1.1)),
        Structure("thigh_muscle", (0, -5, 115), (55, 45, 60), _muscle()),
        Structure("hamstring", (35, 32, 65), (16, 16, 80), _muscle()),
        Structure("hamstring", (-35, 32, 65), (16, 16, 80), _muscle()),
        Structure("gastrocnemius", (24, 42, -60), (20, 18, 75), _muscle()),
        Structure("gastrocnemius", (-24, 42, -60), (20, 18, 75), _muscle()),
        Structure("popliteal", (0, 38, 0), (5, 5, CYL), _blood(200, dess=0.55)),
        Structure("joint_fluid", (0, 4, 0), (40, 30, 4), {"ct": 10, "dess": 0.8, "t2": 0.95}),
        Structure("bursa", (0, -28, 45), (25, 6, 25), {"ct": 10, "dess": 0.85, "t2": 0.95}),
        Structure("femur_cartilage", (0, 5, 68.5), (40, 31, 65), cart, group="femur", grow=2.5,
                  clip=(2, -1.1, -0.45)),
        Structure("femur", (0, 5, 68.5), (40, 31, 65), marrow, group="femur"),
        Structure("femur", (0, 12, 150), (16, 16, 90), marrow, group="femur"),
        Structure("tibia_cartilage", (0, 5, -68.5), (38, 29, 65), cart, group="tibia", grow=2.5,
                  clip=(2, 0.45, 1.1)),
        Structure("tibia", (0, 5, -68.5), (38, 29, 65), marrow, group="tibia"),
        Structure("patella_cartilage", (0, -44, 35), (21, 9, 19), cart, group="patella", grow=2.5,
                  clip=(1, 0.0, 1.1)),
        Structure("patella", (0, -44, 35), (21, 9, 19), marrow, group="patella"),
        Structure("patellar_tendon", (0, -50, -25), (13, 4, 35), {"ct": 60, "dess": 0.03, "t2": 0.03}),
        Structure("fibula", (42, 20, -58), (10, 10, 45), marrow),
    )
    return Anatomy("knee", s, {"joint": (0, 5, 0)}, centre=(0, 5, 0), coverage=(112, 140, 140),
                   contrasts=("dess",), shift=1.5, turn=2.5, deform=2.0, wavelength=(200.0, 400.0))


def _generic() -> Anatomy:
    s = (
        Structure("body", (0, 0, 0), (150, 110, CYL), _fat(), size=(0.9, 1.1)),
        Structure("soft_tissue", (0, 0, 0), (135, 96, CYL), _muscle(40)),
    )
    return Anatomy("generic", s, {}, centre=(0, 0, 0), coverage=(320, 320, 200), contrasts=("mri",))


ANATOMIES: dict[str, Anatomy] = {a.name: a for a in (_thorax(), _abdomen(), _pelvis(), _knee(), _generic())}
ROI_ANATOMY = {"heart": "thorax", "chest": "thorax", "thorax": "thorax", "lung": "thorax",
               "liver": "abdomen", "pancreas": "abdomen", "spleen": "abdomen", "kidney": "abdomen",
               "abdomen": "abdomen", "prostate": "pelvis", "pelvis": "pelvis", "knee": "knee"}
CLASS_ROLES = {
    "left atrium": "la", "la": "la", "right atrium": "ra", "ra": "ra",
    "lv": "lv", "left ventricle": "lv", "rv": "rv", "right ventricle": "rv",
    "myocardium": "myo", "myo": "myo", "liver": "liver", "spleen": "spleen", "pancreas": "pancreas",
    "kidney": "kidney", "central gland": "tz", "transition zone": "tz", "tz": "tz",
    "peripheral zone": "pz", "pz": "pz", "femur bone": "femur", "tibia bone": "tibia",
    "femur cartilage": "femur_cartilage", "femoral cartilage": "femur_cartilage",
    "tibia cartilage": "tibia_cartilage", "tibial cartilage": "tibia_cartilage",
}
LESIONS = {"tumour", "tumor", "lesion", "cancer", "mass"}
# Cine frames: radius factor per role (ED = reference).
PHASES: dict[str, dict[str, float]] = {
    "ES": {"lv": 0.76, "rv": 0.8, "myo": 0.92, "la": 1.12, "ra": 1.12},
}


# --------------------------------------------------------------------------------------------------
# Per-dataset twins


@dataclass(frozen=True)
class Twin:
    """How one dataset looks: real size/spacing, the view of its anatomy, and its intensity character."""

    anatomy: str
    shape: tuple[int, int, int]  # typical real size in voxels along physical x, y, z
    spacing: Vec  # real spacing (mm) along physical x, y, z
    centre: str | Vec | None = None  # landmark name or point: anatomy point at the volume centre
    coverage: Vec | None = None  # anatomy mm spanned by the field of view (default: the anatomy's)
    view: str | None = None  # "short_axis": volume z along the heart's long axis (cine stacks)
    view_turn: float = 0.0  # in-plane rotation (degrees) of the view about the volume z axis
    contrasts: tuple[str, ...] | None = None  # MRI contrasts (one per channel); CT is always ("ct",)
    gain: float = 1000.0  # MRI: intensity scale of a 1.0 tissue value
    noise: float = 0.03  # CT: HU sd; MRI: Rician sigma relative to 1.0
    bias: float = 0.25  # MRI: strength of the multiplicative bias field (log scale)
    overrides: Mapping[str, float] = field(default_factory=dict)  # role -> value in the first contrast
    direction: tuple[int, ...] = IDENTITY  # signed permutation, row-major 3x3 (ITK: columns = index axes)



_AXIS = {"axial": 2, "acquisition": 2, "coronal": 1, "sagittal": 0}


def twin_for(spec: DatasetSpec) -> Twin:
    """The twin of ``spec``: the table entry, or a default from its modality, ROI and slice axis."""
    if spec.twin is not None:
        return Twin(**spec.twin)
    anatomy = ROI_ANATOMY.get(spec.roi.lower(), "generic")
    ax = _AXIS.get(spec.slice_axis, 2)
    if spec.modality == "CT":
        inplane, thick, n_in, n_sl = 0.78, 2.5, 512, 96
    else:
        inplane, thick, n_in, n_sl = 1.0, 3.0, 256, 48
    shape = [n_in] * 3
    spacing = [inplane] * 3
    shape[ax], spacing[ax] = n_sl, thick
    contrasts = None
    if spec.modality == "MRI" and spec.channel is not None:
        base = ANATOMIES[anatomy].contrasts
        n = max(2, spec.channel + 1)
        contrasts = tuple(base[i] if i < len(base) else f"mri{i}" for i in range(n))
    return Twin(anatomy, tuple(shape), tuple(spacing), contrasts=contrasts,
                noise=12.0 if spec.modality == "CT" else 0.03)


def _contrasts(spec: DatasetSpec, twin: Twin, anatomy: Anatomy) -> tuple[str, ...]:
    if spec.modality == "CT":
        return ("ct",)
    contrasts = twin.contrasts or anatomy.contrasts
    if spec.channel is None:
        return contrasts[:1]
    n = max(len(contrasts), 2, spec.channel + 1)
    return tuple(contrasts[i] if i < len(contrasts) else f"mri{i}" for i in range(n))


def _value(values: Mapping[str, float], contrast: str) -> float:
    if contrast in values:
        return float(values[contrast])
    if contrast == "ct":
        return 40.0
    if contrast.startswith("mri") and contrast != "mri":  # extra generic channels: inverted contrast
        return 1.0 - 0.8 * float(values.get("mri", 0.5))
    return float(values.get("mri", 0.5))


@dataclass(frozen=True)
class Geometry:
    """The written (canonical, LPS) grid of a twin at a given scale."""

    size: tuple[int, int, int]  # voxels along physical x, y, z
    spacing: Vec
    slice_axis: int  # physical axis index (0 x, 1 y, 2 z)

    @property
    def fov(self) -> np.ndarray:
        return np.asarray(self.size, float) * np.asarray(self.spacing, float)


def geometry(spec: DatasetSpec, scale: float) -> Geometry:
    """Volume size and spacing of ``spec``'s twin: real size x ``scale``, with minimum sizes."""
    twin = twin_for(spec)
    ax = _AXIS.get(spec.slice_axis, 2)
    size = []
    for a, n in enumerate(twin.shape):
        floor = MIN_SLICES if a == ax else MIN_INPLANE
        size.append(max(floor, int(round(n * scale))))
    return Geometry(tuple(size), tuple(float(s) for s in twin.spacing), ax)


# --------------------------------------------------------------------------------------------------
# Structures of one dataset (classes bound to roles) and one patient (random pose)


@dataclass(frozen=True)
class _Bound:
    structure: Structure
    label: int
    values: tuple[float, ...]  # per channel


def _role_of(spec: DatasetSpec, class_name: str) -> str:
    name = re.sub(r"\s*\(label \d+\)$", "", class_name.strip().lower())  # "peripheral zone (label 1)"
    if name in LESIONS:
        return f"{spec.roi.lower()}_tumour"
    return CLASS_ROLES.get(name, name)


def _bind(spec: DatasetSpec, twin: Twin, anatomy: Anatomy, contrasts: tuple[str, ...],
          centre: np.ndarray, coverage: np.ndarray) -> list[_Bound]:
    """Anatomy structures with the spec's label values; generic blobs for classes without a role."""
    label_of = {}
    for name, values in spec.classes:
        label_of.setdefault(_role_of(spec, name), int(values[0]))
    roles = {s.role for s in anatomy.structures}
    structures = list(anatomy.structures)
    missing = [r for r in label_of if r not in roles]
    for k, role in enumerate(missing):  # generic blobs on a ring around the view centre
        angle = 2 * math.pi * (k + 0.25) / max(1, len(missing))
        ring = 0.22 * min(coverage[0], coverage[1])
        c = centre + np.array([ring * math.cos(angle), ring * math.sin(angle), 0.0])
        r = (0.11 * coverage[0], 0.11 * coverage[1], 0.3 * coverage[2])
        values = {"ct": 70.0 + 35.0 * k, "mri": 0.55 + 0.12 * ((k % 3) - 1)}
        structures.append(Structure(role, tuple(c), r, values, rotation=rot(z=30.0 * k)))
    bound = []
    for s in structures:
        vals = [_value(s.values, c) for c in contrasts]
        if s.role in twin.overrides:
            vals[0] = float(twin.overrides[s.role])
        bound.append(_Bound(s, label_of.get(s.role, 0), tuple(vals)))
    return bound


@dataclass
class _Placed:
    centre: np.ndarray
    rotation: np.ndarray
    radii: np.ndarray
    values: np.ndarray  # per channel
    label: int
    clip: tuple[int, float, float] | None


@dataclass
class _Patient:
    """Everything random about one patient (drawn once, shared by its frames)."""

    view_shift: np.ndarray
    view_rot: np.ndarray
    body: np.ndarray  # per-axis patient size
    deform: list  # (amplitude (3,), wave vectors (3,), phases (3,))
    groups: dict  # group -> (shift, rotation, size)
    own: list  # per structure: (present, offset, size, intensity factor, intensity offset)
    bias: tuple  # (linear (3,), quadratic (3,))
    gain: float


def _draw_patient(rng: np.random.Generator, anatomy: Anatomy, bound: list[_Bound]) -> _Patient:
    def unit() -> np.ndarray:
        v = rng.normal(size=3)
        return v / np.linalg.norm(v)

    view_shift = np.clip(rng.normal(0.0, 4.0, 3), -8, 8)
    view_rot = rot(*np.clip(rng.normal(0.0, 3.0, 3), -6, 6))
    body = rng.uniform(0.9, 1.1, 3)
    deform = []
    lo, hi = anatomy.wavelength
    for _ in range(3):
        amp = unit() * anatomy.deform * rng.uniform(0.5, 1.0) / 1.5
        waves = 2 * math.pi / rng.uniform(lo, hi, 3)
        deform.append((amp, waves, rng.uniform(0, 2 * math.pi, 3)))
    groups: dict = {}
    own = []
    for k, b in enumerate(bound):
        s = b.structure
        key = s.group or f"#{k}"
        if key not in groups:
            shift = np.clip(rng.normal(0.0, anatomy.shift, 3), -2 * anatomy.shift, 2 * anatomy.shift)
            turn = rot(*np.clip(rng.normal(0.0, anatomy.turn, 3), -2 * anatomy.turn, 2 * anatomy.turn))
            groups[key] = (np.asarray(s.centre, float), shift, turn, rng.uniform(*s.size, 3))
        present = bool(rng.random() < s.optional)
        offset = rng.normal(0.0, 1.0, 3) * s.wiggle
        size = rng.uniform(*s.size, 3) if s.wiggle else np.ones(3)
        jitter_scale = rng.normal(0.0, 1.0)
        own.append((present, offset, size, jitter_scale))
    bias = (unit() * rng.uniform(0.7, 1.0), rng.uniform(-0.3, 0.3, 3))
    gain = float(rng.uniform(0.8, 1.25))
    return _Patient(view_shift, view_rot, body, deform, groups, own, bias, gain)


def _place(bound: list[_Bound], patient: _Patient, phase: Mapping[str, float], vox: float,
           ct: bool) -> list[_Placed]:
    placed = []
    for k, (b, (present, offset, size, jit)) in enumerate(zip(bound, patient.own)):
        s = b.structure
        if not present:
            continue
        key = s.group or f"#{k}"
        pivot, shift, turn, gsize = patient.groups[key]
        iso = float(np.mean(gsize))
        centre = pivot + shift + turn @ ((np.asarray(s.centre, float) + offset - pivot) * iso)
        radii = np.asarray(s.radii, float) * gsize * size * phase.get(s.role, 1.0)
        radii = np.where(np.asarray(s.radii) >= CYL, CYL, radii)
        if s.grow:
            radii = radii + max(s.grow, vox)
        if b.label:
            radii = np.maximum(radii, vox)
        values = np.asarray(b.values, float)
        if ct:
            values = values + 6.0 * jit if values[0] > -500 else values
        else:
            values = values * (1.0 + 0.05 * jit)
        placed.append(_Placed(centre, turn @ s.rotation, radii, values, b.label, s.clip))
    return placed


# --------------------------------------------------------------------------------------------------
# Renderer


def _render(geo: Geometry, view_centre: np.ndarray, view: np.ndarray, zoom: np.ndarray,
            patient: _Patient, placed: list[_Placed], n_channels: int, background: np.ndarray,
            edge: float) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``placed`` on the canonical grid; returns float32 channels (C, z, y, x) and uint16 labels."""
    nx, ny, nz = geo.size
    sx, sy, sz = geo.spacing
    p = [(np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * s for n, s in zip(geo.size, geo.spacing)]
    shapes = [(1, 1, nx), (1, ny, 1), (nz, 1, 1)]
    # anatomy point a = c + M p + d(p): M = body^-1 R_patient V diag(zoom)
    m = np.diag(1.0 / patient.body) @ patient.view_rot @ view @ np.diag(zoom)
    c = view_centre + patient.view_shift
    u = [(p[a] * zoom[a]).reshape(shapes[a]) for a in range(3)]  # physical mm at anatomy scale
    coords = []
    for i in range(3):
        acc = np.zeros((nz, ny, nx), np.float32)
        acc += np.float32(c[i])
        for a in range(3):
            acc += (m[i, a] * p[a]).astype(np.float32).reshape(shapes[a])
        coords.append(acc)
    pad = 0.0
    for amp, waves, phases in patient.deform:
        f = [np.cos(waves[a] * u[a] + phases[a]).astype(np.float32) for a in range(3)]
        prod = f[0] * f[1] * f[2]
        for i in range(3):
            coords[i] += np.float32(amp[i]) * prod
        pad += float(np.abs(amp).max())
    minv = np.linalg.inv(m)
    row_norm = np.linalg.norm(minv, axis=1)
    img = np.empty((n_channels, nz, ny, nx), np.float32)
    img[:] = background.reshape(-1, 1, 1, 1)
    lab = np.zeros((nz, ny, nx), np.uint16)
    for st in placed:
        reach = float(np.max(np.minimum(st.radii, CYL))) + pad + 2 * edge
        pc = minv @ (st.centre - c)
        sl = []
        for a in (2, 1, 0):
            half = reach * row_norm[a] / geo.spacing[a]
            centre_idx = pc[a] / geo.spacing[a] + (geo.size[a] - 1) / 2.0
            lo = max(0, int(math.floor(centre_idx - half)))
            hi = min(geo.size[a], int(math.ceil(centre_idx + half)) + 1)
            sl.append(slice(lo, hi))
        sl = tuple(sl)
        if any(s.stop <= s.start for s in sl):
            continue
        r = st.rotation
        active = [j for j in range(3) if st.radii[j] < CYL]  # cylinders: no term along their axis
        inv_r = [np.float32(1.0 / st.radii[j]) for j in range(3)]
        if np.allclose(r, np.eye(3)):
            q = {j: (coords[j][sl] - np.float32(st.centre[j])) * inv_r[j] for j in active}
        else:
            d = [coords[i][sl] - np.float32(st.centre[i]) for i in range(3)]
            q = {j: (d[0] * np.float32(r[0, j]) + d[1] * np.float32(r[1, j]) + d[2] * np.float32(r[2, j]))
                 * inv_r[j] for j in active}
        f2 = sum(q[j] * q[j] for j in active)
        inside = f2 < 1.0
        # first-order distance (mm) to the surface f2 = 1, for partial-volume edges
        g = np.sqrt(sum((q[j] * inv_r[j]) ** 2 for j in active)) * 2.0 + np.float32(1e-9)
        alpha = np.clip(0.5 - (f2 - 1.0) / (g * np.float32(edge)), 0.0, 1.0)
        if st.clip is not None:
            j, lo_q, hi_q = st.clip
            w = np.float32(st.radii[j] / edge)
            inside &= (q[j] >= lo_q) & (q[j] <= hi_q)
            alpha *= np.clip(0.5 + (q[j] - lo_q) * w, 0.0, 1.0) * np.clip(0.5 + (hi_q - q[j]) * w, 0.0, 1.0)
        for ch in range(n_channels):
            view_ = img[ch][sl]
            view_ += alpha * (np.float32(st.values[ch]) - view_)
        lab[sl][inside] = st.label
    return img, lab


def _bias_field(geo: Geometry, patient: _Patient, strength: float) -> np.ndarray:
    nx, ny, nz = geo.size
    lin, quad = patient.bias
    log = np.zeros((nz, ny, nx), np.float32)
    shapes = [(1, 1, nx), (1, ny, 1), (nz, 1, 1)]
    for a, n in enumerate(geo.size):
        u = np.linspace(-1.0, 1.0, n)
        term = strength * (lin[a] * u + quad[a] * (u * u - 1.0 / 3.0))
        log += term.astype(np.float32).reshape(shapes[a])
    return np.exp(log)


# --------------------------------------------------------------------------------------------------
# Cases


@dataclass
class PhantomCase:
    """One rendered case: canonical (LPS, identity direction) arrays and the images as written."""

    case_id: str
    patient_id: str
    image: np.ndarray  # canonical, (C, z, y, x), int16
    label: np.ndarray  # canonical, (z, y, x)
    spacing: Vec
    direction: tuple[int, ...]

    def to_sitk(self):
        """(image, label) SimpleITK images in the on-disk orientation (see module docstring)."""
        return _to_sitk(self.image, self.spacing, self.direction), _to_sitk(self.label, self.spacing,
                                                                              self.direction)


def _seed(spec: DatasetSpec) -> int:
    return zlib.crc32(spec.name.encode())


def render_patient(spec: DatasetSpec, index: int, *, seed: int, scale: float) -> list[PhantomCase]:
    """Render patient ``index`` of ``spec``'s twin: one case, or one per frame for cine datasets."""
    twin = twin_for(spec)
    anatomy = ANATOMIES[twin.anatomy]
    geo = geometry(spec, scale)
    ct = spec.modality == "CT"
    contrasts = _contrasts(spec, twin, anatomy)
    coverage = np.asarray(twin.coverage or anatomy.coverage, float)
    centre = twin.centre if twin.centre is not None else anatomy.centre
    centre = np.asarray(anatomy.landmarks[centre] if isinstance(centre, str) else centre, float)
    if twin.view == "short_axis":
        view = anatomy.landmarks.get("short_axis", np.eye(3)) @ rot(z=twin.view_turn)
    else:
        view = rot(z=twin.view_turn)
    zoom = coverage / geo.fov
    vox = float(np.max(coverage / np.asarray(geo.size)))
    edge = float(np.mean(coverage / np.asarray(geo.size)))
    bound = _bind(spec, twin, anatomy, contrasts, centre, coverage)
    background = np.array([-1000.0 if c == "ct" else 0.0 for c in contrasts])
    frames = list(spec.frames) or [None]
    wanted = {int(values[0]) for _, values in spec.classes}
    pid = f"{spec.name}_{index:03d}"
    for attempt in range(50):
        rng = np.random.default_rng([seed, _seed(spec), index, attempt])
        patient = _draw_patient(rng, anatomy, bound)
        cases = []
        ok = True
        for k, frame in enumerate(frames):
            phase = PHASES.get(frame, PHASES["ES"] if k else {}) if frame else {}
            placed = _place(bound, patient, phase, vox, ct)
            img, lab = _render(geo, centre, view, zoom, patient, placed, len(contrasts), background, edge)
            if not wanted <= set(np.unique(lab).tolist()):
                ok = False
                break
            noise_rng = np.random.default_rng([seed, _seed(spec), index, attempt, 1 + k])
            img = _finish(img, contrasts, twin, geo, patient, noise_rng)
            case_id = f"{pid}_{frame}" if frame else pid
            lab_dtype = np.uint8 if max(wanted | {0}) < 256 else np.uint16
            cases.append(PhantomCase(case_id, pid, img, lab.astype(lab_dtype), geo.spacing, twin.direction))
        if ok:
            return cases
    raise RuntimeError(f"phantom twin of {spec.name}: could not place every class in patient {index}")


def _finish(img: np.ndarray, contrasts: tuple[str, ...], twin: Twin, geo: Geometry, patient: _Patient,
            rng: np.random.Generator) -> np.ndarray:
    """Noise, bias field and scaling to int16."""
    out = np.empty(img.shape, np.int16)
    bias = None
    for ch, contrast in enumerate(contrasts):
        x = img[ch]
        if contrast == "ct":
            x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(twin.noise)
            out[ch] = np.clip(np.rint(x), *CT_RANGE)
            continue
        if contrast not in QUANTITATIVE and twin.bias:
            if bias is None:
                bias = _bias_field(geo, patient, twin.bias)
            x = x * bias
        quantitative = contrast in QUANTITATIVE  # e.g. ADC in 1e-3 mm^2/s, written in 1e-6 mm^2/s
        sigma = np.float32(twin.noise * (3.0 if quantitative else 1.0))
        n1 = rng.standard_normal(x.shape, dtype=np.float32)
        n2 = rng.standard_normal(x.shape, dtype=np.float32)
        x = np.sqrt((x + sigma * n1) ** 2 + (sigma * n2) ** 2)  # Rician magnitude noise
        gain = 1000.0 if quantitative else twin.gain * patient.gain
        out[ch] = np.clip(np.rint(x * np.float32(gain)), 0, MRI_MAX)
    return out


def _stored(array: np.ndarray, direction: Sequence[int]) -> np.ndarray:
    """Canonical (…, z, y, x) array -> the array stored with ``direction`` (signed permutation)."""
    d = np.asarray(direction).reshape(3, 3)
    lead = array.ndim - 3
    order = list(range(lead)) + [0] * 3
    flips = []
    for j in range(3):  # stored index axis j <- physical axis a
        a = int(np.flatnonzero(d[:, j])[0])
        order[lead + 2 - j] = lead + 2 - a
        if d[a, j] < 0:
            flips.append(lead + 2 - j)
    out = array.transpose(order)
    if flips:
        out = np.flip(out, axis=tuple(flips))
    return np.ascontiguousarray(out)


def _to_sitk(array: np.ndarray, spacing: Vec, direction: Sequence[int]):
    import SimpleITK as sitk

    d = np.asarray(direction, float).reshape(3, 3)
    size = array.shape[-3:][::-1]  # canonical x, y, z
    perm = [int(np.flatnonzero(d[:, j])[0]) for j in range(3)]  # stored index axis j -> physical axis
    stored_spacing = [float(spacing[a]) for a in perm]
    # origin = physical point of stored index 0: the low end of an axis stored forwards, else the high end
    origin = [0.0, 0.0, 0.0]
    for j, a in enumerate(perm):
        half = (size[a] - 1) / 2.0 * float(spacing[a])
        origin[a] = -half if d[a, j] > 0 else half
    stored = _stored(array, direction)

    def one(vol):
        im = sitk.GetImageFromArray(vol)
        im.SetSpacing(stored_spacing)
        im.SetOrigin(origin)
        im.SetDirection([float(v) for v in d.ravel()])
        return im

    if stored.ndim == 3:
        return one(stored)
    if stored.shape[0] == 1:
        return one(stored[0])
    return sitk.JoinSeries([one(v) for v in stored])  # 4D: channel = 4th dimension (MSD Task05)


# --------------------------------------------------------------------------------------------------
# Dataset writer


def write_phantom_dataset(spec: DatasetSpec, out_dir: Path, *, n_patients: int, seed: int,
                          scale: float) -> Path:
    """Write ``spec``'s phantom twin (``n_patients`` patients) in MSD layout at ``out_dir``; return it.

    See the module docstring for the anatomy, geometry, channel, frame and direction conventions.
    Deterministic for ``(spec, n_patients, seed, scale)``; written atomically (temporary folder beside
    ``out_dir``, dataset.json last, then a rename).
    """
    import SimpleITK as sitk

    if n_patients < 1:
        raise ValueError("n_patients must be >= 1")
    if scale <= 0:
        raise ValueError("scale must be > 0")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        training = []
        for i in range(n_patients):
            for case in render_patient(spec, i, seed=seed, scale=scale):
                image, label = case.to_sitk()
                name = f"{case.case_id}.nii.gz"
                sitk.WriteImage(image, str(tmp / "imagesTr" / name), True)
                sitk.WriteImage(label, str(tmp / "labelsTr" / name), True)
                training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
                labelled = {int(v): int(n) for v, n in zip(*np.unique(case.label, return_counts=True)) if v}
                log.info("%s: case %s, %s voxels (z, y, x) of %s mm, labelled voxels %s", spec.name, case.case_id,
                         "x".join(map(str, case.image.shape[1:])), "x".join(f"{v:g}" for v in case.spacing),
                         ", ".join(f"{v}: {n}" for v, n in sorted(labelled.items())) or "none")
        write_json(tmp / "dataset.json", _dataset_json(spec, training, n_patients=n_patients, seed=seed,
                                                       scale=scale))
    log.info("%s: %d cases of %d patients written to %s", spec.name, len(training), n_patients, out_dir)
    return out_dir


def _dataset_json(spec: DatasetSpec, training: list, *, n_patients: int, seed: int, scale: float) -> dict:
    twin = twin_for(spec)
    anatomy = ANATOMIES[twin.anatomy]
    contrasts = _contrasts(spec, twin, anatomy)
    if spec.modality == "CT":
        modality = {"0": "CT"}
    elif len(contrasts) == 1:
        modality = {"0": "MRI"}
    else:
        modality = {str(i): c.upper() for i, c in enumerate(contrasts)}
    labels = {"0": "background"}
    for name, values in spec.classes:
        for v in values:
            labels.setdefault(str(int(v)), name)
    geo = geometry(spec, scale)
    return {
        "name": spec.name,
        "description": f"Synthetic phantom twin of {spec.title} (medssl.data.phantoms; not patient data)",
        "reference": spec.reference or "medssl synthetic phantoms",
        "licence": "CC0 (synthetic)",
        "release": "medssl phantoms 1.0",
        "tensorImageSize": "4D" if len(contrasts) > 1 else "3D",
        "modality": modality,
        "labels": labels,
        "numTraining": len(training),
        "numTest": 0,
        "training": training,
        "test": [],
        "synthetic": True,
        "phantom": {
            "generator": "medssl.data.phantoms", "seed": seed, "scale": scale, "n_patients": n_patients,
            "anatomy": twin.anatomy, "size_xyz": list(geo.size), "spacing_xyz": list(geo.spacing),
            "direction": list(twin.direction), "slice_axis": spec.slice_axis,
            "frames": list(spec.frames), "channels": list(contrasts),
        },
    }
