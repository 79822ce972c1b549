"""Plumbing every other package uses: the project's errors, atomic writes, devices, memory, one-line CLIs."""
