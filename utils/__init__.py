"""Plumbing every other package uses: the project's errors, atomic writes, devices, memory, one-line CLIs, and
the cube layouts the public functions take (cube.py)."""
