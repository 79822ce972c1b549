"""torchrun with 2 CPU processes (gloo): trains, one process evaluates and writes one set of checkpoints."""
from __future__ import annotations

import os
import subprocess
import sys

import torch
from conftest import REPO

from data.synthetic import generate


def test_two_process_gloo_run_writes_one_checkpoint(tmp_path):
    data = generate(tmp_path / "had", n_train=4, n_test=2, size=16, bands=10)
    save_dir = tmp_path / "ck"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "GLOO_SOCKET_IFNAME": "lo",
           "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
           "--data_path", str(data), "--input_channel", "8", "--img_size", "16", "--batch_size", "2",
           "--epochs", "1", "--teacher", "random", "--no-progress", "--save_dir", str(save_dir)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in save_dir.iterdir()) == ["auc_8bands.csv", "fen_8bands.pt", "last_8bands.pt",
                                                          "loss_8bands.png"]
    epoch_lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 1 and epoch_lines[0].startswith("epoch 1/1  step 2 ")  # 4 patches / global batch 2
    assert proc.stderr.count("training patches") == 1 and "device cpu x 2 processes" in proc.stderr
    state = torch.load(save_dir / "last_8bands.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and state["step"] == 2 and state["config"]["batch_size"] == 2
    assert not any(k.startswith("module.") for k in state["model"])  # the bare network, not the DDP wrapper
    fen = torch.load(save_dir / "fen_8bands.pt", map_location="cpu", weights_only=True)
    assert fen["config"] == {"bands": 8, "hidden": 128} and fen["meta"]["epoch"] == 1
    (save_dir / "last_8bands.pt").unlink()  # about 1 GB: not left in pytest's tmp
