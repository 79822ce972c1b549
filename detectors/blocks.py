"""SLRX's block grid (detectors/slrx.py): the ``size`` x ``size`` blocks over an image, the block size from
the options (quirk 6: ``bands // block_num`` px, or ``block_size`` px), its checks and memory estimate, the
reshaping of pixels into blocks and back, and the min-max product of SLRX's three distance maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from utils.errors import DetectorError

#: The authors' default number of blocks "per side" (quirk 6: divides the band count).
DEFAULT_BLOCK_NUM = 25


@dataclass(frozen=True)
class BlockGrid:
    """A grid of ``size`` x ``size`` blocks of step ``size`` over an ``height`` x ``width`` image."""

    size: int
    height: int
    width: int

    @property
    def rows(self) -> int:
        return -(-self.height // self.size)

    @property
    def cols(self) -> int:
        return -(-self.width // self.size)

    @property
    def n_blocks(self) -> int:
        return self.rows * self.cols

    @property
    def smallest_block(self) -> tuple[int, int]:
        """Height and width of the bottom-right block, the smallest one."""
        return self.height - (self.rows - 1) * self.size, self.width - (self.cols - 1) * self.size

    def problem(self) -> str | None:
        """Why SLRX cannot run on this grid, or None if it can."""
        if self.size < 1:
            return "a block size of 0 px"
        bh, bw = self.smallest_block
        if bh * bw < 2:  # a covariance needs two pixels (unbiased 1/(n-1))
            return f"blocks of {bh} x {bw} pixel at the image corner; every block needs at least 2 pixels"
        if self.n_blocks < 2:  # d_sur would be 0 everywhere and its min-max undefined
            return f"a single {bh} x {bw} block with no neighbour; SLRX needs at least 2 blocks"
        return None


def _closest(valid: list[int], wanted: int) -> int | None:
    return min(valid, key=lambda v: (abs(v - wanted), v)) if valid else None


def resolve_block_size(bands: int, height: int, width: int, block_num: int = DEFAULT_BLOCK_NUM,
                       block_size: int | None = None) -> int:
    """The SLRX block size in pixels, checked against the image.

    ``block_size`` (pixels) wins if given; else ``bands // block_num`` (quirk 6). A value that leaves a
    block of fewer than 2 pixels, or a single block, raises DetectorError naming the closest value that works.
    """
    if block_size is not None:
        if block_size < 1:
            raise DetectorError(f"block_size={block_size}: must be a positive number of pixels, e.g. 8")
        why = BlockGrid(block_size, height, width).problem()
        if why:
            ok = [s for s in range(1, max(height, width) + 1) if BlockGrid(s, height, width).problem() is None]
            hint = _closest(ok, block_size)
            raise DetectorError(f"block_size={block_size} on a {height} x {width} scene gives {why}: "
                             + (f"use block_size={hint}" if hint else "the scene is too small for SLRX"))
        return block_size
    if block_num < 1:
        raise DetectorError(f"block_num={block_num}: must be a positive integer, e.g. {DEFAULT_BLOCK_NUM}")
    size = bands // block_num
    why = BlockGrid(size, height, width).problem()
    if why:
        ok = [n for n in range(1, bands + 1) if BlockGrid(bands // n, height, width).problem() is None]
        hint = _closest(ok, block_num)
        raise DetectorError(f"block_num={block_num} gives a block size of {bands} // {block_num} = {size} px "
                         f"(quirk 6: from the {bands} bands) and on a {height} x {width} scene {why}: "
                         + (f"use block_num={hint}, or block_size=<px>" if hint
                            else "the scene is too small for SLRX"))
    return size


def slrx_memory_bytes(bands: int, height: int, width: int, block_size: int) -> int:
    """Rough peak memory of :func:`slrx` (or of one :func:`strip_maps` strip ``height`` px high) in bytes
    (float64): a few copies of the padded pixels, the per-block Gram matrices, and the ``B x B`` matrices
    of three rows of blocks plus the row in hand. Measured on strips of 2048 px x 200 bands, 8 px blocks:
    428 MiB for 3 block rows and 635 MiB for 6 (this estimate: 764 and 1136 MiB)."""
    grid = BlockGrid(block_size, height, width)
    m = block_size * block_size
    pixels = grid.n_blocks * m
    return 8 * (4 * pixels * bands + 3 * grid.n_blocks * min(m, bands) ** 2
                + 5 * grid.cols * bands * bands + 4 * bands * bands)


def to_blocks(pixels: torch.Tensor, size: int, dtype: torch.dtype | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H, W, B)`` pixels (any strides) -> zero-padded blocks ``(R, C, s*s, B)`` and validity ``(R, C, s*s)``.

    One strided copy per region (whole blocks, last block row, last block column, corner) straight into
    the block layout, converting to ``dtype`` on the way.
    """
    h, w, b = pixels.shape
    grid = BlockGrid(size, h, w)
    rows, cols = grid.rows, grid.cols
    out = pixels.new_zeros(rows, cols, size, size, b, dtype=dtype or pixels.dtype)
    valid = torch.zeros(rows, cols, size, size, dtype=torch.bool, device=pixels.device)
    fr, fc = h // size, w // size                     # whole blocks
    bh, bw = h - fr * size, w - fc * size             # leftover rows / columns
    regions = [(slice(0, fr), slice(0, fc), size, size), (slice(fr, rows), slice(0, fc), bh, size),
               (slice(0, fr), slice(fc, cols), size, bw), (slice(fr, rows), slice(fc, cols), bh, bw)]
    for rs, cs, ph, pw in regions:
        nr, nc = rs.stop - rs.start, cs.stop - cs.start
        if nr == 0 or nc == 0 or ph == 0 or pw == 0:
            continue
        src = pixels[rs.start * size: rs.start * size + nr * ph, cs.start * size: cs.start * size + nc * pw]
        out[rs, cs, :ph, :pw] = src.reshape(nr, ph, nc, pw, b).permute(0, 2, 1, 3, 4)
        valid[rs, cs, :ph, :pw] = True
    m = size * size
    return out.view(rows, cols, m, b), valid.view(rows, cols, m)


