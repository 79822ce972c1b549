"""CRD (detectors/crd.py): equal to the per-pixel oracle on every pixel (periodic borders included), more
accurate than it where its N x N system is nearly singular, strips equal to the whole scene, one-line
errors naming the parameter, and the AUC on a real scene."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from detectors.base import CubeReader
from detectors.crd import (CRD, chunk_pixels, crd, crd_memory_bytes, crd_window, mirror_index, mirror_pad,
                           periodic_pad)
from detectors.reference import crd_per_pixel, minmax
from utils.device import torch_threads
from utils.errors import DetectorError

pytestmark = pytest.mark.usefixtures("one_thread")


def random_cube(bands: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(bands, height, width))


def assert_matches_oracle(got: np.ndarray, ref: np.ndarray, well_posed: bool) -> None:
    """With more background pixels than bands + 1 the fit is nearly exact and the oracle's N x N system
    nearly singular: the oracle itself is off by up to a few 1e-8 (see the 50-digit test), so 1e-7 there."""
    assert got.shape == ref.shape and np.isfinite(got).all()
    rtol = 1e-10 if well_posed else 1e-7
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


@pytest.mark.parametrize("bands,height,width,inner,outer,chunk", [
    (6, 12, 13, 3, 7, None),     # N = 40 > B + 1: the push-through form
    (6, 12, 13, 3, 7, 7),        # the same in blocks of 7 pixels (the last one shorter)
    (12, 12, 13, 1, 3, None),    # N = 8 < B + 1 = 13: the N x N form
    (20, 11, 12, 1, 5, 5),       # N = 24 > 21
])
def test_equals_oracle_on_every_pixel(bands, height, width, inner, outer, chunk):
    cube = random_cube(bands, height, width, seed=bands + outer)
    ref = crd_per_pixel(cube, inner, outer)
    got = crd(torch.from_numpy(cube), inner, outer, chunk=chunk, layout="bhw").numpy()
    r = outer // 2
    border = np.ones((height, width), bool)
    border[r:-r, r:-r] = False  # pixels whose window wraps around (periodic)
    well_posed = bands + 1 >= outer * outer - inner * inner
    assert_matches_oracle(got[border], ref[border], well_posed)
    assert_matches_oracle(got, ref, well_posed)


def exact_score(x: np.ndarray, i: int, j: int, inner: int, outer: int, lam: float) -> float:
    """CRD of pixel (i, j) of min-maxed ``(H, W, B)`` pixels from the N x N system solved with 50 digits."""
    mpmath.mp.dps = 50
    h, w, _ = x.shape
    r, ri = outer // 2, inner // 2
    bg = [x[(i + di) % h, (j + dj) % w] for di in range(-r, r + 1) for dj in range(-r, r + 1)
          if max(abs(di), abs(dj)) > ri]
    xa = mpmath.matrix([list(v) + [1] for v in bg]).T                      # (B + 1, N)
    ya = mpmath.matrix(list(x[i, j]) + [1])
    g = xa.T * xa
    for n, v in enumerate(bg):
        g[n, n] += mpmath.mpf(lam) * sum((mpmath.mpf(a) - b) ** 2 for a, b in zip(v, x[i, j]))
    residual = ya - xa * mpmath.lu_solve(g, xa.T * ya)
    return float(mpmath.norm(residual[:-1, 0]))                           # y - X alpha: the B bands


def test_more_accurate_than_the_oracle():
    """On a 50-digit solution: CRD to 1e-12, where the N x N double-precision oracle is off by ~1e-9."""
    cube = random_cube(6, 12, 13)
    got = crd(torch.from_numpy(cube), 3, 7, layout="bhw").numpy()
    x = minmax(cube).transpose(1, 2, 0)
    for i, j in [(0, 0), (5, 6), (11, 12)]:
        assert got[i, j] == pytest.approx(exact_score(x, i, j, 3, 7, 1e-6), rel=1e-12)


def test_strips_equal_the_whole_scene():
    """crd_window on row strips (with r rows of periodic context read modulo H) gives the whole-scene rows."""
    cube = torch.from_numpy(random_cube(8, 17, 14, seed=3))
    inner, outer, r = 1, 5, 2
    whole = crd(cube, inner, outer, layout="bhw")
    lo, span = cube.min(), cube.max() - cube.min()
    padded = periodic_pad(cube, r)
    for r0, r1 in [(0, 5), (5, 12), (12, 17)]:
        strip = crd_window(padded[:, r0:r1 + 2 * r], lo, span, inner, outer)
        np.testing.assert_allclose(strip.numpy(), whole[r0:r1].numpy(), rtol=1e-12)
        # what the pipeline will read from a stored cube: rows r0 - r .. r1 + r - 1 and columns -r .. W + r - 1,
        # each modulo the scene's size
        rows = np.arange(r0 - r, r1 + r) % 17
        cols = np.arange(-r, 14 + r) % 14
        window = cube[:, rows][:, :, cols]
        np.testing.assert_allclose(crd_window(window, lo, span, inner, outer).numpy(), strip.numpy(), rtol=1e-12)


@given(bands=st.integers(1, 9), height=st.integers(3, 9), width=st.integers(3, 9),
       windows=st.sampled_from([(1, 3), (1, 5), (3, 5), (1, 7)]), seed=st.integers(0, 2 ** 16))
def test_hypothesis_small_shapes_equal_the_oracle(bands, height, width, windows, seed):
    inner, outer = windows
    if outer > min(height, width):
        with pytest.raises(DetectorError, match="is larger than the"):
            crd(torch.zeros(bands, height, width), inner, outer, layout="bhw")
        return
    cube = random_cube(bands, height, width, seed)
    got = crd(torch.from_numpy(cube), inner, outer, layout="bhw").numpy()
    assert_matches_oracle(got, crd_per_pixel(cube, inner, outer), bands + 1 >= outer * outer - inner * inner)


def test_affine_changes_of_the_raw_cube_do_not_matter():
    """The global min-max removes them. The min-maxed values' shift and scale do matter (the row of ones
    and lam are not rescaled): a shift changes the scores slightly (not exactly invariant), a scale about
    proportionally -- which is why crd_window takes the whole scene's lo and span."""
    cube = torch.from_numpy(random_cube(6, 12, 13, seed=5))
    base = crd(cube, 1, 5, layout="bhw").numpy()
    np.testing.assert_allclose(crd(3.5 * cube - 20.0, 1, 5, layout="bhw").numpy(), base, rtol=1e-9)
    padded = periodic_pad(cube, 2)
    lo, span = cube.min(), cube.max() - cube.min()
    np.testing.assert_allclose(crd_window(padded, lo, span, 1, 5).numpy(), base, rtol=1e-12)
    shifted = crd_window(padded, lo - 0.5 * span, span, 1, 5).numpy()
    assert 1e-7 < np.max(np.abs(shifted - base) / base) < 1e-3
    np.testing.assert_allclose(crd_window(padded, lo, 2 * span, 1, 5).numpy(), base / 2, rtol=1e-5)


