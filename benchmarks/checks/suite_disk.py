"""The test suite's disk use at its peak: ``tests/conftest.py``'s ``SUITE_PEAK_BYTES`` comes from here.

Runs pytest (the README's test command, or the tests given) with its temporary folder and ``$TMPDIR`` inside
one fresh folder, samples that folder's allocated size every ``--every`` seconds, and prints the peak, the
test running then, and what is left when the run ends (nothing, once every test passed)::

    .venv/bin/python benchmarks/checks/suite_disk.py                 # the whole suite (about 10 minutes here)
    .venv/bin/python benchmarks/checks/suite_disk.py tests/test_train_faults.py
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from utils.memory import format_bytes  # noqa: E402


def allocated(folder: Path) -> int:
    """Bytes on disk under ``folder`` (allocated blocks: a reserved or sparse file counts as the disk sees it)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:  # removed between listing and stat
                pass
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tests", nargs="*", default=["tests"], help="what pytest runs (default: tests)")
    p.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    args = p.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="ferd-suite-disk-"))
    log = root / "log.txt"
    (root / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(root / "tmp")}
    cmd = [sys.executable, "-m", "pytest", "-q", "--basetemp", str(root / "tmp" / "pytest"), *args.tests]
    peak = {"bytes": 0, "test": "", "at": 0.0}
    done = threading.Event()
    start = time.monotonic()

    def sample() -> None:
        while not done.wait(args.every):
            n = allocated(root / "tmp")
            if n > peak["bytes"]:
                running = [d.name for d in (root / "tmp" / "pytest").glob("*") if d.is_dir()]
                peak.update(bytes=n, test=", ".join(sorted(running)), at=time.monotonic() - start)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with open(log, "w") as fh:
        code = subprocess.call(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    done.set()
    thread.join()
    left = allocated(root / "tmp")
    summary = log.read_text().strip().splitlines()[-1]  # pytest's "N passed ..." line
    print(f"pytest {' '.join(args.tests)}: exit code {code}, {time.monotonic() - start:.0f} s; {summary}")
    print(f"peak disk use of the suite's temporary files: {format_bytes(peak['bytes'], 1)} "
          f"at {peak['at']:.0f} s (folders then: {peak['test'] or '-'})")
    print(f"left when it ended: {format_bytes(left, 1)}")
    shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
