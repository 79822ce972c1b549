"""torchrun with 2 CPU processes (gloo): trains, one process evaluates and writes one set of checkpoints."""
from __future__ import annotations

import pytest
import torch
from conftest import REPO, run_torchrun, worker_env

from data.synthetic import generate


def test_two_process_gloo_run_writes_one_checkpoint(tmp_path):
    data = generate(tmp_path / "had", n_train=4, n_test=2, size=16, bands=10)
    save_dir = tmp_path / "ck"
    proc = run_torchrun(["train.py", "--data_path", data, "--input_channel", "8", "--img_size", "16", "--batch_size",
                         "2", "--epochs", "1", "--teacher", "random", "--no-progress", "--save_dir", save_dir],
                        worker_env(), REPO, 300)
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


def test_nccl_is_told_its_device(monkeypatch):
    """Under torchrun on GPUs each process starts NCCL with its own ``cuda:LOCAL_RANK`` as ``device_id`` (without
    it every barrier() warns that the device is unknown). Simulated: no GPU or process group is needed."""
    import utils.dist

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(utils.dist, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(utils.dist.dist, "init_process_group", lambda *a, **k: calls.append((a, k)))
    d = utils.dist.Dist("cuda")
    assert d.device == torch.device("cuda", 1)
    assert calls == [("set_device", torch.device("cuda", 1)), (("nccl",), {"device_id": torch.device("cuda", 1)})]


def test_a_group_that_exists_is_used_and_left_to_its_maker(monkeypatch, tmp_path):
    """Under torchrun with a process group made already (by the caller, or an earlier library call: what
    utils.dist.process_dist relies on), Dist uses it as it is and close() leaves it up; a device of the other
    kind is one line. A real one-process gloo group stands in for torchrun's."""
    import torch.distributed as dist

    import utils.dist
    from utils.device import DeviceError

    dist.init_process_group("gloo", init_method=(tmp_path / "store").as_uri(), rank=0, world_size=1)
    try:
        monkeypatch.setenv("WORLD_SIZE", "2")
        with utils.dist.Dist("cpu") as d:
            assert d.device == torch.device("cpu") and not d.owned
        assert dist.is_initialized()
        monkeypatch.setattr(utils.dist, "pick_device", lambda name: torch.device("cuda"))
        with pytest.raises(DeviceError, match=r"^device='cuda', but this process's group runs on cpu \(gloo\); "
                                              r"under torchrun one process keeps one device$"):
            utils.dist.Dist("cuda")
    finally:
        dist.destroy_process_group()


def test_abu_transfer_scores_in_full_float32(monkeypatch):
    """benchmarks/studies/abu_transfer.py scores the airports in the process that trained (TF32 and cuDNN's timed
    kernel choice on): it turns both off first, as test.py scores."""
    from benchmarks.studies import abu_transfer

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        abu_transfer.score_as_test_py(torch.device("cuda"))  # only flags: no GPU needed
        assert not (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
                    or torch.backends.cudnn.benchmark)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark = saved