def test_a_pixel_with_a_copy_in_its_background_scores_zero():
    """Gamma is 0 at the copy: alpha = its indicator fits exactly at no cost, the minimum; the oracle agrees."""
    cube = random_cube(6, 12, 13, seed=2)
    cube[:, 6, 8] = cube[:, 4, 5]                 # (4, 5) is in the background of (6, 8) for windows 3 / 7
    got = crd(torch.from_numpy(cube), 3, 7, layout="bhw").numpy()
    ref = crd_per_pixel(cube, 3, 7)
    assert got[6, 8] == 0.0 and got[4, 5] == 0.0 and abs(ref[6, 8]) < 1e-8 * ref.max()
    others = np.ones(got.shape, bool)
    others[[6, 4], [8, 5]] = False
    assert_matches_oracle(got[others], ref[others], False)


@pytest.mark.parametrize("inner,outer,lam,shape,message", [
    (3, 31, 1e-6, (20, 20), "CRD outer window crd_outer=31 is larger than the 20 x 20 scene: use crd_outer=19 or less"),
    (3, 11, 1e-6, (10, 12), "use crd_outer=9 or less"),
    (5, 9, 1e-6, (4, 40), "the scene is too small for crd_inner=5"),
    (4, 11, 1e-6, (50, 50), "crd_inner=4: windows must be odd and positive"),
    (3, 10, 1e-6, (50, 50), "crd_outer=10: windows must be odd"),
    (11, 11, 1e-6, (50, 50), "crd_inner=11 must be smaller than crd_outer=11 (use crd_outer=13 or more)"),
    (3, 11, -1.0, (50, 50), "crd_lambda=-1.0: must be a finite number >= 0"),
    (3, 11, float("nan"), (50, 50), "crd_lambda=nan: must be a finite number >= 0"),
])
def test_errors_are_one_line_and_name_the_parameter(inner, outer, lam, shape, message):
    with pytest.raises(DetectorError) as err:
        crd(torch.rand(3, *shape), inner, outer, lam, layout="bhw")
    text = str(err.value)
    assert message in text and "\n" not in text and "--" not in text


