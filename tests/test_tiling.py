"""Scenes in tiles (pipeline/): the same score maps and AUCs as whole scenes, memory-mapped readers,
the streaming checks, the tile plan, and FEN batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import pipeline_on, plot_scene

from data.preprocess import DataError, preprocess
from data.scene import MatlabCube, _load_mat, read_scene
from data.synthetic import mask_png
from detectors.registry import DetectorOptions
from detectors.rx import grx
from detectors.slrx import slrx
from evaluation.metrics import roc_auc
from model.fen import FEN, FEN_HALO, fold_batchnorm, fused_forward_window
from pipeline.plan import TilePlan, plan_scene
from pipeline.run import Pipeline
from detectors.base import CubeReader, reflect_index, reflected_window
from pipeline.sources import SceneCube
from utils.device import full_fp32, torch_threads
from utils.errors import DetectorError
from utils.memory import release_pages
from weights.release import load_fen

DETECTORS = ["GRX", "FEN+GRX", "SLRX", "FEN+SLRX"]
#: Small tiles everywhere, both cubes streamed from files: FEN tiles of 24 px (5 x 5 tiles on a
#: 100 x 100 scene, most with real neighbours as halo), SLRX strips of 2 block rows, LRX strips of 16 rows.
SMALL_TILES = TilePlan(fen_tile=24, input_in_memory=False, enhanced_in_memory=False, budget=0, working=0,
                       strips={"SLRX": 2, "LRX": 16})


def _npy_scene(tmp_path, cube: np.ndarray, mask: np.ndarray, name: str = "scene"):
    np.save(tmp_path / f"{name}.npy", cube)
    mask_png(mask).save(tmp_path / f"{name}.png")
    return read_scene(tmp_path / f"{name}.npy")


def _runs(scene, bands, detectors, fen, plan=None, options=DetectorOptions(), device=torch.device("cpu")):
    source = SceneCube(scene.cube, bands, 0, scene.name)
    source.check()
    pipeline = pipeline_on(plan, detectors, fen, options, device) if plan else Pipeline(detectors, fen, options, device)
    return next(iter(pipeline.run([source])))


def _assert_same(tiled, whole, mask):
    for name, ref in whole.maps.items():
        got = tiled.maps[name]
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max(), err_msg=name)
        assert roc_auc(got, mask) == roc_auc(ref, mask), name


@pytest.mark.parametrize("weights,bands", [("had100", 200), ("had100", 50)])
def test_real_scene_whole_and_in_small_tiles_give_the_same_maps(weights, bands, abu_dir, release_dir, tmp_path):
    """abu-airport-2 as a memory-mapped .npy: whole (one FEN tile, everything in memory) against 24 px FEN
    tiles, 2-block-row SLRX strips and both cubes streamed from files."""
    real = read_scene(abu_dir / "abu-airport-2.mat")
    scene = _npy_scene(tmp_path, np.ascontiguousarray(real.cube[:, :, :bands]), real.mask)
    assert isinstance(scene.cube, np.memmap)
    fen = load_fen(weights, bands, release_dir)
    with torch_threads(2):
        whole = _runs(scene, bands, DETECTORS, fen)
        tiled = _runs(scene, bands, DETECTORS, fen, SMALL_TILES)
    assert whole.plan.fen_tile >= 100 and whole.plan.input_in_memory and whole.plan.enhanced_in_memory
    _assert_same(tiled, whole, scene.mask)
    # and the whole-scene run is the plain detectors on the preprocessed cube
    x = preprocess(real.cube, bands)
    np.testing.assert_allclose(whole.maps["GRX"], grx(x, layout="bhw").numpy(), rtol=1e-6,
                               atol=1e-6 * whole.maps["GRX"].max())
    np.testing.assert_allclose(whole.maps["SLRX"], slrx(x, layout="bhw").numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_real_scene_in_small_tiles_on_cuda(abu_dir, release_dir, tmp_path):
    """The tiled pipeline on CUDA (full float32, as test.py runs): the whole-scene maps in small tiles, and the
    AUCs of the CPU to 4 decimals (float32 sums run in another order on the GPU)."""
    real = read_scene(abu_dir / "abu-airport-2.mat")
    scene = _npy_scene(tmp_path, np.ascontiguousarray(real.cube[:, :, :200]), real.mask)
    fen = load_fen("had100", 200, release_dir)
    cuda = torch.device("cuda")
    full_fp32(cuda)
    whole = _runs(scene, 200, DETECTORS, fen.to(cuda), device=cuda)
    tiled = _runs(scene, 200, DETECTORS, fen, SMALL_TILES, device=cuda)
    cpu = _runs(scene, 200, DETECTORS, fen.cpu())
    for name, ref in whole.maps.items():
        np.testing.assert_allclose(tiled.maps[name], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max(), err_msg=name)
        for other in (tiled, cpu):
            assert round(roc_auc(other.maps[name], scene.mask), 4) == round(roc_auc(ref, scene.mask), 4), name


def test_lrx_whole_and_in_strips(tmp_path):
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(40, 37, 12)).astype(np.float32)
    mask = np.zeros((40, 37), bool)
    mask[10:12, 20:22] = True
    scene = _npy_scene(tmp_path, cube, mask)
    options = DetectorOptions(lrx_inner=3, lrx_outer=9)
    torch.manual_seed(0)
    fen = FEN(12).eval()
    whole = _runs(scene, 12, ["LRX", "FEN+LRX"], fen, options=options)
    tiled = _runs(scene, 12, ["LRX", "FEN+LRX"], fen, TilePlan(16, False, False, 0, 0, strips={"LRX": 7}), options=options)
    _assert_same(tiled, whole, mask)


def test_reflected_window_is_the_cwl_padding():
    cube = SceneCube.empty((9, 11, 3))
    cube.write(0, 0, np.arange(9 * 11 * 3, dtype=np.float32).reshape(9, 11, 3))
    padded = np.pad(cube.array, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    for r0, r1, c0, c1 in [(0, 9, 0, 11), (0, 4, 5, 11), (3, 7, 2, 6), (6, 9, 0, 3)]:
        got = reflected_window(cube, r0, r1, c0, c1, 4)
        np.testing.assert_array_equal(got, padded[r0: r1 + 8, c0: c1 + 8])
    np.testing.assert_array_equal(reflect_index(np.arange(-3, 12), 9), [3, 2, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 7, 6, 5])


def test_fen_window_equals_whole_scene_forward():
    torch.manual_seed(0)
    fen = FEN(10).eval()
    x = torch.rand(1, 10, 30, 26) * 0.2 - 0.1
    with torch.no_grad():
        whole = fen(x)
        padded = torch.nn.functional.pad(x, (FEN_HALO,) * 4, mode="reflect")
        tile = fen.forward_window(padded[:, :, 5: 5 + 12 + 2 * FEN_HALO, 7: 7 + 9 + 2 * FEN_HALO])
    torch.testing.assert_close(tile, whole[:, :, 5:17, 7:16], rtol=1e-5, atol=1e-6)


def test_fen_output_for_mixfs_in_tiles_equals_the_whole_scene_forward():
    """--save_mat's FEN(x) comes from the FEN in tiles (no whole-scene activations): FEN(x) of the whole
    preprocessed cube, >= 0 (quirk 5), and not x + FEN(x)."""
    torch.manual_seed(0)
    fen = FEN(10).eval()
    cube = np.random.default_rng(4).random((40, 34, 10)).astype(np.float32)
    source = SceneCube(cube, 10, 0, "scene")
    source.check()
    x = source.tensor()
    with torch.no_grad():
        whole = fen(x[None])[0].numpy()
    tiled = pipeline_on(SMALL_TILES, ["FEN+GRX"], fen, DetectorOptions(), torch.device("cpu")).fen_output(source)
    assert tiled.shape == (10, 40, 34) and tiled.dtype == np.float32 and tiled.min() >= 0
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6 * np.abs(whole).max())


def test_source_blocks_are_the_preprocessed_cube_bit_for_bit(tmp_path):
    rng = np.random.default_rng(1)
    cube = (rng.random((23, 17, 9)) * 1000).astype(np.int16)
    source = SceneCube(cube, 6, 2, "c")
    source.check()
    expected = preprocess(cube, 6, 2).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(source.block(0, 23), expected)
    np.testing.assert_array_equal(source.block(5, 11, 3, 8), expected[5:11, 3:8])
    assert torch.equal(source.tensor(), preprocess(cube, 6, 2))


def test_streaming_check_refuses_like_check_cube(monkeypatch):
    import pipeline.sources as sources

    monkeypatch.setattr(sources, "SCAN_BYTES", 8 * 5 * 4)  # one row per scan block: the streaming path
    cube = np.ones((6, 5, 4), np.float32)
    with pytest.raises(DataError, match="the cube is constant in the bands used"):
        SceneCube(cube, 4, 0, "flat").check()
    cube[2, 3, 1] = np.nan   # nodata (data/nodata.py): left out, not refused
    cube[4, 0, 0] = np.inf   # an overflow: refused
    with pytest.raises(DataError, match="flat: 1 NaN/Inf values in the bands used"):
        SceneCube(cube, 4, 0, "flat").check()
    with pytest.raises(DataError, match="has 4 bands, fewer than start=1 \\+ bands=4"):
        SceneCube(cube, 4, 1, "flat").check()
    cube[:] = np.arange(120, dtype=np.float32).reshape(6, 5, 4)
    source = SceneCube(cube, 3, 1, "ok")
    source.check()
    assert (source.lo, source.hi) == (1.0, 119.0)


def test_plan_tiles_what_does_not_fit_and_refuses_what_cannot():
    options = DetectorOptions()
    small = plan_scene((100, 100, 200), DETECTORS, options, 4 << 30)
    assert small.fen_tile >= 100 and small.input_in_memory and small.enhanced_in_memory
    big = plan_scene((2048, 2048, 200), DETECTORS, options, 4 << 30)
    assert big.fen_tile < 2048 and big.strips["SLRX"] < 256
    assert not (big.input_in_memory and big.enhanced_in_memory)   # 2 x 3.2 GB cubes cannot both be held
    tight = plan_scene((2048, 2048, 200), DETECTORS, options, 1 << 30)
    assert not tight.input_in_memory and not tight.enhanced_in_memory and tight.working <= 1 << 30
    with pytest.raises(DetectorError, match="memory budget is 0.0 GiB"):
        plan_scene((2048, 2048, 200), DETECTORS, options, 16 << 20)


def test_fen_plan_on_cuda_counts_one_tile_in_flight(monkeypatch):
    """On a GPU the FEN runs one tile at a time (pipeline.fen_tiles.fen_workers), on the CPU one per thread. The
    plan counted a tile per thread on every device: on a 16-thread GPU host a 2048 x 2048 x 200 scene's FEN looked
    like 3 GB instead of about 190 MB at the default 4 GiB budget, its tiles shrank and the enhanced cube went to
    a temporary file. Planning needs no GPU: a ``torch.device('cuda')`` object is enough."""
    import pipeline.run
    from pipeline.plan import FEN_TILE, fen_window_bytes

    monkeypatch.setattr(pipeline.run, "memory_budget", lambda max_memory_gb=None: 4 << 30)
    shape = (2048, 2048, 200)
    with torch_threads(16):
        on = {kind: Pipeline(["GRX", "FEN+GRX"], None, DetectorOptions(), torch.device(kind)).plan(shape)
              for kind in ("cuda", "cpu")}
    one_tile = fen_window_bytes(FEN_TILE, FEN_TILE, 200)
    assert 180e6 < one_tile < 200e6
    assert on["cuda"].fen_tile == FEN_TILE and on["cuda"].enhanced_in_memory
    assert on["cuda"].working < one_tile + 8 * 2048 * 2048 * 4 < on["cpu"].working
    assert on["cpu"].fen_tile < FEN_TILE and not on["cpu"].enhanced_in_memory  # 16 tiles at once on the CPU
    assert plan_scene(shape, ["GRX", "FEN+GRX"], DetectorOptions(), 4 << 30, device="cuda") == on["cuda"]


def test_check_memory_refuses_only_what_tiling_cannot_fit(monkeypatch):
    import pipeline.plan as plan

    monkeypatch.setattr(plan, "available_memory", lambda device="cpu": 2 << 30)
    shape = (2048, 2048, 200)  # (H, W, B): 3.2 GB a cube, far above 2 GiB whole
    for name in DETECTORS:
        assert plan.check_memory(name, shape) > 2 << 30
    monkeypatch.setattr(plan, "available_memory", lambda device="cpu": 64 << 20)
    with pytest.raises(DetectorError, match="even in the smallest tiles"):
        plan.check_memory("SLRX", shape)


def test_fen_batches_equal_single_scenes(tmp_path):
    """HAD100-style same-size scenes go through the FEN together: the maps are those of one at a time."""
    rng = np.random.default_rng(2)
    scenes = []
    for i in range(3):
        mask = np.zeros((24, 24), bool)
        mask[5 + i: 7 + i, 9:11] = True
        scenes.append(_npy_scene(tmp_path, rng.random((24, 24, 14)).astype(np.float32), mask, f"s{i}"))
    torch.manual_seed(0)
    fen = FEN(14).eval()
    sources = [SceneCube(s.cube, 14, 0, s.name) for s in scenes]
    batched = list(Pipeline(["FEN+GRX"], fen, DetectorOptions(), torch.device("cpu"), batch=3).run(sources))
    single = list(Pipeline(["FEN+GRX"], fen, DetectorOptions(), torch.device("cpu"), batch=1).run(sources))
    for b, s in zip(batched, single):
        np.testing.assert_allclose(b.maps["FEN+GRX"], s.maps["FEN+GRX"], rtol=1e-6, atol=1e-9)
    assert len(batched) == 3


def test_memory_mapped_readers(tmp_path):
    import h5py
    from spectral.io import envi

    rng = np.random.default_rng(3)
    cube = rng.random((12, 10, 5)).astype(np.float32)
    mask = np.zeros((12, 10), bool)
    mask[2, 3] = True
    assert isinstance(_npy_scene(tmp_path, cube, mask).cube, np.memmap)
    envi.save_image(str(tmp_path / "e.hdr"), cube, interleave="bsq", ext=".img")
    mask_png(mask).save(tmp_path / "e.png")
    e = read_scene(tmp_path / "e.hdr")
    assert isinstance(e.cube, np.memmap) and e.cube.shape == (12, 10, 5)
    np.testing.assert_array_equal(e.cube[3:7, 2:9], cube[3:7, 2:9])
    release_pages(e.cube)  # pages dropped, data still there
    np.testing.assert_array_equal(np.asarray(e.cube), cube)
    with h5py.File(tmp_path / "m.mat", "w", userblock_size=512) as f:  # MATLAB v7.3 layout: axes reversed
        f["data"] = cube.T
        f["map"] = mask.astype(np.uint8).T
    m = read_scene(tmp_path / "m.mat")
    assert isinstance(m.cube, MatlabCube) and m.cube.shape == (12, 10, 5)
    np.testing.assert_array_equal(m.cube[3:7, 2:9, 1:4], cube[3:7, 2:9, 1:4])
    np.testing.assert_array_equal(m.cube[-1, ..., 2], cube[-1, ..., 2])
    np.testing.assert_array_equal(np.asarray(m.cube), cube)
    np.testing.assert_array_equal(m.mask, mask)
    assert np.array_equal(_load_mat(tmp_path / "m.mat")["data"], cube)  # eager reading is unchanged


def test_folded_batchnorm_matches_the_module_and_leaves_it_unfused(release_dir, golden):
    fen = load_fen("had100", 50, release_dir)
    folded = fold_batchnorm(fen)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in fen.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.from_numpy(golden["had100-50/input"])[None]
    with torch.no_grad():
        torch.testing.assert_close(folded(x), fen(x), rtol=1e-4, atol=1e-5)
        # the fused oneDNN kernels give the folded module's numbers (channels-last, as the pipeline runs them)
        window = torch.nn.functional.pad(x, (FEN_HALO,) * 4, mode="reflect").contiguous(memory_format=torch.channels_last)
        folded = folded.to(memory_format=torch.channels_last)
        torch.testing.assert_close(fused_forward_window(folded, window), folded.forward_window(window),
                                   rtol=1e-6, atol=1e-6)


def test_big_scenes_are_drawn_reduced(tmp_path):
    from PIL import Image

    from evaluation.plots import block_max, reduction, thin_curve

    assert reduction(100, 100) == 1 and reduction(2048, 2048) == 4 and reduction(1100, 300) == 3
    image = np.zeros((7, 5))
    image[6, 4] = 1.0  # one pixel in the last, partial block
    reduced = block_max(image, 3)
    assert reduced.shape == (3, 2) and reduced[2, 1] == 1.0 and reduced.sum() == 1.0
    pf = np.linspace(0, 1, 100_001) ** 3
    tpf, tpd = thin_curve(np.maximum(pf, 1e-6), np.sqrt(pf))
    assert len(tpf) <= 2002 and tpf[0] == 1e-6 and tpf[-1] == 1.0 and np.all(np.diff(tpf) >= 0)
    assert tpd[-1] == 1.0 and np.all(np.diff(tpd) >= 0)
    rng = np.random.default_rng(4)
    mask = np.zeros((1100, 600), bool)
    mask[500, 300] = True
    maps = {"GRX": rng.random((1100, 600)) + 5 * mask}
    maps_png, roc_png = plot_scene(tmp_path, "big", rng.random((1100, 600, 6)).astype(np.float32), mask, maps,
                                   {"GRX": 1.0})
    with Image.open(maps_png) as img:
        assert img.width < 1200 and img.height < 600


@pytest.mark.parametrize("dtype", [np.uint16, np.float16, np.bool_, np.float64])
def test_source_blocks_of_any_dtype(dtype):
    rng = np.random.default_rng(5)
    values = rng.random((9, 7, 5))
    cube = (values > 0.5) if dtype == np.bool_ else (values * 3000).astype(dtype)
    source = SceneCube(cube, 5, 0, "c")
    source.check()
    np.testing.assert_array_equal(source.block(0, 9), preprocess(cube, 5).permute(1, 2, 0).numpy())


def test_slrx_in_tiles_of_blocks_equals_the_whole_image(abu_dir):
    from detectors.slrx import slrx_maps, slrx_maps_streamed

    x = preprocess(read_scene(abu_dir / "abu-airport-1.mat").cube, 200)[:, :90, :]   # 12 x 13 blocks of 8 px
    whole = slrx_maps(x, 8, layout="bhw")
    # 3 x 5 tiles, the last ones partial
    tiled = slrx_maps_streamed(CubeReader(x.permute(1, 2, 0)), 8, strip_blocks=5, tile_columns=3)
    for key in whole:
        torch.testing.assert_close(tiled[key], whole[key], rtol=1e-9, atol=1e-9 * float(whole[key].max()))
