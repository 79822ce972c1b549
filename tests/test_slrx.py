"""SLRX (detectors/slrx.py): equal to a per-pixel implementation of method sec. 4, the reference AUCs on the real
ABU scenes, quirk 6, and the block-size errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detectors.reference import slrx_per_pixel
from detectors.blocks import BlockGrid, resolve_block_size
from detectors.slrx import own_block_sq, slrx, slrx_maps

# (bands, height, width, block size): 4 x 4 blocks with fewer pixels than bands (Gram / Woodbury path),
# blocks with more pixels than bands (B x B path), and grids whose last row / column of blocks is smaller
CASES = [(20, 13, 11, 4), (6, 13, 11, 4), (9, 10, 11, 3), (5, 7, 10, 2)]


@pytest.mark.parametrize("bands,height,width,size", CASES)
def test_equals_per_pixel_reference(bands, height, width, size):
    cube = np.random.default_rng(bands + size).normal(size=(bands, height, width))
    ref = slrx_per_pixel(cube, size)
    got = slrx(torch.from_numpy(cube), block_size=size, layout="bhw").numpy()
    assert got.shape == (height, width) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-9)


def test_float32_input_and_affine_invariance():
    """Detectors min-max the cube first: a positive scale and a shift of the input change nothing
    (checks the min-max folded into the ridge)."""
    cube = torch.from_numpy(np.random.default_rng(3).normal(size=(12, 16, 16)))
    base = slrx(cube, block_size=4, layout="bhw")
    np.testing.assert_allclose(slrx(cube * 7.5 - 3.0, block_size=4, layout="bhw").numpy(), base.numpy(), rtol=1e-8,
                               atol=1e-10)
    np.testing.assert_allclose(slrx(cube.float(), block_size=4, layout="bhw").numpy(), base.numpy(), rtol=1e-4,
                               atol=1e-6)


def test_maps_are_distances_in_unit_product():
    cube = torch.from_numpy(np.random.default_rng(4).normal(size=(8, 12, 12)))
    maps = slrx_maps(cube, 3, layout="bhw")
    assert set(maps) == {"block", "sur", "full"}
    assert all(bool((m >= 0).all()) for m in maps.values())
    score = slrx(cube, block_size=3, layout="bhw")
    assert float(score.min()) >= 0 and float(score.max()) <= 1


def test_woodbury_own_block_equals_plain_inverse():
    """d_block^2 from the M x M Gram form equals the B x B plain inverse of the spec (M = 9 < B = 30)."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=(9, 30)) * 0.01
    z -= z.mean(axis=0)
    ridge = 1e-6
    cov = z.T @ z / 8 + ridge * np.eye(30)
    ref = np.einsum("ib,bc,ic->i", z, np.linalg.inv(cov), z)
    got = own_block_sq(torch.from_numpy(z), torch.tensor(9.0, dtype=torch.float64), ridge).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-8)


def test_block_size_quirk_6_and_clean_option():
    assert resolve_block_size(200, 100, 100) == 8          # 200 // 25: from the bands, not the height
    assert resolve_block_size(50, 100, 100) == 2
    assert resolve_block_size(200, 100, 100, block_num=10) == 20
    assert resolve_block_size(200, 100, 100, block_size=12) == 12  # pixels, overrides block_num
    grid = BlockGrid(8, 100, 100)
    assert (grid.rows, grid.cols, grid.smallest_block) == (13, 13, (4, 4))


@pytest.mark.parametrize("kwargs,message,works", [
    ({"block_num": 150}, "block_num=150 gives a block size of 200 // 150 = 1 px", {"block_num": 100}),
    ({"block_num": 0}, "block_num=0: must be a positive integer", None),
    ({"block_size": 100}, "single 100 x 100 block with no neighbour", {"block_size": 98}),
    ({"block_size": 0}, "block_size=0: must be a positive number of pixels", None),
])
def test_bad_block_sizes_say_what_works(kwargs, message, works):
    cube = torch.rand(200, 100, 100)
    with pytest.raises(ValueError) as err:
        resolve_block_size(200, 100, 100, **kwargs)
    assert message in str(err.value)
    if works:  # the suggested value is named in the message, and it does work
        flag, value = next(iter(works.items()))
        assert f"use {flag}={value}" in str(err.value)
        assert resolve_block_size(200, 100, 100, **works) >= 2
    with pytest.raises(ValueError):
        slrx(cube[:, :1, :1], **kwargs, layout="bhw")


def test_corner_block_of_one_pixel_is_refused():
    """101 x 101 with 4 px blocks leaves a 1 x 1 corner block: no covariance from one pixel."""
    with pytest.raises(ValueError, match=r"blocks of 1 x 1 pixel .* use block_size=3"):
        resolve_block_size(200, 101, 101, block_size=4)


def test_reference_aucs_on_abu(abu_dir, release_dir):
    """method sec. 4 SLRX with block_num 25 reproduces ../shared/reference/README.md to 4 decimals."""
    from data.preprocess import preprocess
    from data.scene import read_scene
    from evaluation.metrics import roc_auc
    from weights.release import load_fen

    from detectors.reference import REFERENCE_SLRX_AUCS

    fen = load_fen("aviris", 200, release_dir)
    for name, (plain, enhanced) in REFERENCE_SLRX_AUCS.items():
        scene = read_scene(abu_dir / f"{name}.mat")
        x = preprocess(scene.cube, 200)
        assert round(roc_auc(slrx(x, layout="bhw").numpy(), scene.mask), 4) == plain
        enhanced_x = fen.enhance(x, normalize=False, layout="bhw")
        assert round(roc_auc(slrx(enhanced_x, layout="bhw").numpy(), scene.mask), 4) == enhanced


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu():
    cube = torch.from_numpy(np.random.default_rng(6).normal(size=(40, 30, 30)))
    np.testing.assert_allclose(slrx(cube.cuda(), block_num=10, layout="bhw").cpu().numpy(),
                               slrx(cube, block_num=10, layout="bhw").numpy(), rtol=1e-7, atol=1e-9)
