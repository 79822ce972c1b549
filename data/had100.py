"""The HAD100 benchmark in the layout the authors' code reads (method sec. 5)::

    ROOT/train/{aviris_ng,aviris}/*.npy        anomaly-free background patches (H x W x B)
    ROOT/test/aviris_ng/*.npy                  test scenes
    ROOT/ground_truth/aviris_ng/<stem>.png     3-channel masks, anomaly where green == 255
"""
from __future__ import annotations

from pathlib import Path

from data.preprocess import DataError
from data.scene import Scene, check_scene, load_npy, read_png_mask

TEST_SENSOR = "aviris_ng"
#: The HAD100 folder test.py and train.py read when no data is named (else the synthetic set is generated).
DEFAULT_DATA = Path(__file__).resolve().parent / "HAD100Dataset"


def visible_files(folder: Path, pattern: str) -> list[Path]:
    """Files in ``folder`` matching ``pattern``, without hidden ones (``._scene.npy`` from macOS, editor
    backups starting with a dot) and without folders whose name happens to match."""
    return [p for p in folder.glob(pattern) if not p.name.startswith(".") and p.is_file()]


def _npy_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} folder not found")
    files = sorted(visible_files(folder, "*.npy"))
    if not files:
        raise DataError(f"{folder}: {what} folder holds no .npy files")
    return files


def read_had100(root: str | Path, sensor: str = TEST_SENSOR) -> list[Scene]:
    """All test scenes of a HAD100-layout folder, each paired with its mask by file stem.

    The cubes are memory-mapped: read when a scene is checked or scored, never all held at once (a folder of
    thousands of scenes takes the memory of one; benchmarks/speed/bench_many_scenes.py)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    cubes = _npy_files(root / "test" / sensor, "test")
    gt_dir = root / "ground_truth" / sensor
    if not gt_dir.is_dir():
        raise DataError(f"{gt_dir}: ground-truth folder not found")
    masks = {p.stem: p for p in visible_files(gt_dir, "*.png")}
    stems = {p.stem for p in cubes}
    if orphans := sorted(set(masks) - stems):
        raise DataError(f"{gt_dir}: mask(s) without a test cube: {', '.join(orphans[:5])}"
                        + (" ..." if len(orphans) > 5 else ""))
    scenes = []
    for path in cubes:
        if path.stem not in masks:
            raise DataError(f"{path}: no ground-truth mask {gt_dir / (path.stem + '.png')}")
        cube = load_npy(path, mmap=True)
        scenes.append(check_scene(Scene(path.stem, cube, read_png_mask(masks[path.stem]), str(path))))
    return scenes


def had100_train_files(root: str | Path, sensor: str = "aviris_ng") -> list[Path]:
    """Training patch files for ``sensor`` (``aviris_ng``, ``aviris`` or ``all``)."""
    root = Path(root)
    sensors = ["aviris_ng", "aviris"] if sensor == "all" else [sensor]
    return [f for s in sensors for f in _npy_files(root / "train" / s, f"train/{s}")]