def test_blocks_and_memory_estimate():
    assert chunk_pixels(200, 3, 11, "cpu") >= 1 and chunk_pixels(50, 3, 11, "cuda") > chunk_pixels(50, 3, 11, "cpu")
    small, big = crd_memory_bytes(50, 64, 64), crd_memory_bytes(200, 1000, 1000)
    assert 0 < small < 64 << 20 and big > 2 * 8 * 1010 * 1010 * 200       # two padded float64 cubes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu():
    cube = torch.from_numpy(random_cube(40, 30, 30, seed=7))
    for inner, outer in [(3, 11), (1, 5)]:          # push-through (N = 112 > 41) and N x N (N = 24 < 41)
        for border, sum_to_one in CODES:
            np.testing.assert_allclose(crd(cube.cuda(), inner, outer, border=border, sum_to_one=sum_to_one, layout="bhw").cpu(),
                                       crd(cube, inner, outer, border=border, sum_to_one=sum_to_one, layout="bhw"), rtol=1e-9)
    # the pseudo-inverse of the singular systems (lam = 0, repeated spectra in mirrored backgrounds) on the GPU
    small = cube[:30, :10, :11]
    np.testing.assert_allclose(crd(small.cuda(), 1, 5, 0.0, border="mirror", sum_to_one=False, layout="bhw").cpu(),
                               crd(small, 1, 5, 0.0, border="mirror", sum_to_one=False, layout="bhw"), rtol=1e-9, atol=1e-12)


def test_airport_1_auc_and_oracle_on_a_crop(abu_dir):
    """First 50 bands of abu-airport-1, windows 3 / 11: the whole-scene AUC, and the oracle on a 20 x 20 crop."""
    from data.preprocess import preprocess
    from data.scene import read_scene
    from evaluation.metrics import roc_auc

    scene = read_scene(abu_dir / "abu-airport-1.mat")
    x = preprocess(scene.cube, 50)
    assert round(roc_auc(crd(x, layout="bhw").numpy(), scene.mask), 4) == AIRPORT_1_AUC
    crop = x[:, 40:60, 30:50]
    assert_matches_oracle(crd(crop, layout="bhw").numpy(), crd_per_pixel(crop.numpy().astype(np.float64)), False)


#: Measured with windows 3 / 11, lam 1e-6, on the first 50 bands.
AIRPORT_1_AUC = 0.8895
#: The same with mirrored borders and no row of ones (func_CRD.m), measured. Not the 0.8168 of issue 34:
#: that is func_CRD.m's ``pinv(M) * X' * y`` evaluated literally in numpy, whose rounding at M's condition
#: of about 1e13 moves some scores by up to 21x (README, CRD); this equals the lstsq oracle's map with the
#: exact copies of a pixel in its own background at their exact 0.
AIRPORT_1_FUNC_CRD_AUC = 0.8185


