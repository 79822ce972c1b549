"""The cube layouts the public functions take, and the checks of what they are given.

A hyperspectral cube is held as H x W x B by ``data.read_scene``, scipy's ``.mat`` files, Spectral Python and
every ENVI reader; the library's tensors are B x H x W (the FEN is a 2-D convolution network, its bands are
channels). A 100 x 100 x 50 array is a legal cube either way, so no rule on the shape alone can tell: the
public functions (``grx``, ``slrx``, ``lrx``, ``crd``, ``FEN.enhance``, ``preprocess``) take
``layout="hwb"`` (the default, H x W x B) or ``layout="bhw"`` (B x H x W), numpy arrays and torch tensors
alike, and give a map of the scene's H x W (numpy in, numpy out; torch in, torch out).

What a function cannot take is one line in the library's ``name=value`` style, raised as the caller's
error type (a :class:`~utils.errors.FerdError`), never an AttributeError or a torch error from deep inside.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from utils.errors import CubeError, FerdError

#: The layouts a public function takes, and how its docstrings and errors name them.
LAYOUTS = {"hwb": "H x W x B", "bhw": "B x H x W"}
#: numpy dtypes that torch.from_numpy takes as they are; any other real dtype is converted (exactly) first.
TORCH_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_layout(layout: object, error: type[FerdError] = CubeError) -> str:
    """``layout`` if it is one of :data:`LAYOUTS`, else ``error`` naming it."""
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise error(f"layout={layout!r}: must be 'hwb' (H x W x B, as read_scene returns; the default) or "
                    "'bhw' (B x H x W, bands first)")
    return layout


def shape_text(shape: tuple[int, ...]) -> str:
    """``(100, 100, 50)``: a shape as a tuple of ints (not ``torch.Size([...])``)."""
    return str(tuple(int(n) for n in shape))


def check_values_kind(kind: str, dtype: object, name: str, error: type[FerdError]) -> None:
    """Raise ``error`` unless a numpy dtype kind ``kind`` is a real number (bool, integer, floating point)."""
    if kind == "c":
        raise error(f"{name}.dtype={dtype}: complex values; pass real numbers: the magnitude (abs) or the "
                    "real part")
    if kind not in "biuf":
        raise error(f"{name}.dtype={dtype}: not numbers; pass a numeric array")


def check_ndim(shape: tuple[int, ...], layout: str, name: str, batch: bool, error: type[FerdError]) -> None:
    """Raise ``error`` unless ``shape`` is one cube (or, with ``batch``, a batch of cubes) in ``layout``,
    none of its axes empty."""
    allowed = (3, 4) if batch else (3,)
    if len(shape) not in allowed:
        what = f"{'an' if layout == 'hwb' else 'a'} {LAYOUTS[layout]} cube (layout={layout!r})"
        if batch:
            what += f" or a batch M x {LAYOUTS[layout]}"
        raise error(f"{name}.shape={shape_text(shape)}: {len(shape)} axes, expected {what}")
    if min(shape) < 1:
        raise error(f"{name}.shape={shape_text(shape)}: empty ({LAYOUTS[layout]} with layout={layout!r})")


def _from_numpy(cube: object, float_dtype: torch.dtype | None, name: str, error: type[FerdError]) -> torch.Tensor:
    """A numpy array (or an object numpy reads, such as data.scene's MATLAB v7.3 reader) as a CPU tensor of
    ``float_dtype``, or (None) float32/float64 shared where it can be and any other real dtype as float64
    (exact for integers, booleans and float16)."""
    array = np.asarray(cube)
    check_values_kind(array.dtype.kind, array.dtype, name, error)
    if array.dtype not in TORCH_FLOATS or not array.flags.writeable:  # also a read-only memory map
        array = array.astype(array.dtype if array.dtype in TORCH_FLOATS else np.float64)
    tensor = torch.from_numpy(array)  # TORCH_FLOATS are native byte order: astype converted the others
    return tensor if float_dtype is None else tensor.to(float_dtype)


def _checked_tensor(cube: torch.Tensor, name: str, error: type[FerdError]) -> torch.Tensor:
    """A torch tensor of real numbers; integers and booleans as float64 (the detectors compute in float64)."""
    if cube.is_complex():
        check_values_kind("c", cube.dtype, name, error)
    return cube if cube.is_floating_point() else cube.to(torch.float64)


@dataclass(frozen=True)
class GivenCube:
    """A cube as a public function was given it, bands first: ``tensor`` ``(B, H, W)`` (or ``(M, B, H, W)``),
    and how to give results back (``numpy``: the caller passed a numpy array)."""

    tensor: torch.Tensor
    layout: str
    numpy: bool

    def map(self, scores: torch.Tensor) -> torch.Tensor | np.ndarray:
        """``(H, W)`` (or ``(M, H, W)``) scores as the caller's kind: numpy (on the CPU) or the tensor."""
        return scores.cpu().numpy() if self.numpy else scores

    def cube(self, bhw: torch.Tensor) -> torch.Tensor | np.ndarray:
        """A ``(B, H, W)`` (or ``(M, B, H, W)``) result back in the caller's layout and kind."""
        out = bhw.movedim(-3, -1) if self.layout == "hwb" else bhw
        return out.cpu().numpy() if self.numpy else out


def bands_first(cube: object, layout: str = "hwb", name: str = "cube", batch: bool = False,
                error: type[FerdError] = CubeError, float_dtype: torch.dtype | None = None) -> GivenCube:
    """``cube`` (a numpy array or torch tensor in ``layout``) checked and seen as ``(B, H, W)``.

    ``batch``: a 4-D batch of cubes is also taken (``M`` first in either layout). ``float_dtype``: the dtype
    a numpy array is converted to (the FEN's); tensors keep theirs (the caller checks it). An H x W x B
    cube is made contiguous bands first, so that it gives bit for bit what the same cube given B x H x W does.
    """
    check_layout(layout, error)
    if isinstance(cube, torch.Tensor):
        tensor, numpy = _checked_tensor(cube, name, error), False
    elif isinstance(cube, np.ndarray) or (hasattr(cube, "__array__") and hasattr(cube, "shape")):
        check_ndim(tuple(cube.shape), layout, name, batch, error)  # before any read of a lazy cube
        tensor, numpy = _from_numpy(cube, float_dtype, name, error), True
    else:
        raise error(f"{name}={type(cube).__name__}: expected a numpy array or a torch tensor "
                    f"({LAYOUTS['hwb']}, or {LAYOUTS['bhw']} with layout='bhw')")
    check_ndim(tuple(tensor.shape), layout, name, batch, error)
    if layout == "hwb":
        tensor = tensor.movedim(-1, -3).contiguous()
    return GivenCube(tensor, layout, numpy)


def hwb_array(cube: object, layout: str = "hwb", name: str = "cube", error: type[FerdError] = CubeError) -> object:
    """``cube`` as an H x W x B array for numpy code (data.preprocess), without reading it: a numpy array or
    memory map as a view, data.scene's lazy MATLAB v7.3 reader as it is (``layout="hwb"``), a torch tensor
    as a numpy array on the CPU. Dtypes and values are the caller's to check."""
    check_layout(layout, error)
    if isinstance(cube, torch.Tensor):
        cube = cube.detach().cpu()
        cube = (cube.float() if cube.dtype == torch.bfloat16 else cube).numpy()  # numpy has no bfloat16
    elif not (isinstance(cube, np.ndarray) or (hasattr(cube, "__array__") and hasattr(cube, "shape"))):
        raise error(f"{name}={type(cube).__name__}: expected a numpy array or a torch tensor "
                    f"({LAYOUTS['hwb']}, or {LAYOUTS['bhw']} with layout='bhw')")
    if layout == "bhw":
        check_ndim(tuple(cube.shape), layout, name, False, error)
        cube = np.moveaxis(np.asarray(cube), 0, -1)
    return cube
