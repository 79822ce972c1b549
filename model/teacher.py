"""The teacher encoder's blocks: torchvision's wide_resnet101_2 Bottlenecks (SPEC sec. 1-2).

The FEN only needs layer1, so it is built here from torchvision's own ``Bottleneck`` rather than by
instantiating the whole 127M-parameter network; its parameter names match both torchvision's
``wide_resnet101_2().layer1`` and the authors' ``enc.pt`` (minus the ``layer1.`` prefix).
Training needs layers 1-3 (:class:`Teacher`), built the same way (no stem, no layer4, no fc), and
filled by :func:`load_teacher` from torchvision's ImageNet file, a local state dict, or a seed.
"""
from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, conv1x1

from utils.errors import FerdError, describe

#: wide_resnet101_2: width_per_group = 64 * 2, so every Bottleneck has an inner width of 2 x planes.
WIDE_BASE_WIDTH = 128


def wide_stage(inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """One ResNet stage of wide Bottlenecks, as ``torchvision.models.ResNet._make_layer`` builds it.

    Shapes: ``(N, inplanes, H, W) -> (N, 4 planes, H / stride, W / stride)``.
    """
    out = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
    layers = [Bottleneck(inplanes, planes, stride, downsample, base_width=WIDE_BASE_WIDTH)]
    layers += [Bottleneck(out, planes, base_width=WIDE_BASE_WIDTH) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def wide_layer1() -> nn.Sequential:
    """wide_resnet101_2's layer1: ``(N, 64, H, W) -> (N, 256, H, W)``, stride 1."""
    return wide_stage(64, 64, blocks=3)


# --------------------------------------------------------------------------------------------------
# The full teacher of training: wide_resnet101_2's layer1, layer2 and layer3 (SPEC sec. 1-2).
# --------------------------------------------------------------------------------------------------
#: torchvision's IMAGENET1K_V1 weights of wide_resnet101_2: file name in torch.hub's cache, and its host.
IMAGENET_FILE = "wide_resnet101_2-32ee1156.pth"
IMAGENET_HOST = "download.pytorch.org"
#: Block counts of wide_resnet101_2's stages; the teacher uses the first three.
TEACHER_BLOCKS = (3, 4, 23)


class TeacherError(FerdError, RuntimeError):
    """Teacher weights that cannot be found or used; the one-line message says what to do instead.

    A :class:`~utils.errors.FerdError` (one line, exit code 2), and still a RuntimeError as it was before."""


def init_resnet_(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal (fan_out) convs, BN weight 1 and bias 0.

    Also used by RD4AD for its bottleneck and decoder; ConvTranspose2d keeps PyTorch's default.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Teacher(nn.Module):
    """wide_resnet101_2 layers 1-3, frozen: ``(N, 64, H, W) -> [f1, f2, f3]``.

    f1 ``(N, 256, H, W)``, f2 ``(N, 512, H/2, W/2)``, f3 ``(N, 1024, H/4, W/4)``. Parameter names match
    torchvision's ``wide_resnet101_2().state_dict()`` (``layer1.*``, ``layer2.*``, ``layer3.*``).
    Built with PyTorch's default initialisation; :func:`load_teacher` gives it its weights.

    Frozen but differentiable: its parameters never require grad and it always runs in eval mode (BN
    uses the stored running statistics, which never change), while gradients still flow through it to
    the CWL upstream.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = wide_layer1()
        self.layer2 = wide_stage(256, 128, TEACHER_BLOCKS[1], stride=2)
        self.layer3 = wide_stage(512, 256, TEACHER_BLOCKS[2], stride=2)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)  # frozen: always eval, whatever the caller asks

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f1, f2, f3]


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
            why = "downloads are off (--no-download_teacher)" if not download else f"{IMAGENET_HOST} is unreachable"
            raise TeacherError(f"--teacher imagenet: {IMAGENET_FILE} is not cached and {why}: place that file at "
                               f"{path} (or set TORCH_HOME), or use --teacher PATH (a local state dict, e.g. "
                               "the authors' enc.pt) or --teacher random")
        from torchvision.models import Wide_ResNet101_2_Weights

        try:
            return Wide_ResNet101_2_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)
        except Exception as err:  # URLError, hash mismatch, partial file: all end the same way
            raise TeacherError(f"--teacher imagenet: download of {IMAGENET_FILE} failed ({describe(err)}); place "
                               f"the file at {path}, or use --teacher PATH or --teacher random") from None
    return _load_file(path)


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    import warnings

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # torch's own message spans lines and advises weights_only=False (running code from the file): not shown
        raise TeacherError(f"{path}: not a readable torch state dict (torch cannot load it as a file of tensors: "
                           "another kind of file, or a damaged one); --teacher takes imagenet, random or a "
                           "state-dict file such as the authors' enc.pt") from None
    obj = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
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
        raise TeacherError(f"--teacher {spec}: not 'imagenet', 'random' or an existing state-dict file")
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


def reset_bn_stats_(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()


def fingerprint(module: nn.Module) -> str:
    """A short hash of every tensor of ``module`` (weights and buffers): tells two teachers apart."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()[:16]