def from_blocks(values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`to_blocks` for one value per pixel: ``(R, C, s*s)`` -> ``(H, W)``."""
    rows, cols, m = values.shape
    size = int(round(m ** 0.5))
    image = values.view(rows, cols, size, size).permute(0, 2, 1, 3).reshape(rows * size, cols * size)
    return image[:height, :width]



def drop_nodata(blocks: torch.Tensor, valid: torch.Tensor, keep: torch.Tensor, size: int) -> torch.Tensor:
    """Mark the nodata pixels (``keep`` ``(H, W)`` bool False; data/nodata.py) of :func:`to_blocks`' output as
    padding: zeroed in ``blocks`` (in place) and False in the returned validity ``(R, C, s*s)``."""
    kept, _ = to_blocks(keep[..., None].to(blocks.dtype), size)
    valid = valid & (kept[..., 0] > 0.5)
    blocks.masked_fill_(~valid[..., None], 0.0)
    return valid


def minmax_map(d: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """An ``(H, W)`` distance map min-maxed to [0, 1] over the image (over its ``keep`` pixels, the ones with
    data, where given).

    A map that is the same at every pixel (d_full of a scene made of two spectra in equal numbers, say)
    tells no pixel apart and has no min-max (0 / 0): it counts as 1, the neutral factor of the product,
    rather than failing or turning every score into NaN.
    """
    seen = d if keep is None else d[keep]
    if not bool(torch.isfinite(seen).all()):
        raise DetectorError("SLRX: non-finite distances (non-finite input?)")
    lo, hi = seen.min(), seen.max()
    return (d - lo) / (hi - lo) if bool(hi > lo) else torch.ones_like(d)


def combine_maps(maps: dict[str, torch.Tensor], keep: torch.Tensor | None = None) -> torch.Tensor:
    """SLRX score: minmax(d_block) * minmax(d_sur) * minmax(d_full), each min-max over the image (a constant
    map counts as 1: :func:`minmax_map`); over the ``keep`` pixels where given."""
    score = None
    for d in maps.values():
        m = minmax_map(d, keep)
        score = m if score is None else score * m
    return score
