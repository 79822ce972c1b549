"""Hostile and odd inputs (issue 9): property-based tests of the readers, the detectors and test.py.

The property everywhere: a valid result (right shape, finite values) or the project's own error
(:class:`utils.errors.FerdError`) with a one-line message; never another exception. test.py turns every
such error into exit code 2 and one line ``test.py: error: ...`` on stderr, before writing anything.

Examples per test come from the hypothesis profile (tests/conftest.py): ``ci`` by default (few, the same
every run), ``HYPOTHESIS_PROFILE=thorough`` for many fresh ones.

Each property has a valid half (a scene read, a score computed, test.py's exit 0) as well as its refusals, and
the generators reach both: ``pytest --hypothesis-show-statistics tests/test_hostile.py`` counts them (the
``event`` calls). Under ``ci`` (25 examples each; 2026-12-05, this file as committed): the detectors on raw
cubes score GRX in 21, LRX in 12, SLRX in 10 (7, 1 and 0 of 25 before the plain half of :func:`cubes`);
valid files are read and preprocessed in 16 (4 before); the .npy and ENVI header properties in 8 and 7 (none
of 25 before); test.py exits 0 in 16 of 26 and 2 in 9 (exit 0 in 3 of 32 before). Hypothesis favours the ends of a range
or a list, so the choices that lead to a refusal sit away from the ends.
"""
from __future__ import annotations

import io
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import assume, event, given
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st
from PIL import Image
from conftest import raiser
from helpers import base_detector

from data.had100 import read_had100
from data.preprocess import INPUT_SCALE, DataError, check_cube, preprocess
from data.scene import read_scene
from data.synthetic import generate, mask_png
from detectors.lrx import lrx
from detectors.registry import FEN_PREFIX, DetectorOptions, base_name, check_detector
from detectors.rx import grx
from detectors.slrx import slrx
from model.fen import FEN
from utils.errors import FerdError
from weights.imagenet import TeacherError, teacher_state
from weights.release import WeightsError, load_fen, save_fen

DTYPES = [np.bool_, np.uint8, np.int16, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64,
          np.complex64]
#: How a cube's values are laid out: ordinary noise, degenerate layouts, and extreme magnitudes.
LAYOUTS = ["noise", "constant", "constant_band", "same_pixel", "two_spectra", "duplicate_rows", "huge", "extreme",
           "tiny", "integers"]
