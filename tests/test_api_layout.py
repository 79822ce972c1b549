"""The public functions take a cube as everyone holds it (H x W x B, numpy or torch), or B x H x W with
layout="bhw", and give the same map either way; what they cannot take is one ``name=value`` line of the
library's error type (utils/cube.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from data.preprocess import DataError, preprocess
from detectors.blocks import BlockGrid
from detectors.crd import crd
from detectors.lrx import lrx
from detectors.rx import grx
from detectors.slrx import slrx, slrx_maps
from model.fen import FEN, FEN_MIN_SIDE
from utils.errors import CubeError, DetectorError, FerdError

#: The detectors with options that suit a few-pixel scene.
DETECTORS = {"grx": grx, "slrx": lambda c, **kw: slrx(c, block_size=2, **kw),
             "lrx": lambda c, **kw: lrx(c, 1, 3, **kw), "crd": lambda c, **kw: crd(c, 1, 3, **kw)}
FEN_BANDS = 3
pytestmark = pytest.mark.usefixtures("one_thread")  # the FEN's small convolutions stall on two busy threads


@pytest.fixture(scope="module")
def fen() -> FEN:
    torch.manual_seed(0)
    return FEN(FEN_BANDS).eval()


def layouts(cube: np.ndarray) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """An H x W x B numpy cube, the same as a tensor, and as a contiguous B x H x W tensor."""
    return cube, torch.from_numpy(cube.copy()), torch.from_numpy(np.ascontiguousarray(cube.transpose(2, 0, 1)))


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(sorted(DETECTORS)), bands=st.integers(2, 4), height=st.integers(3, 7),
       width=st.integers(3, 7), seed=st.integers(0, 2**16))
def test_detectors_take_hwb_numpy_and_torch_as_bhw(name, bands, height, width, seed):
    assume(name != "slrx" or BlockGrid(2, height, width).problem() is None)
    hwb, hwb_t, bhw = layouts(np.random.default_rng(seed).random((height, width, bands)))
    run = DETECTORS[name]
    want = run(bhw, layout="bhw")
    from_numpy, from_torch = run(hwb), run(hwb_t)
    assert isinstance(from_numpy, np.ndarray) and isinstance(from_torch, torch.Tensor)
    assert want.shape == (height, width) and from_numpy.shape == (height, width)
    assert torch.equal(from_torch, want) and np.array_equal(from_numpy, want.numpy())
    assert run(hwb, layout="hwb").tobytes() == from_numpy.tobytes()   # the default, said


@settings(max_examples=10, deadline=None)
@given(height=st.integers(FEN_MIN_SIDE, 9), width=st.integers(FEN_MIN_SIDE, 9), batch=st.booleans(),
       normalize=st.booleans(), seed=st.integers(0, 2**16))
def test_fen_enhance_takes_hwb_numpy_and_torch_as_bhw(fen, height, width, batch, normalize, seed):
    shape = ((2,) if batch else ()) + (height, width, FEN_BANDS)
    hwb = np.random.default_rng(seed).random(shape, dtype=np.float32)
    want = fen.enhance(torch.from_numpy(np.ascontiguousarray(np.moveaxis(hwb, -1, -3))), normalize, layout="bhw")
    from_torch, from_numpy = fen.enhance(torch.from_numpy(hwb), normalize), fen.enhance(hwb, normalize)
    assert from_torch.shape == shape and isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.float32
    assert torch.equal(from_torch, want.movedim(-3, -1))
    assert np.array_equal(from_numpy, from_torch.numpy())
    # a float64 numpy cube, as scipy's .mat gives: converted to the FEN's float32
    assert np.array_equal(fen.enhance(hwb.astype(np.float64), normalize), from_numpy)


def test_grx_batch_and_slrx_maps_take_both_layouts():
    cubes = np.random.default_rng(1).random((2, 6, 5, 3))
    want = grx(torch.from_numpy(np.ascontiguousarray(cubes.transpose(0, 3, 1, 2))), layout="bhw")
    assert want.shape == (2, 6, 5) and np.array_equal(grx(cubes), want.numpy())
    hwb, hwb_t, bhw = layouts(cubes[0])
    maps = slrx_maps(hwb, 2)
    for key, d in slrx_maps(bhw, 2, layout="bhw").items():
        assert torch.equal(slrx_maps(hwb_t, 2)[key], d) and np.array_equal(maps[key], d.numpy())


def test_the_readme_failure_is_gone():
    """Issue 28: a 100 x 50 x 50 H x W x B tensor gave a 100 x 50 map (read as B x H x W)."""
    cube = torch.rand(20, 10, 6, dtype=torch.float64)
    assert grx(cube).shape == (20, 10)
    assert grx(cube.numpy()).shape == (20, 10)


def test_integer_cubes_and_read_only_memory_maps(tmp_path):
    cube = np.random.default_rng(2).integers(0, 4000, (6, 5, 3)).astype(np.uint16)
    np.save(tmp_path / "c.npy", cube)
    mapped = np.load(tmp_path / "c.npy", mmap_mode="r")
    want = grx(cube.astype(np.float64))
    assert np.array_equal(grx(cube), want) and np.array_equal(grx(mapped), want)
    assert np.array_equal(grx(torch.from_numpy(cube.astype(np.int32))), want)


def test_preprocess_takes_both_layouts_and_keeps_bands_first_output():
    cube = np.random.default_rng(3).random((6, 7, 5))
    want = preprocess(cube, 3, 1)
    assert want.shape == (3, 6, 7) and want.dtype == torch.float32
    for x, layout in ((torch.from_numpy(cube), "hwb"), (np.moveaxis(cube, -1, 0), "bhw"),
                      (torch.from_numpy(cube).permute(2, 0, 1), "bhw")):
        assert torch.equal(preprocess(x, 3, 1, layout=layout), want)
    # and its output goes on bands first
    assert np.array_equal(grx(want.permute(1, 2, 0).numpy()), grx(want, layout="bhw").numpy())


def one_line(err: pytest.ExceptionInfo, pattern: str) -> str:
    text = str(err.value)
    assert "\n" not in text and text.startswith(pattern), text
    return text


BAD_CUBES = [  # (what, args, kwargs, start of the message)
    ("a list", ([[1.0, 2.0]],), {}, "cube=list: expected a numpy array or a torch tensor"),
    ("None", (None,), {}, "cube=NoneType:"),
    ("2-D numpy", (np.zeros((4, 4)),), {}, "cube.shape=(4, 4): 2 axes, expected an H x W x B cube"),
    ("2-D torch", (torch.zeros(4, 4),), {"layout": "bhw"}, "cube.shape=(4, 4): 2 axes, expected a B x H x W"),
    ("5-D", (np.zeros((1, 2, 3, 4, 5)),), {}, "cube.shape=(1, 2, 3, 4, 5): 5 axes"),
    ("no bands", (np.zeros((4, 4, 0)),), {}, "cube.shape=(4, 4, 0): empty"),
    ("bad layout", (np.zeros((4, 4, 3)),), {"layout": "HWB"}, "layout='HWB': must be 'hwb'"),
    ("no layout", (np.zeros((4, 4, 3)),), {"layout": None}, "layout=None: must be 'hwb'"),
    ("complex numpy", (np.zeros((4, 4, 3), complex),), {}, "cube.dtype=complex128: complex values"),
    ("complex torch", (torch.zeros(4, 4, 3, dtype=torch.complex64),), {}, "cube.dtype=torch.complex64: complex"),
    ("strings", (np.full((4, 4, 3), "a"),), {}, "cube.dtype=<U1: not numbers"),
    ("objects", (np.zeros((4, 4, 3), object),), {}, "cube.dtype=object: not numbers"),
]


@pytest.mark.parametrize("name", sorted(DETECTORS) + ["slrx_maps"])
@pytest.mark.parametrize("what,args,kwargs,start", BAD_CUBES, ids=[b[0] for b in BAD_CUBES])
def test_detectors_refuse_what_they_cannot_take_in_one_line(name, what, args, kwargs, start):
    run = DETECTORS.get(name) or (lambda c, **kw: slrx_maps(c, 2, **kw))
    if name == "grx" and what == "5-D":
        start = "cube.shape=(1, 2, 3, 4, 5): 5 axes, expected an H x W x B cube (layout='hwb') or a batch"
    with pytest.raises(DetectorError) as err:
        run(*args, **kwargs)
    one_line(err, start)


@pytest.mark.parametrize("what,args,kwargs,start", BAD_CUBES, ids=[b[0] for b in BAD_CUBES])
def test_fen_refuses_what_it_cannot_take_in_one_line(fen, what, args, kwargs, start):
    with pytest.raises(CubeError) as err:
        fen.enhance(*args, **kwargs)
    one_line(err, start.replace("cube", "x", 1) if start.startswith("cube") else start)


@pytest.mark.parametrize("x,kwargs,start", [
    (torch.rand(FEN_BANDS, 8, 9), {}, f"x.shape=({FEN_BANDS}, 8, 9): 9 bands with layout='hwb', but this FEN takes "
                                      f"{FEN_BANDS} (it looks B x H x W: pass layout='bhw')"),
    (torch.rand(8, 9, FEN_BANDS), {"layout": "bhw"}, "x.shape=(8, 9, 3): 8 bands with layout='bhw', but this FEN "
                                                     "takes 3 (it looks H x W x B: leave layout at 'hwb')"),
    (np.zeros((8, 9, 5), np.float32), {}, "x.shape=(8, 9, 5): 5 bands with layout='hwb', but this FEN takes 3"),
    (torch.rand(4, 9, FEN_BANDS), {}, "x.shape=(4, 9, 3): 4 x 9 pixels; the FEN needs at least 5 x 5"),
    (torch.rand(8, 9, FEN_BANDS, dtype=torch.float64), {}, "x.dtype=torch.float64: this FEN computes in torch.float32"),
    (torch.ones(8, 9, FEN_BANDS, dtype=torch.int64), {}, "x.dtype=torch.int64: this FEN computes in torch.float32"),
    (torch.rand(1, 2, 8, 9, FEN_BANDS), {}, "x.shape=(1, 2, 8, 9, 3): 5 axes"),
])
def test_fen_refuses_cubes_it_was_not_built_for(fen, x, kwargs, start):
    with pytest.raises(CubeError) as err:
        fen.enhance(x, **kwargs)
    one_line(err, start)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fen_names_the_device(fen):
    with pytest.raises(CubeError) as err:
        FEN(FEN_BANDS).cuda().eval().enhance(torch.rand(8, 9, FEN_BANDS))
    one_line(err, "x.device=cpu: this FEN is on cuda:0")


@pytest.mark.parametrize("what,args,kwargs,start", BAD_CUBES, ids=[b[0] for b in BAD_CUBES])
def test_preprocess_refuses_what_it_cannot_take_in_one_line(what, args, kwargs, start):
    """The same problems, one line each; those of an H x W x B array's shape and values in data's own words
    (``cube: ...``, or the file's name that the pipeline passes as ``name``)."""
    with pytest.raises(DataError) as err:
        preprocess(*args, 2, **kwargs)
    text = str(err.value)
    assert "\n" not in text and text.startswith(("cube", "layout=")), text


def test_errors_are_the_library_s():
    assert issubclass(CubeError, FerdError) and issubclass(CubeError, ValueError)
    with pytest.raises(FerdError):
        grx([1, 2, 3])