def test_scores_do_not_depend_on_the_worker_threads():
    cube = torch.from_numpy(random_cube(8, 14, 15, seed=9))
    with torch_threads(1):
        one = crd(cube, 1, 5, chunk=7, layout="bhw")
    with torch_threads(3):
        three = crd(cube, 1, 5, chunk=7, layout="bhw")
    assert torch.equal(one, three)


CODES = [("periodic", True), ("periodic", False), ("mirror", True), ("mirror", False)]


@pytest.mark.parametrize("border,sum_to_one", CODES)
@pytest.mark.parametrize("bands,inner,outer", [(6, 3, 7), (12, 1, 3), (20, 1, 5)])
def test_both_codes_equal_the_oracle(border, sum_to_one, bands, inner, outer):
    """Li and Du's code (periodic, row of ones), func_CRD.m (mirror, none) and the two mixes, every pixel."""
    cube = random_cube(bands, 12, 13, seed=bands + outer)
    ref = crd_per_pixel(cube, inner, outer, border=border, sum_to_one=sum_to_one)
    got = crd(torch.from_numpy(cube), inner, outer, border=border, sum_to_one=sum_to_one, layout="bhw").numpy()
    assert_matches_oracle(got, ref, bands + 1 >= outer * outer - inner * inner)


@given(size=st.integers(1, 9), halo=st.integers(0, 9))
def test_mirror_index_is_numpy_symmetric_padding(size, halo):
    halo = min(halo, size)
    index = mirror_index(torch.arange(-halo, size + halo), size).numpy()
    np.testing.assert_array_equal(index, np.pad(np.arange(size), halo, mode="symmetric"))


def test_mirror_pad_repeats_the_edge():
    """func_CRD.m's tiling: the flipped image beside the image, so the pixel beyond the edge is the edge."""
    cube = torch.arange(12.0).reshape(1, 3, 4)
    np.testing.assert_array_equal(mirror_pad(cube, 2)[0].numpy(),
                                  np.pad(cube[0].numpy(), 2, mode="symmetric"))


def test_mirror_puts_the_pixel_itself_in_its_background():
    """With windows 3 / 7, the pixel 1 px from the border sees itself 3 px out (row -2 is row 1): an exact fit,
    score 0, where the oracle's least squares leaves a rounding residue."""
    cube = random_cube(6, 12, 13, seed=4)
    got = crd(torch.from_numpy(cube), 3, 7, border="mirror", sum_to_one=False, layout="bhw").numpy()
    ref = crd_per_pixel(cube, 3, 7, border="mirror", sum_to_one=False)
    assert (got[1] == 0).all() and (got[:, 1] == 0).all() and (got[-2] == 0).all() and (got[3:-3, 3:-3] > 0).all()
    assert np.abs(ref[1]).max() < 1e-6 * ref.max()


def repeated_backgrounds(height: int, width: int, inner: int, outer: int) -> int:
    """Pixels whose mirrored background (func_CRD.m's) holds a scene pixel twice."""
    r, ri = outer // 2, inner // 2
    rows = np.pad(np.arange(height), r, mode="symmetric")
    cols = np.pad(np.arange(width), r, mode="symmetric")
    return sum(len({(rows[r + i + di], cols[r + j + dj]) for di in range(-r, r + 1) for dj in range(-r, r + 1)
                    if max(abs(di), abs(dj)) > ri}) < outer * outer - inner * inner
               for i in range(height) for j in range(width))


@pytest.mark.parametrize("border", ["periodic", "mirror"])
def test_singular_systems_take_the_pseudo_inverse(border, monkeypatch):
    """lam = 0 with more bands than background pixels: the N x N system X^T X is singular wherever the mirror
    puts a spectrum twice in a background. Those pixels, and only those, take the pseudo-inverse, as
    func_CRD.m, and equal the oracle's minimum-norm solution; the others a Cholesky solve."""
    import detectors.crd as module

    solved = []
    pinv = module._residual_pinv
    monkeypatch.setattr(module, "_residual_pinv", lambda xa, *rest: solved.append(len(xa)) or pinv(xa, *rest))
    cube = random_cube(30, 10, 11, seed=6)
    got = crd(torch.from_numpy(cube), 1, 5, 0.0, border=border, sum_to_one=False, layout="bhw").numpy()
    ref = crd_per_pixel(cube, 1, 5, 0.0, border=border, sum_to_one=False)
    assert_matches_oracle(got, ref, True)
    assert sum(solved) == (0 if border == "periodic" else repeated_backgrounds(10, 11, 1, 5)) and (
        border == "periodic" or sum(solved) > 0)


