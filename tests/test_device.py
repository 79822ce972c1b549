"""Devices: pick_device leaves PyTorch's float32 settings alone; test.py's full_fp32 turns TF32 off on CUDA."""
from __future__ import annotations

import pytest
import torch

from utils.device import DeviceError, full_fp32, pick_device


@pytest.fixture
def tf32_flags():
    """The two TF32 switches, put back as they were after the test."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_pick_device_changes_no_float32_setting(tf32_flags):
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True  # e.g. a training run
    assert pick_device("cpu") == torch.device("cpu")
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32


def test_full_fp32_turns_tf32_off_on_cuda_only(tf32_flags):
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
    full_fp32(torch.device("cpu"))
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    full_fp32(torch.device("cuda"))  # only flags: no CUDA device is needed to set them
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


@pytest.mark.parametrize("name, message", [("tpu", "not a device this program runs on"),
                                           ("cuda:99", "cuda")])
def test_unknown_devices_are_one_line_errors(name, message):
    if name.startswith("cuda") and not torch.cuda.is_available():
        message = "CUDA is not available"
    with pytest.raises(DeviceError, match=message):
        pick_device(name)


def test_gpu_chunks_follow_the_cards_memory(monkeypatch):
    """Detector chunks on a GPU: 1 GiB at most, and at most 1/32 of the card (``--max_memory_gb`` bounds host
    memory only); on the CPU their own cache-sized chunks. A plan made without CUDA assumes the cap."""
    from types import SimpleNamespace

    from detectors import lrx, rx
    from utils.memory import GPU_CHUNK_CAP, chunk_bytes

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert chunk_bytes("cuda", 123) == GPU_CHUNK_CAP and chunk_bytes("cpu", 123) == 123
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(total_memory=8 << 30))
    assert chunk_bytes(torch.device("cuda"), 123) == 256 << 20
    assert rx.chunk_pixels(200, "cuda") == (256 << 20) // (8 * 200)
    assert lrx.chunk_width(200, 4096, torch.device("cuda")) == (256 << 20) // (8 * 200 * 200)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(total_memory=80 << 30))
    assert chunk_bytes("cuda:0", 123) == GPU_CHUNK_CAP