MASK_ENCODINGS = ["rgb255", "grey255", "grey01", "rgb01", "bit", "palette", "grey_alpha", "uint16"]
#: File starts that lead the parsers past their first check, so that random bytes reach deeper code.
MAGIC = {".npy": [b"", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00", b"PK\x03\x04", b"\x80\x04"],
         ".mat": [b"", b"MATLAB 5.0 MAT-file" + b" " * 97 + b"\x00\x01IM", b"\x89HDF\r\n\x1a\n"],
         ".pt": [b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04", b"\x89HDF\r\n\x1a\n", b"MATLAB 5.0"]}


def assert_one_line(err: BaseException) -> None:
    """The project's error type with a non-empty one-line message."""
    assert isinstance(err, FerdError), f"{type(err).__name__}: {err}"
    msg = str(err)
    assert msg and "\n" not in msg and "\r" not in msg, repr(msg)


def fresh_dir(root: Path) -> Path:
    """A new empty folder under ``root`` for one hypothesis example (tmp_path is shared by all of them)."""
    return Path(tempfile.mkdtemp(dir=root))


# ---- strategies --------------------------------------------------------------------------------------
@st.composite
def cubes(draw, max_side: int = 6, max_bands: int = 6, dtypes: list = DTYPES) -> np.ndarray:
    """An H x W x B array of any dtype in ``dtypes``, sides from 1, values laid out as one of :data:`LAYOUTS`,
    with NaN/Inf sometimes placed in it (floating dtypes).

    Half of them are plain instead: sides from 5, 2 bands or more, noise in a numeric dtype of ``dtypes``, no
    NaN/Inf, so that the properties reach their valid half (a scene read, a score computed) about as often as
    their refusals; the hostile half alone scored SLRX in none of 25."""
    plain = not draw(st.booleans())  # hypothesis starts from False: the plain ones first
    least = min(5, max_side) if plain else 1  # 5 x 5: the least scene the FEN takes
    h, w = draw(st.integers(least, max_side)), draw(st.integers(least, max_side))
    b = draw(st.integers(min(2, max_bands) if plain else 1, max_bands))
    numeric = [d for d in dtypes if np.dtype(d).kind in "iuf" and np.dtype(d) != np.float16]
    dtype = np.dtype(draw(st.sampled_from(numeric if plain and numeric else dtypes)))
    layout = "noise" if plain else draw(st.sampled_from(LAYOUTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(h, w, b)) * (30 if plain else 100) + (120 if plain else 500)  # plain: within uint8
    if layout == "constant":
        x[:] = 7.0
    elif layout == "constant_band":
        x[:, :, rng.integers(b)] = 3.0
    elif layout == "same_pixel":  # every pixel the same spectrum: nothing to detect, but not a constant cube
        x[:] = x[:1, :1]
    elif layout == "two_spectra":  # equal numbers of two spectra: SLRX's whole-image distance map is constant
        x = np.where((np.indices((h, w)).sum(0) % 2)[:, :, None] == 0, rng.normal(size=b), rng.normal(size=b))
    elif layout == "duplicate_rows":
        x[:] = x[:1]
    elif layout == "huge":
        x = x * 1e300
    elif layout == "extreme":  # both ends of float64: max - min overflows
        x = np.where(x > 500, 1.5e308, -1.5e308)
    elif layout == "tiny":
        x = x * 1e-300
    elif layout == "integers":
        x = rng.integers(-3, 4, size=(h, w, b)).astype(float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype.kind == "b":
            cube = x > np.median(x)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            cube = np.clip(np.nan_to_num(np.rint(x)), info.min, info.max).astype(dtype)
        elif dtype.kind == "c":
            cube = (x + 1j * x[::-1]).astype(dtype)
        else:
            cube = x.astype(dtype)  # float16 turns 'huge' into Inf
    if not plain and dtype.kind in "fc" and draw(st.booleans()):
        bad = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        where = tuple(draw(st.integers(0, n - 1)) for n in cube.shape)
        cube[where] = bad
    return cube


@st.composite
def masks(draw, shape: tuple[int, int]) -> np.ndarray:
    """An H x W boolean mask: empty, full, or random."""
    kind = draw(st.sampled_from(["empty", "full", "random", "one"]))
    if kind == "empty":
        return np.zeros(shape, bool)
    if kind == "full":
        return np.ones(shape, bool)
    m = np.zeros(shape, bool)
    if kind == "one":
        m[draw(st.integers(0, shape[0] - 1)), draw(st.integers(0, shape[1] - 1))] = True
        return m
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.random(shape) < 0.3


def save_mask(mask: np.ndarray, path: Path, encoding: str) -> None:
    """Write ``mask`` as a PNG in one of the encodings users produce (:data:`MASK_ENCODINGS`)."""
    m8 = mask.astype(np.uint8)
    if encoding == "rgb255":
        img = mask_png(mask)
    elif encoding == "grey255":
        img = Image.fromarray(m8 * 255)
    elif encoding == "grey01":
        img = Image.fromarray(m8)
    elif encoding == "rgb01":
        img = Image.fromarray(np.repeat(m8[:, :, None], 3, axis=2))
    elif encoding == "bit":
        img = Image.fromarray(mask)
    elif encoding == "palette":
        img = Image.fromarray(m8 * 255).convert("P")
    elif encoding == "grey_alpha":
        img = Image.fromarray(np.stack([m8 * 255, np.full_like(m8, 255)], axis=2), mode="LA")
    else:
        img = Image.fromarray(mask.astype(np.uint16) * 1000)
    img.save(path)


def random_file(draw, suffix: str) -> bytes:
    return draw(st.sampled_from(MAGIC[suffix])) + draw(st.binary(max_size=600))


# ---- readers -----------------------------------------------------------------------------------------
@given(mask=masks((4, 5)), encoding=st.sampled_from(MASK_ENCODINGS))
def test_mask_encodings_read_back(tmp_path, mask, encoding):
    d = fresh_dir(tmp_path)
    np.save(d / "s.npy", np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3))
    save_mask(mask, d / "s.png", encoding)
    np.testing.assert_array_equal(read_scene(d / "s.npy").mask, mask)


def _check_read(path: Path) -> None:
    """read_scene + check_cube + preprocess of ``path``: a valid result or one FerdError line."""
    try:
        scene = read_scene(path)
        b = scene.cube.shape[2]
        check_cube(scene.cube, str(path), b)
        x = preprocess(scene.cube, b, 0, str(path))
    except Exception as err:  # noqa: BLE001 - the property: nothing but a FerdError
        assert_one_line(err)
        event(f"refused: {type(err).__name__}")
        return
    event("read and preprocessed")
    h, w = scene.mask.shape
    assert x.shape == (b, h, w) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and float(x.min()) == pytest.approx(-INPUT_SCALE)
    assert float(x.max()) == pytest.approx(INPUT_SCALE)


@given(data=st.data(), suffix=st.sampled_from([".npy", ".mat"]))
def test_random_bytes_in_place_of_a_scene(tmp_path, data, suffix):
    d = fresh_dir(tmp_path)
    path = d / f"s{suffix}"
    path.write_bytes(random_file(data.draw, suffix))
    mask_png(np.zeros((3, 3), bool)).save(d / "s.png")
    _check_read(path)


@st.composite
def npy_headers(draw) -> bytes:
    """A .npy file with a well-formed but hostile header (any dtype, shape, order) and random data; half of them
    a numeric H x W x B header with exactly the bytes it announces (random values: NaN, Inf, constant or fine),
    so that the reader gets past the header as often as not."""
    if draw(st.booleans()):
        descr = draw(st.sampled_from(["<f4", ">f8", "<i2", ">u2", "|u1", "<i8"]))
        shape = (draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 4)))
        size = int(np.prod(shape)) * np.dtype(descr).itemsize
        data = draw(st.binary(min_size=size, max_size=size))
    else:
        descr = draw(st.sampled_from(["<f4", ">f8", "<f2", "|b1", "<i8", "|u1", "<c8", "|O", "<U3", "|V4", "<M8[s]"]))
        shape = tuple(draw(st.lists(st.integers(-1, 7), max_size=4)))
        data = draw(st.binary(max_size=800))
    header = f"{{'descr': '{descr}', 'fortran_order': {draw(st.booleans())}, 'shape': {shape}, }}"
    header = header.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data


@given(content=npy_headers())
def test_npy_with_hostile_header(tmp_path, content):
    d = fresh_dir(tmp_path)
    (d / "s.npy").write_bytes(content)
    shape = re.search(rb"'shape': \((\d+), (\d+), \d+\)", content)  # an H x W x B header: the mask fits it
    mask_png(np.zeros((int(shape[1]), int(shape[2])) if shape else (2, 2), bool)).save(d / "s.png")
    _check_read(d / "s.npy")


def write_scene(d: Path, cube: np.ndarray, mask: np.ndarray, fmt: str, encoding: str) -> Path | None:
    """``cube`` (stored as given) and ``mask`` as a scene file of format ``fmt`` in ``d``; None where the
    format cannot hold the cube (spectral refuses bool images)."""
    if fmt == "npy":
        path = d / "s.npy"
        np.save(path, cube)
        save_mask(mask, d / "s.png", encoding)
    elif fmt == "mat":
        path = d / "s.mat"
        scipy.io.savemat(path, {"data": cube, "map": mask.astype(np.uint8 if encoding < "m" else float)})
    else:
        from spectral.io import envi

        path = d / "s.hdr"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                envi.save_image(str(path), cube if cube.dtype != np.float16 else cube.astype(np.float32), ext=".img")
        except Exception:  # noqa: BLE001 - a dtype ENVI cannot store: not a case for our reader
            return None
        save_mask(mask, d / "s.png", encoding)
    return path


@given(data=st.data(), encoding=st.sampled_from(MASK_ENCODINGS), fmt=st.sampled_from(["npy", "mat", "envi"]),
       band_first=st.integers(0, 3).map(lambda k: k == 2))  # refused: not too often (hypothesis favours the
                                                             # ends of a range and of a list)
def test_valid_files_with_hostile_contents(tmp_path, data, encoding, fmt, band_first):
    """Well-formed files holding any cube: odd dtypes and shapes, NaN/Inf, constant bands, band-first."""
    cube = data.draw(cubes())
    mask = data.draw(masks(cube.shape[:2]))
    path = write_scene(fresh_dir(tmp_path), np.moveaxis(cube, -1, 0) if band_first else cube, mask, fmt, encoding)
    if path is None:
        return
    _check_read(path)
    h, w, b = cube.shape
    if fmt == "npy" and band_first and not b == h == w:  # B x H x W whose last two axes match the mask
        with pytest.raises(DataError, match="looks band-first"):
            read_scene(path)


#: ENVI data type code -> numpy dtype, for the headers whose image holds exactly the bytes they announce.
ENVI_DTYPES = {1: "u1", 2: "i2", 4: "f4", 5: "f8", 12: "u2"}


@st.composite
def envi_scenes(draw) -> tuple[str, bytes]:
    """An ENVI header and its image: half of them a consistent header (every field the reader needs, a dtype
    it reads) with exactly the bytes it announces (random values), the rest :func:`envi_headers` with random
    bytes, so that the reader gets past the header as often as not."""
    if not draw(st.booleans()):
        return draw(envi_headers()), draw(st.binary(max_size=700))
    samples, lines, bands = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    code, offset = draw(st.sampled_from(sorted(ENVI_DTYPES))), draw(st.sampled_from([0, 0, 16]))
    header = (f"ENVI\nsamples = {samples}\nlines = {lines}\nbands = {bands}\ndata type = {code}\n"
              f"interleave = {draw(st.sampled_from(['bsq', 'bil', 'bip']))}\nbyte order = {draw(st.sampled_from([0, 1]))}\n"
              f"header offset = {offset}\nfile type = ENVI Standard\n")
    size = offset + samples * lines * bands * np.dtype(ENVI_DTYPES[code]).itemsize
    return header, draw(st.binary(min_size=size, max_size=size))


@st.composite
def envi_headers(draw) -> str:
    fields = {"samples": st.integers(-1, 6), "lines": st.integers(-1, 6), "bands": st.integers(-1, 4),
              "data type": st.sampled_from([1, 2, 3, 4, 5, 6, 9, 12, 13, 14, 15, 0, 7, 99]),
              "interleave": st.sampled_from(["bsq", "bil", "bip", "xyz"]),
              "byte order": st.sampled_from([0, 1, 2]), "header offset": st.integers(0, 40),
              "file type": st.sampled_from(["ENVI Standard", "ENVI Classification", "junk"])}
    lines = ["ENVI"]
    for key, strategy in fields.items():
        if draw(st.integers(0, 9)):  # usually present
            lines.append(f"{key} = {draw(strategy)}")
    if draw(st.booleans()):
        lines.append(draw(st.text(st.characters(codec="ascii"), max_size=40)))
    return "\n".join(lines) + "\n"


@given(scene=envi_scenes(), with_image=st.sampled_from([True, True, True, False]))
def test_envi_with_hostile_header(tmp_path, scene, with_image):
    d = fresh_dir(tmp_path)
    header, payload = scene
    (d / "s.hdr").write_text(header)
    if with_image:
        (d / "s.img").write_bytes(payload)
    lines, samples = (int(re.search(rf"^{k} = (-?\d+)$", header, re.M).group(1))
                      if re.search(rf"^{k} = (-?\d+)$", header, re.M) else 3 for k in ("lines", "samples"))
    mask_png(np.zeros((max(lines, 1), max(samples, 1)), bool)).save(d / "s.png")  # the mask fits the header
    _check_read(d / "s.hdr")


@given(data=st.data())
def test_random_bytes_in_place_of_weights_and_teacher(tmp_path, data):
    d = fresh_dir(tmp_path)
    path = d / "w.pt"
    path.write_bytes(random_file(data.draw, ".pt"))
    for load, error in ((lambda: load_fen(str(path), 8), WeightsError),
                        (lambda: teacher_state(str(path)), TeacherError)):
        try:
            load()
        except Exception as err:  # noqa: BLE001
            assert isinstance(err, error)
            assert_one_line(err)
            assert "weights_only" not in str(err)


def test_weights_that_are_not_checkpoints_say_so_in_one_line(tmp_path):
    """A text file, a .mat, a zip, a pickled module: one line naming the file, never torch's advice to unpickle."""
    (tmp_path / "notes.pt").write_text("my weights\n")
    scipy.io.savemat(tmp_path / "w.mat", {"w": np.ones(3)})
    with zipfile.ZipFile(tmp_path / "z.pt", "w") as z:
        z.writestr("a.txt", "hi")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    for name in ("notes.pt", "w.mat", "z.pt", "module.pt"):
        with pytest.raises(WeightsError) as err:
            load_fen(str(tmp_path / name), 8)
        assert_one_line(err.value)
        assert str(err.value).startswith(f"{tmp_path / name}: not a readable torch checkpoint")
        assert "weights_only" not in str(err.value)


# ---- detectors ---------------------------------------------------------------------------------------
@st.composite
def options(draw) -> DetectorOptions:
    inner = draw(st.sampled_from([1, 3]))  # block sizes of 2 and 3 px and a 5 px LRX window, which small scenes
    # can take, more often
    return DetectorOptions(block_num=draw(st.integers(1, 8)), block_size=draw(st.sampled_from([2, 3, None, 1, 2, 3, 4])),
                           lrx_inner=inner, lrx_outer=draw(st.sampled_from([5, 3, 5, 7])))


@given(cube=cubes(max_side=7, dtypes=[np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64]),
       opts=options())
def test_detectors_on_raw_cubes(cube, opts):
    """GRX, SLRX and LRX straight on a raw (B, H, W) tensor: finite (H, W) scores or one FerdError line."""
    if cube.dtype.kind == "f":
        with np.errstate(all="ignore"):  # a raw sensor's range (NaN stays NaN, float16 Inf stays Inf)
            cube = np.where(np.abs(cube) > 1e6, np.sign(cube) * 1e6, cube).astype(cube.dtype)
        # the detectors square the cube's span: 1e-300 underflows (test.py always scales cubes to [-0.1, 0.1])
        finite = np.abs(cube[np.isfinite(cube)].astype(np.float64))
        assume(finite.size == 0 or finite.max() == 0 or finite.max() > 1e-100)
    x = torch.from_numpy(np.ascontiguousarray(cube.transpose(2, 0, 1)))
    b, h, w = x.shape
    for name, run in (("GRX", lambda: grx(x, layout="bhw")),
                      ("SLRX", lambda: slrx(x, opts.block_num, opts.block_size, layout="bhw")),
                      ("LRX", lambda: lrx(x, opts.lrx_inner, opts.lrx_outer, layout="bhw"))):
        try:
            scores = run()
        except Exception as err:  # noqa: BLE001
            assert_one_line(err)
            continue
        event(f"{name} scored")
        assert scores.shape == (h, w) and torch.isfinite(scores).all(), name


_FENS: dict[int, FEN] = {}


def random_fen(bands: int) -> FEN:
    """A seeded FEN of ``bands`` bands (the weights do not matter here, only that it runs)."""
    if bands not in _FENS:
        torch.manual_seed(bands)
        _FENS[bands] = FEN(bands).eval()
    return _FENS[bands]


@given(cube=cubes(max_side=7), opts=options(), names=st.lists(
    st.sampled_from(["GRX", "SLRX", "LRX", "FEN+GRX", "FEN+SLRX", "FEN+LRX"]), min_size=1, max_size=3, unique=True))
def test_checked_input_never_fails_later(cube, opts, names):
    """What test.py does: once check_cube and check_detector pass, every detector gives finite scores.

    So no error can come after test.py has started writing results."""
    b = cube.shape[2]
    try:
        check_cube(cube, "cube", b)
    except FerdError as err:
        assert_one_line(err)
        return
    x = preprocess(cube, b)
    for name in names:
        try:
            check_detector(name, tuple(cube.shape), opts)
        except FerdError as err:
            assert_one_line(err)
            continue
        with torch.no_grad():  # test.py's x + FEN(x) for FEN+ detectors
            target = x + random_fen(b)(x[None])[0] if name.startswith(FEN_PREFIX) else x
        scores = base_detector(base_name(name), opts)(target)
        assert scores.shape == cube.shape[:2] and torch.isfinite(scores).all(), name


# ---- test.py -----------------------------------------------------------------------------------------
def _main_outcome(test_cli, capsys, args: list[str], out: Path) -> int:
    """Run test.py's main; check the outcome's form: exit 0 with results, or exit 2 with exactly one line
    ``test.py: error: ...`` on stderr and nothing written."""
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:  # a warning would be one more line on stderr
        warnings.simplefilter("always")
        rc = test_cli.main(args + ["--save_dir", str(out), "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    # ResourceWarning (numpy leaves a file open when a "zip" is no zip) is hidden by Python's default filters
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, ResourceWarning)]
    assert not shown, shown
    if currently_in_test_context():  # the statistics of a property (--hypothesis-show-statistics)
        event(f"test.py exit {rc}")
    if rc == 0:
        assert (out / "auc.csv").is_file()
    else:
        assert rc == 2
        assert len(err) == 1 and err[0].startswith("test.py: error: "), err
        assert not out.exists() or not any(out.iterdir())
    _main_outcome.last_error = err[0] if rc else None  # for tests that check the line itself
    return rc


@given(data=st.data(), encoding=st.sampled_from(MASK_ENCODINGS), detectors=st.lists(
    st.sampled_from(["GRX", "SLRX", "LRX", "FEN+GRX"]), min_size=1, max_size=2, unique=True))
def test_cli_on_hostile_scenes(test_cli, tmp_path, capsys, data, encoding, detectors):
    d = fresh_dir(tmp_path)
    cube = data.draw(cubes(max_side=7))
    b = cube.shape[2]  # all the bands more often than not; one too many sometimes
    bands = data.draw(st.sampled_from([b, b, b] + list(range(1, b + 2))))
    fmt = data.draw(st.sampled_from(["npy", "mat", "envi"] * 2 + ["random"]))
    if fmt == "random":
        path = d / f"s{data.draw(st.sampled_from(['.npy', '.mat']))}"
        path.write_bytes(random_file(data.draw, path.suffix))
        save_mask(data.draw(masks(cube.shape[:2])), d / "s.png", encoding)
    else:
        path = write_scene(d, cube, data.draw(masks(cube.shape[:2])), fmt, encoding)
        assume(path is not None)
    save_fen(random_fen(bands), d / "fen.pt")
    args = ["--scenes", str(path), "--input_channel", str(bands), "--detectors", *detectors,
            "--weights", str(d / "fen.pt"), "--block_size", str(data.draw(st.sampled_from([2, 3, 1]))),
            "--lrx_inner", "1", "--lrx_outer", str(data.draw(st.sampled_from([3, 5])))]
    _main_outcome(test_cli, capsys, args, d / "out")


@given(data=st.data())
def test_cli_on_hostile_weight_files(test_cli, tmp_path, capsys, data):
    d = fresh_dir(tmp_path)
    np.save(d / "s.npy", np.random.default_rng(0).random((8, 8, 4)).astype(np.float32))
    mask_png(np.eye(8, dtype=bool)).save(d / "s.png")
    (d / "w.pt").write_bytes(random_file(data.draw, ".pt"))
    rc = _main_outcome(test_cli, capsys, ["--scenes", str(d / "s.npy"), "--input_channel", "4",
                                          "--detectors", "FEN+GRX", "--weights", str(d / "w.pt")], d / "out")
    assert rc == 2


# ---- the cases, and valid-but-unusual inputs that must run -------------------------------------
def _scene(d: Path, name: str, cube: np.ndarray, mask: np.ndarray | None = None) -> str:
    np.save(d / f"{name}.npy", cube)
    if mask is None:
        mask = np.zeros(cube.shape[:2], bool)
        mask.flat[0] = True
    mask_png(mask).save(d / f"{name}.png")
    return str(d / f"{name}.npy")


@pytest.mark.parametrize("shape", [(1, 100), (3, 3), (4, 40), (40, 2)])
def test_small_scene_with_fen_names_the_minimum(test_cli, tmp_path, capsys, shape):
    d = fresh_dir(tmp_path)
    path = _scene(d, "small", np.random.default_rng(0).random((*shape, 6)).astype(np.float32))
    save_fen(random_fen(6), d / "fen.pt")
    rc = _main_outcome(test_cli, capsys, ["--scenes", path, "--input_channel", "6", "--detectors", "FEN+GRX",
                                          "--weights", str(d / "fen.pt")], d / "out")
    assert rc == 2
    pixels = "pixel" if shape == (1, 1) else "pixels"
    assert _main_outcome.last_error == (
        f"test.py: error: {path}: FEN+GRX: the scene is {shape[0]} x {shape[1]} {pixels}; the FEN needs at least "
        "5 x 5 (it mirrors 4 px at each border): use GRX without FEN+ on such a scene")


def test_small_scene_message(test_cli, tmp_path, capsys):
    path = _scene(tmp_path, "strip", np.random.default_rng(0).random((1, 100, 6)).astype(np.float32))
    save_fen(random_fen(6), tmp_path / "fen.pt")
    assert test_cli.main(["--scenes", path, "--input_channel", "6", "--detectors", "GRX", "FEN+GRX",
                          "--weights", str(tmp_path / "fen.pt"), "--save_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"test.py: error: {path}: FEN+GRX: the scene is 1 x 100 pixels; the FEN needs at least 5 x 5 "
                   "(it mirrors 4 px at each border): use GRX without FEN+ on such a scene")


@pytest.mark.parametrize("args,message", [
    (["--input_channel", "0"], "test.py: error: --input_channel 0: must be 1 or more"),
    (["--input_channel", "-3"], "test.py: error: --input_channel -3: must be 1 or more"),
    (["--start_channel", "-1"], "test.py: error: --start_channel -1: must be 0 or more"),
    (["--block_num", "0"], "test.py: error: --block_num 0: must be 1 or more"),
    (["--block_size", "0"], "test.py: error: --block_size 0: must be 1 or more"),
    (["--device", "nonsense"], "test.py: error: --device nonsense: not a device this program runs on"),
])
def test_bad_options_name_the_option_and_range(test_cli, tmp_path, capsys, args, message):
    path = _scene(tmp_path, "s", np.random.default_rng(0).random((8, 8, 4)).astype(np.float32))
    try:
        rc = test_cli.main(["--scenes", path, "--detectors", "GRX", "--save_dir", str(tmp_path / "out")] + args)
    except SystemExit as exit_:  # argparse-level checks
        rc = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "out").exists()


def test_too_few_bands_says_what_fits(test_cli, tmp_path, capsys):
    path = _scene(tmp_path, "s", np.random.default_rng(0).random((8, 8, 4)).astype(np.float32))
    assert test_cli.main(["--scenes", path, "--detectors", "GRX", "--input_channel", "3", "--start_channel", "2",
                          "--save_dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"test.py: error: {path}: has 4 bands, fewer than --start_channel 2 + --input_channel 3; "
        "use --input_channel 2 or less")


def test_band_first_cube_is_named(test_cli, tmp_path, capsys):
    cube = np.random.default_rng(0).random((30, 8, 9)).astype(np.float32)  # B x H x W
    path = _scene(tmp_path, "bf", cube, np.eye(8, 9, dtype=bool))
    assert test_cli.main(["--scenes", path, "--detectors", "GRX", "--input_channel", "4",
                          "--save_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"test.py: error: {path}: the cube is 30 x 8 x 9 and its mask 8 x 9: the cube looks "
                          "band-first (B x H x W, 30 bands); store it as H x W x B")


def test_complex_cube_is_refused(tmp_path):
    cube = (np.ones((4, 4, 3)) + 1j).astype(np.complex64)
    with pytest.raises(DataError, match=r"complex values \(complex64\)"):
        check_cube(cube, "c.npy", 3)
    scipy.io.savemat(tmp_path / "c.mat", {"data": cube, "map": np.eye(4)})
    with pytest.raises(DataError, match="c.mat: complex values"):
        check_cube(read_scene(tmp_path / "c.mat").cube, str(tmp_path / "c.mat"), 3)


def test_unwritable_outputs_and_duplicate_names_stop_before_any_write(test_cli, tmp_path, capsys):
    path = _scene(tmp_path, "s", np.random.default_rng(0).random((8, 8, 4)).astype(np.float32))
    (tmp_path / "file").write_text("x")
    (tmp_path / "b").mkdir()
    other = _scene(tmp_path / "b", "s", np.random.default_rng(1).random((8, 8, 4)).astype(np.float32))
    cases = [(["--save_dir", str(tmp_path / "file")], "is a file, not a folder"),
             (["--save_dir", str(tmp_path / "file" / "sub")], "is a file, not a folder"),
             (["--json", str(tmp_path / "b"), "--save_dir", str(tmp_path / "o1")], "is a folder, not a file"),
             ([other, "--save_dir", str(tmp_path / "o2")], "two scenes named 's'")]
    for extra, message in cases:
        capsys.readouterr()
        assert test_cli.main(["--detectors", "GRX", "--input_channel", "4", "--scenes", path] + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int64, np.float16, np.bool_])
@pytest.mark.parametrize("encoding", ["grey01", "rgb255", "palette"])
def test_unusual_but_valid_scenes_run(test_cli, tmp_path, capsys, dtype, encoding):
    rng = np.random.default_rng(0)
    cube = (rng.random((12, 12, 6)) * 200).astype(dtype) if dtype != np.bool_ else rng.random((12, 12, 6)) > 0.5
    mask = np.zeros((12, 12), bool)
    mask[4:6, 7] = True
    np.save(tmp_path / "s.npy", cube)
    save_mask(mask, tmp_path / "s.png", encoding)
    out = tmp_path / "out"
    assert test_cli.main(["--scenes", str(tmp_path / "s.npy"), "--input_channel", "6", "--detectors", "GRX", "SLRX",
                          "LRX", "--block_size", "3", "--lrx_inner", "1", "--lrx_outer", "5", "--save_dir", str(out),
                          "--no-progress", "--json", str(out / "r.json")]) == 0
    import json

    auc = json.loads((out / "r.json").read_text())["scenes"][0]["auc"]
    assert all(auc[name] is not None and 0.0 <= auc[name] <= 1.0 for name in ("GRX", "SLRX", "LRX"))  # mask read


def test_mask_without_anomalies_runs(test_cli, tmp_path, capsys):
    path = _scene(tmp_path, "clean", np.random.default_rng(0).random((8, 8, 4)), np.zeros((8, 8), bool))
    assert test_cli.main(["--scenes", path, "--input_channel", "4", "--detectors", "GRX",
                          "--save_dir", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "mask has no anomaly pixel" in capsys.readouterr().out


def test_extra_files_in_a_had100_folder(test_cli, tmp_path, capsys):
    root = generate(tmp_path / "had", n_train=0, n_test=2, size=12, bands=8)
    test_dir, gt_dir = root / "test" / "aviris_ng", root / "ground_truth" / "aviris_ng"
    (test_dir / "README.txt").write_text("notes")
    (test_dir / "._synthetic_test_0000.npy").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS resource fork
    (test_dir / "old.npy").mkdir()                                                             # a folder
    (gt_dir / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (gt_dir / "._synthetic_test_0000.png").write_bytes(b"junk")
    (root / "LICENSE").write_text("x")
    assert [s.name for s in read_had100(root)] == ["synthetic_test_0000", "synthetic_test_0001"]
    assert test_cli.main(["--data_path", str(root), "--input_channel", "8", "--detectors", "GRX",
                          "--save_dir", str(tmp_path / "out"), "--no-progress"]) == 0


def test_slrx_constant_distance_map_is_neutral(monkeypatch):
    """Two spectra in equal numbers, scattered: the whole-image distance d_full is the same at every pixel, and
    counts as 1 in the product; the block and surround maps still tell the pixels apart, as the per-pixel
    oracle computes them (its min-max would divide 0 by 0 on d_full: here it is given the same neutral 1)."""
    import detectors.reference as reference
    from detectors.slrx import slrx_maps

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=6), rng.normal(size=6)
    label = rng.permutation(np.arange(64) % 2).reshape(8, 8)  # 32 of each, blocks of 0 to 4 of either
    x = preprocess(np.where(label[:, :, None] == 0, a, b), 6)
    maps = slrx_maps(x, 2, layout="bhw")
    assert maps["full"].min().item() == maps["full"].max().item()  # the premise: d_full is constant
    assert (maps["block"].max() - maps["block"].min()).item() > 0.5  # ... and d_block is not
    scores = slrx(x, block_size=2, layout="bhw")
    assert scores.shape == (8, 8) and torch.isfinite(scores).all() and scores.max().item() > 0.5

    def minmax_or_one(d: np.ndarray) -> np.ndarray:
        """The oracle's d_full is constant only to 1.5e-12 relative (its 1e-6 ridge leaves the inverse a
        condition number of about 1e6, which grows float64 rounding to up to about 1e-10)."""
        return np.ones_like(d) if d.max() - d.min() <= 1e-9 * d.max() else (d - d.min()) / (d.max() - d.min())

    monkeypatch.setattr(reference, "minmax", minmax_or_one)
    np.testing.assert_allclose(scores.numpy(), reference.slrx_per_pixel(x.double().numpy(), block_size=2),
                               rtol=1e-7, atol=1e-9)


def test_raw_detectors_refuse_non_finite_and_constant_cubes():
    x = torch.rand(4, 6, 6, dtype=torch.float64)
    x[1, 2, 3] = float("nan")
    for run in (lambda c: grx(c, layout="bhw"), lambda c: slrx(c, block_size=2, layout="bhw"),
                lambda c: lrx(c, 1, 3, layout="bhw")):
        with pytest.raises(FerdError, match="non-finite"):
            run(x)
        with pytest.raises(FerdError, match="constant"):
            run(torch.ones(4, 6, 6))


@pytest.mark.parametrize("array", [np.array([[["ab"] * 3] * 4] * 4), np.zeros((4, 4, 3), dtype="f4,i4"),
                                   np.zeros((4, 4, 3), dtype="datetime64[s]")], ids=["str", "struct", "datetime"])
def test_non_numeric_cubes_are_refused(tmp_path, array):
    _scene(tmp_path, "s", array, np.eye(4, dtype=bool))
    with pytest.raises(DataError, match=r"s.npy: values of type .*, not numbers"):
        check_cube(read_scene(tmp_path / "s.npy").cube, str(tmp_path / "s.npy"), 3)


def test_float64_range_overflow_is_refused():
    cube = np.full((4, 4, 3), 1.5e308)
    cube[0, 0, 0] = -1.5e308
    with pytest.raises(DataError, match="span more than float64 can hold"):
        check_cube(cube, "big.npy", 3)


def test_one_pixel_scene(test_cli, tmp_path, capsys):
    path = _scene(tmp_path, "px", np.arange(5.0).reshape(1, 1, 5))
    assert test_cli.main(["--scenes", path, "--input_channel", "5", "--detectors", "GRX",
                          "--save_dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (f"test.py: error: {path}: GRX: the scene is 1 x 1 pixel: "
                                               "GRX needs at least 2 pixels")


def test_npz_under_a_npy_name(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, cube=np.ones((2, 2, 2)))
    (tmp_path / "s.npy").write_bytes(buf.getvalue())
    mask_png(np.zeros((2, 2), bool)).save(tmp_path / "s.png")
    with pytest.raises(DataError, match="s.npy: a .npz archive, not a .npy array"):
        read_scene(tmp_path / "s.npy")


class _Touch:
    """Unpickling it creates the file ``path``: the trace a loaded pickle would leave."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


@pytest.mark.parametrize("kind", ["object_npy", "plain_pickle"])
def test_pickled_npy_is_never_loaded(test_cli, tmp_path, capsys, kind):
    """README: a pickled .npy is refused and never loaded. An object array (np.save pickles it) or a bare pickle
    under a .npy name, whose unpickling would create a file: the one line, and no such file, memory-mapped
    (read_scene) or not (load_npy), through test.py too."""
    import pickle

    from data.scene import load_npy

    trace = tmp_path / "unpickled"
    path = tmp_path / "s.npy"
    if kind == "object_npy":
        cube = np.empty((2, 2, 3), dtype=object)
        cube[0, 0, 0] = _Touch(trace)
        np.save(path, cube, allow_pickle=True)
    else:
        path.write_bytes(pickle.dumps(_Touch(trace)))
    with open(path, "rb") as f:  # the payload works: unpickled, it leaves the trace (then removed)
        if kind == "object_npy":
            np.load(f, allow_pickle=True)
        else:
            pickle.load(f)
    assert trace.exists()
    trace.unlink()
    mask_png(np.eye(2, dtype=bool)).save(tmp_path / "s.png")
    for read in (lambda: read_scene(path), lambda: load_npy(path, mmap=False)):
        with pytest.raises(DataError) as err:
            read()
        assert str(err.value) == (f"{path}: not a readable .npy array (another kind of file, or Python objects, "
                                  "which are never loaded)")
    assert test_cli.main(["--scenes", str(path), "--input_channel", "3", "--detectors", "GRX",
                          "--save_dir", str(tmp_path / "out"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"test.py: error: {path}: not a readable .npy array (another kind of file, or Python objects, which are "
        "never loaded)"]
    assert not trace.exists()


def test_one_constant_band_is_accepted_a_constant_cube_refused(test_cli, tmp_path, capsys):
    """README: a cube constant in every band used is refused (nothing to detect); one constant band among
    others (a dead or zeroed band, as real sensors have) is not: GRX's pseudo-inverse leaves it out, SLRX's and
    LRX's ridge keeps their inverses defined, and the planted pixel is still found."""
    import json

    rng = np.random.default_rng(0)
    cube = rng.normal(100, 5, size=(12, 12, 6)).astype(np.float32)
    cube[:, :, 2] = 0.0  # a dead band
    cube[5, 7] += 60
    cube[5, 7, 2] = 0.0
    mask = np.zeros((12, 12), bool)
    mask[5, 7] = True
    path = _scene(tmp_path, "s", cube, mask)
    out = tmp_path / "out"
    assert test_cli.main(["--scenes", path, "--input_channel", "6", "--detectors", "GRX", "SLRX", "LRX",
                          "--block_size", "3", "--lrx_inner", "1", "--lrx_outer", "5", "--save_dir", str(out),
                          "--no-progress", "--json", str(out / "r.json")]) == 0
    auc = json.loads((out / "r.json").read_text())["scenes"][0]["auc"]
    assert auc == {"GRX": 1.0, "SLRX": 1.0, "LRX": 1.0}
    capsys.readouterr()
    flat = _scene(tmp_path, "flat", np.full((12, 12, 6), 3.0, np.float32), mask)
    assert test_cli.main(["--scenes", flat, "--input_channel", "6", "--detectors", "GRX",
                          "--save_dir", str(tmp_path / "out2")]) == 2
    assert capsys.readouterr().err.strip() == (f"test.py: error: {flat}: the cube is constant in the bands used "
                                               "(min == max == 3.0), nothing to detect")


@pytest.mark.parametrize("how", ["chmod", "procfs"])
def test_an_unwritable_output_folder_stops_before_any_work(test_cli, tmp_path, capsys, monkeypatch, how):
    """README: unwritable outputs stop test.py before it writes. A folder without write permission (chmod 555)
    stops an ordinary user only: root writes there anyway, and the suite runs as root in places. /proc/self is
    unwritable for root too (the kernel refuses a new file or folder there), so the same check is tried there."""
    import os
    import sys

    path = _scene(tmp_path, "s", np.random.default_rng(0).random((8, 8, 4)).astype(np.float32))
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("permission bits do not stop root; the procfs case covers the check as root")
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o555)
        save_dir = folder / "out"
    else:
        if not sys.platform.startswith("linux"):
            pytest.skip("/proc/self is Linux's")
        folder, save_dir = Path("/proc/self"), Path("/proc/self/ferd_out")
        with pytest.raises(OSError):  # the premise: nobody, root included, makes a folder there
            save_dir.mkdir()
    monkeypatch.setattr("pipeline.evaluate.evaluate_shard", raiser(AssertionError, "the work began before the check"))
    assert test_cli.main(["--scenes", path, "--input_channel", "4", "--detectors", "GRX", "--no-progress",
                          "--save_dir", str(save_dir)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"test.py: error: --save_dir {save_dir}: {folder} is not writable"]
    assert not save_dir.exists()