@pytest.mark.parametrize("border,sum_to_one", CODES)
def test_strips_equal_the_whole_scene_for_both_codes(border, sum_to_one):
    """crd_window on strips of the padded cube, and the detector in strips of 4 rows through a reader (what the
    pipeline runs), give the whole scene's scores."""
    cube = torch.from_numpy(random_cube(8, 17, 14, seed=3))
    inner, outer, r = 1, 5, 2
    whole = crd(cube, inner, outer, border=border, sum_to_one=sum_to_one, layout="bhw")
    lo, span = cube.min(), cube.max() - cube.min()
    padded = (periodic_pad if border == "periodic" else mirror_pad)(cube, r)
    for r0, r1 in [(0, 5), (5, 12), (12, 17)]:
        strip = crd_window(padded[:, r0:r1 + 2 * r], lo, span, inner, outer, sum_to_one=sum_to_one)
        np.testing.assert_allclose(strip.numpy(), whole[r0:r1].numpy(), rtol=1e-12)
    options = type("Options", (), dict(crd_inner=inner, crd_outer=outer, crd_lambda=1e-6, crd_border=border,
                                       crd_sum_to_one=sum_to_one))
    single = cube.float()                 # readers give float32 windows, as the pipeline's preprocessed cubes
    strips = CRD.score_reader(CubeReader(single.permute(1, 2, 0)), 4, options)
    whole = crd(single, inner, outer, border=border, sum_to_one=sum_to_one, layout="bhw")
    np.testing.assert_allclose(strips.numpy(), whole.numpy(), rtol=1e-12)


def test_unknown_border_is_one_line():
    with pytest.raises(DetectorError, match="^crd_border=wrap: must be one of periodic, mirror$"):
        crd(torch.rand(3, 20, 20), border="wrap", layout="bhw")


def test_airport_1_func_crd_auc_and_oracle_on_a_crop(abu_dir):
    """func_CRD.m's options on the first 50 bands of abu-airport-1: the whole-scene AUC (module constant), and
    the oracle on a 20 x 20 crop (its mirrored borders included)."""
    from data.preprocess import preprocess
    from data.scene import read_scene
    from evaluation.metrics import roc_auc

    scene = read_scene(abu_dir / "abu-airport-1.mat")
    x = preprocess(scene.cube, 50)
    scores = crd(x, border="mirror", sum_to_one=False, layout="bhw").numpy()
    assert round(roc_auc(scores, scene.mask), 4) == AIRPORT_1_FUNC_CRD_AUC
    crop = x[:, 40:60, 30:50]
    got = crd(crop, border="mirror", sum_to_one=False, layout="bhw").numpy()
    ref = crd_per_pixel(crop.numpy().astype(np.float64), border="mirror", sum_to_one=False)
    # the mirror brings a pixel's nearest neighbours (1 px away, inside its guard window) back into its
    # background: spectra near y make the push-through system worse conditioned than with periodic borders,
    # and the detector is the less accurate one here (at the worst pixels of the whole scene the oracle equals
    # a 40-digit solution to 1e-8, the detector to 1e-5). Seen on this crop: 5.2e-6 of the peak at most
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * ref.max())
    # 1 and 2 px from the border a pixel sees itself in the mirror (3 and 5 px out): an exact fit, where the
    # oracle's least squares leaves a rounding residue (seen: 4.4e-8 of the peak)
    itself = np.zeros((20, 20), bool)
    itself[[1, 2, -3, -2]] = itself[:, [1, 2, -3, -2]] = True
    assert (got[itself] == 0).all() and np.abs(ref[itself]).max() < 1e-7 * ref.max()
