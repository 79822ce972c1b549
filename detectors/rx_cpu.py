"""GRX's CPU machinery (detectors/rx.py's docstring says why): the two products that cost all the time on
OpenBLAS, the scatter as ``dsyrk`` (:func:`syrk_upper_`) and the scores through the inverse Cholesky factor
(:class:`Whitening`), and the worker threads that read chunks side by side (:func:`on_workers`).

scipy and threadpoolctl are imported where they are used: the detectors' registry (which every script's
``--help`` reads) then costs no more than torch."""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from utils.device import torch_threads

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

#: Relative cut-off for small singular values in the pseudo-inverse, as numpy.linalg.pinv's default.
PINV_RCOND = 1e-15


def syrk_upper_(gram: np.ndarray, pixels: np.ndarray) -> None:
    """Add ``pixels^T pixels`` to the upper triangle of the Fortran-ordered ``(B, B)`` ``gram``, in place;
    ``pixels`` ``(n, B)`` float64, row-major or column-major (BLAS ``dsyrk``: half the work of a product)."""
    from scipy.linalg import blas

    if pixels.flags.f_contiguous:  # BLAS sees the (n, B) matrix Z: Z^T Z
        out = blas.dsyrk(1.0, pixels, beta=1.0, c=gram, trans=1, lower=0, overwrite_c=1)
    else:  # BLAS sees the (B, n) matrix Z^T of the row-major array: Z^T (Z^T)^T
        out = blas.dsyrk(1.0, np.ascontiguousarray(pixels).T, beta=1.0, c=gram, trans=0, lower=0, overwrite_c=1)
    if out is not gram:  # the wrapper copies only a matrix it cannot use as it is: not ours
        gram[...] = out


class Whitening:
    """The scores of centred pixels under the pseudo-inverse of a covariance, on the CPU.

    Full rank (by the pinv's cut-off): ``score = ||z^T U||^2`` with ``U = L^-T`` upper triangular, ``L`` the
    Cholesky factor of the covariance (``dtrmm``: half a product's work). Otherwise (or if Cholesky fails
    so near the cut-off): ``score = sum_k (z . v_k)^2 / lambda_k`` over the kept eigenpairs.
    """

    def __init__(self, cov: np.ndarray, scale: float, rcond: float = PINV_RCOND) -> None:
        """``cov`` ``(B, B)`` symmetric; the scores are those of ``pinv(cov) / scale^2``."""
        import scipy.linalg

        self.upper: np.ndarray | None = None
        self.vectors = self.weights = None
        vals = scipy.linalg.eigvalsh(cov, check_finite=False)
        if (np.abs(vals) > rcond * np.abs(vals).max()).all():
            try:
                chol = scipy.linalg.cholesky(cov, lower=True, check_finite=False)
                inv = scipy.linalg.solve_triangular(chol, np.eye(len(cov)), lower=True, check_finite=False)
                self.upper = np.asfortranarray(inv.T / scale)
                return
            except np.linalg.LinAlgError:
                pass  # positive by eigvalsh's rounding, not by Cholesky's: the eigenvectors serve
        vals, vecs = scipy.linalg.eigh(cov, check_finite=False)
        keep = np.abs(vals) > rcond * np.abs(vals).max()
        self.vectors = np.asfortranarray(vecs[:, keep])
        self.weights = 1.0 / (vals[keep] * scale * scale)

    def scores(self, z: np.ndarray) -> np.ndarray:
        """``(n,)`` scores of ``(n, B)`` float64 centred pixels ``z`` (overwritten with the full-rank product)."""
        from scipy.linalg import blas

        if self.upper is None:
            y = z @ self.vectors
            return (y * y) @ self.weights
        if z.flags.f_contiguous:  # Z U in place
            y = blas.dtrmm(1.0, self.upper, z, side=1, lower=0, overwrite_b=1)
        else:  # (Z U)^T = U^T Z^T, on the Fortran view of the row-major array, in place
            y = blas.dtrmm(1.0, self.upper, np.ascontiguousarray(z).T, side=0, lower=0, trans_a=1, overwrite_b=1).T
        np.square(y, out=y)
        return y.sum(axis=1)


#: One BLAS thread per worker thread: the chunks, not each product, are split over the cores.
@functools.cache
def _blas() -> ThreadpoolController:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    """Worker threads kept for the process (each sets itself to one torch thread on its first chunk)."""
    return ThreadPoolExecutor(workers, thread_name_prefix="rx-chunks")


def cpu_workers(chunks: int) -> int:
    """Threads that read chunks side by side on the CPU: one per torch thread, at most one per chunk."""
    return max(1, min(torch.get_num_threads(), chunks))


def on_workers(job: Callable[[int, int], None], chunks: int) -> None:
    """Run ``job(worker, workers)`` on :func:`cpu_workers` threads, each with one torch and one BLAS thread.

    Side by side rather than each product split over the cores: on a shared machine every split product
    waits at its end for a descheduled thread (as the FEN tiles, pipeline/fen_tiles.py). A job takes the
    chunks ``worker, worker + workers, ...``: a fixed share, so sums do not depend on timing.
    """
    workers = cpu_workers(chunks)
    with _blas().limit(limits=1):
        if workers == 1:
            with torch_threads(1):
                job(0, 1)
            return
        before = torch.get_num_threads()
        try:
            futures = [_pool(workers).submit(_one_thread_job, job, t, workers) for t in range(workers)]
            for f in futures:
                f.result()
        finally:
            torch.set_num_threads(before)  # the count new threads start with is global: put it back


def _one_thread_job(job: Callable[[int, int], None], worker: int, workers: int) -> None:
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    job(worker, workers)
