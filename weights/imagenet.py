"""The teacher's weights: torchvision's ImageNet file of wide_resnet101_2 (through torch.hub's cache), a
local state dict (e.g. the authors' ``enc.pt``), or a seeded random start, checked and loaded into
:class:`model.teacher.Teacher` (method sec. 2)."""
from __future__ import annotations

import socket
from pathlib import Path

import torch

from model.init import init_resnet_
from model.teacher import Teacher, reset_bn_stats_
from utils.errors import FerdError, describe
from weights.files import load_tensors, state_dict_of

#: torchvision's IMAGENET1K_V1 weights of wide_resnet101_2: file name in torch.hub's cache, and its host.
IMAGENET_FILE = "wide_resnet101_2-32ee1156.pth"
IMAGENET_HOST = "download.pytorch.org"


class TeacherError(FerdError, RuntimeError):
    """Teacher weights that cannot be found or used; the one-line message says what to do instead.

    A :class:`~utils.errors.FerdError` (one line, exit code 2) and a RuntimeError, so ``except RuntimeError``
    catches it too."""


def imagenet_cache_path() -> Path:
    """Where torchvision keeps (or would download) the ImageNet file: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


def _reachable(host: str, timeout: float = 5.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def imagenet_state_dict(download: bool = True) -> dict[str, torch.Tensor]:
    """torchvision's ``Wide_ResNet101_2_Weights.IMAGENET1K_V1`` state dict, from torch.hub's cache.

    Not cached: with ``download`` and the host reachable, torchvision downloads it into the cache
    (its own check of the file hash included); otherwise one :class:`TeacherError` at once, naming
    the file to place and where, and the options to use instead.
    """
    path = imagenet_cache_path()
    if not path.is_file():
        if not download or not _reachable(IMAGENET_HOST):
            why = "downloads are off (download=False)" if not download else f"{IMAGENET_HOST} is unreachable"
            raise TeacherError(f"teacher='imagenet': {IMAGENET_FILE} is not cached and {why}: place that file at "
                               f"{path} (or set TORCH_HOME), or use teacher=<PATH> (a local state dict, e.g. "
                               "the authors' enc.pt) or teacher='random'")
        from torchvision.models import Wide_ResNet101_2_Weights

        try:
            return Wide_ResNet101_2_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)
        except Exception as err:  # URLError, hash mismatch, partial file: all end the same way
            raise TeacherError(f"teacher='imagenet': download of {IMAGENET_FILE} failed ({describe(err)}); place "
                               f"the file at {path}, or use teacher=<PATH> or teacher='random'") from None
    return _load_file(path)


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    obj = state_dict_of(load_tensors(path, TeacherError, "the teacher is 'imagenet', 'random' or a "
                                                         "state-dict file such as the authors' enc.pt"))
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TeacherError(f"{path}: expected a state dict of tensors (optionally under 'state_dict')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def teacher_state(spec: str, download: bool = True) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The state dict named by ``spec`` and a short name of its source; ``(None, "random")`` for ``random``.

    Separate from :func:`apply_teacher_state` so that a missing file is reported before any model is built.
    """
    if spec == "random":
        return None, "random"
    if spec == "imagenet":
        return imagenet_state_dict(download), f"ImageNet {IMAGENET_FILE}"
    path = Path(spec)
    if not path.is_file():
        raise TeacherError(f"teacher='{spec}': not 'imagenet', 'random' or an existing state-dict file")
    return _load_file(path), str(path)


def apply_teacher_state(teacher: Teacher, state: dict[str, torch.Tensor] | None, source: str,
                        seed: int = 10) -> str:
    """Fill ``teacher`` and return a one-line description of what it now holds.

    Every tensor starts from torchvision's initialisation drawn from ``seed`` (independent of the
    global RNG); then the ``layer1/2/3`` tensors present in ``state`` replace it. A full torchvision
    ``wide_resnet101_2`` file fills layers 1-3 (its stem, layer4 and fc are ignored); a layer1-only
    file (the authors' ``enc.pt``) leaves layers 2-3 at the seeded random start, and says so.
    """
    def seeded_init() -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            init_resnet_(teacher)
            reset_bn_stats_(teacher)

    if state is None:
        seeded_init()
        return f"random teacher (torchvision init, seed {seed})"
    wanted = teacher.state_dict()
    present = {k: v for k, v in state.items() if k in wanted}
    if not any(k.startswith("layer1.") for k in present):
        raise TeacherError(f"{source}: no wide_resnet101_2 layer1 tensors (keys start with "
                           f"{sorted(state)[:3]}); expected torchvision names like layer1.0.conv1.weight")
    for name, stage in (("layer1", teacher.layer1), ("layer2", teacher.layer2), ("layer3", teacher.layer3)):
        keys = {f"{name}.{k}" for k in stage.state_dict()}
        got = keys & set(present)
        if got and got != keys:
            raise TeacherError(f"{source}: {name} is incomplete ({len(keys - got)} of {len(keys)} tensors missing, "
                               f"e.g. {sorted(keys - got)[0]})")
    for k, v in present.items():
        if v.shape != wanted[k].shape:
            raise TeacherError(f"{source}: {k} has shape {tuple(v.shape)}, wide_resnet101_2 needs "
                               f"{tuple(wanted[k].shape)}")
    seeded_init()  # only now: a refused file leaves the teacher as it was
    teacher.load_state_dict(present, strict=False)
    missing = sorted({k.split(".")[0] for k in wanted if k not in present})
    if missing:
        return (f"teacher {source}: layer1 loaded; {' and '.join(missing)} not in the file, so they start "
                f"RANDOM (seed {seed})")
    return f"teacher {source}: layers 1-3 loaded"


def load_teacher(teacher: Teacher, spec: str, seed: int = 10, download: bool = True) -> str:
    """Fill ``teacher`` from ``spec``: ``imagenet`` (torchvision's IMAGENET1K_V1 through its cache),
    ``random`` (seeded), or the path of a state dict. Returns the one-line description."""
    return apply_teacher_state(teacher, *teacher_state(spec, download), seed=seed)
