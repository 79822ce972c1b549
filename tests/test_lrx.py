"""LRX (detectors/lrx.py): equal to a per-pixel dual-window loop on every pixel (borders included), window
errors that name a working value, and the memory estimate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detectors.lrx import chunk_width, lrx, lrx_memory_bytes
from detectors.reference import lrx_per_pixel


@pytest.mark.parametrize("bands,height,width,inner,outer,chunk", [
    (8, 11, 9, 3, 7, None),      # background of 40 px for 8 bands
    (8, 11, 9, 3, 7, 2),         # the same in chunks of 2 columns (the last chunk has 1)
    (20, 9, 12, 1, 5, 5),        # inner 1: only the pixel itself is left out; 24 px for 20 bands
    (30, 10, 10, 3, 5, None),    # 16 px for 30 bands: singular covariance, the ridge keeps it invertible
])
def test_equals_per_pixel_reference_on_every_pixel(bands, height, width, inner, outer, chunk):
    cube = np.random.default_rng(bands + outer).normal(size=(bands, height, width))
    ref = lrx_per_pixel(cube, inner, outer)
    got = lrx(torch.from_numpy(cube), inner, outer, chunk=chunk, layout="bhw").numpy()
    assert got.shape == (height, width) and np.isfinite(got).all()
    r = outer // 2
    border = np.ones((height, width), bool)
    border[r:-r, r:-r] = False  # pixels whose window reaches past the image (mirrored)
    assert border.sum() > height * width / 2
    np.testing.assert_allclose(got[border], ref[border], rtol=1e-7)
    np.testing.assert_allclose(got, ref, rtol=1e-7)


def test_float32_input_and_a_planted_anomaly():
    rng = np.random.default_rng(1)
    cube = rng.normal(size=(10, 24, 24)).astype(np.float32)
    cube[:, 12, 7] += 6 * rng.normal(size=10).astype(np.float32)
    scores = lrx(torch.from_numpy(cube), 3, 9, layout="bhw")
    assert scores.dtype == torch.float64
    assert np.unravel_index(int(scores.argmax()), scores.shape) == (12, 7)
    np.testing.assert_allclose(scores.numpy(), lrx_per_pixel(cube.astype(np.float64), 3, 9), rtol=1e-5)


@pytest.mark.parametrize("inner,outer,shape,message", [
    (5, 21, (10, 12), "LRX outer window lrx_outer=21 is larger than the 10 x 12 scene: use lrx_outer=9 or less"),
    (5, 21, (20, 30), "use lrx_outer=19 or less"),
    (4, 21, (50, 50), "lrx_inner=4: windows must be odd and positive"),
    (5, 20, (50, 50), "lrx_outer=20: windows must be odd"),
    (7, 7, (50, 50), "lrx_inner=7 must be smaller than lrx_outer=7 (use lrx_outer=9 or more)"),
    (5, 9, (4, 40), "the scene is too small for lrx_inner=5"),
])
def test_bad_windows_say_what_works(inner, outer, shape, message):
    with pytest.raises(ValueError) as err:
        lrx(torch.rand(3, *shape), inner, outer, layout="bhw")
    assert message in str(err.value)


def test_suggested_window_works():
    """The window the 10 x 12 case above suggests (lrx_outer=9) runs, on every pixel as the per-pixel loop."""
    cube = torch.rand(4, 10, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    scores = lrx(cube, 5, 9, layout="bhw")
    assert scores.shape == (10, 12) and torch.isfinite(scores).all() and scores.min().item() > 0
    np.testing.assert_allclose(scores.numpy(), lrx_per_pixel(cube.numpy(), 5, 9), rtol=1e-7)


def test_chunks_and_memory_estimate():
    assert chunk_width(200, 100, torch.device("cpu")) == 13      # 13 matrices of 200 x 200 in 4 MiB
    assert chunk_width(50, 64, torch.device("cpu")) == 64
    small = lrx_memory_bytes(50, 64, 64)
    big = lrx_memory_bytes(200, 1000, 1000)
    assert 0 < small < 64 << 20 and big > 3 * 8 * 1020 * 1020 * 200  # three mirrored float64 cubes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu():
    cube = torch.from_numpy(np.random.default_rng(7).normal(size=(40, 30, 30)))
    np.testing.assert_allclose(lrx(cube.cuda(), 3, 11, layout="bhw").cpu().numpy(),
                               lrx(cube, 3, 11, layout="bhw").numpy(), rtol=1e-7)
