"""One training step of the authors' code, pinned: ../shared/reference/train_golden.json.

The network (50 bands) and its input are rebuilt by the rule in ../shared/reference/README.md (section
"train_golden.json"): every floating-point tensor of the state dict is filled from a generator seeded with the
CRC-32 of its name, so no random draw of ours has to agree with theirs. Three Adam steps then run through
``training.loop.train_step`` with ``training.loop.adam``, the very functions the training loop calls, in float64 on the CPU, teacher in eval mode and
everything else in train mode. About a minute and 6 GB on a 2-core CPU.

The rule fills the state dict of ``FERD(bands=50)`` as built, i.e. float32 tensors, so the float64 draws are
rounded to float32 when copied in; the network then runs in float64. Filling a float64 network instead changes
the weights by 6e-8 relative, and the gradient norms of this deep random network by up to 4e-3. Done in this
order, every figure matches the golden to about 1e-13.

Measured on an AMD EPYC (2 cores, 2 torch threads, 2026-12-05; ``run_three_steps()`` against the file): step 0
loss, terms and means bit-identical, the 173 gradient norms 1.3e-16 relative at worst, steps 1-2 (loss,
terms, means) 1.1e-14 at worst (the ZCL map's mean at step 2), the FEN statistics after three steps 4.6e-15.
The tolerance, :data:`REL`, is an error bound of the comparison rather than that figure: float64 rounding
(eps = 2.2e-16) grown by sums whose order other thread counts and CPUs change. A sum of n terms reordered moves
by about sqrt(n) eps in practice (the worst case, n eps, needs every rounding to fall one way); the sums here
run over up to about 10^6 terms (the 409,600 input values, the feature maps), so about 2e-13, and a few such
steps in a row stay far below 1e-10. The regression it guards, a loss computed in float32 (the state of this
project when the file was made, ../shared/reference/README.md), is 4e-6 to 7e-5 apart: 4 to 5
orders of magnitude beyond ``REL``.
"""
from __future__ import annotations

import json
import math
import zlib

import pytest
import torch
from conftest import SHARED, require_shared

from model.ferd import FERD
import train
import training.loop
from model.losses import FERDLoss
from utils.device import torch_threads

GOLDEN = SHARED / "reference" / "train_golden.json"
BANDS = 50

#: Relative tolerance of every comparison with the golden file (the module docstring says why).
REL = 1e-10
#: The figures the golden file holds for each step, beside the gradient norms of step 0.
STEP_KEYS = ("loss", "sim", "rec", "zc", "p_mean", "reconstruction_mean")

#: The golden file names tensors as this project's FERD did when it was made. Should a module be renamed
#: later, map golden name -> current name here; the golden file itself stays as it is.
NAME_MAP: dict[str, str] = {}


def _renamed(name: str, pairs) -> str:
    """``name`` with its prefix ``a`` replaced by ``b`` for the first ``(a, b)`` of ``pairs`` that fits."""
    for a, b in pairs:
        if name.startswith(a):
            return b + name[len(a):]
    return name


def current_name(golden_name: str) -> str:
    return _renamed(golden_name, NAME_MAP.items())


def golden_name(name: str) -> str:
    return _renamed(name, ((new, old) for old, new in NAME_MAP.items()))


def golden_input() -> torch.Tensor:
    """``x = 0.1 sin(0.001 i + 3 cos(0.0007 i))``, ``i = arange(2 * 50 * 64 * 64)``: ``(2, 50, 64, 64)`` float64."""
    i = torch.arange(2 * BANDS * 64 * 64, dtype=torch.float64)
    return (0.1 * torch.sin(0.001 * i + 3 * torch.cos(0.0007 * i))).reshape(2, BANDS, 64, 64)


def fill_by_rule(net: torch.nn.Module) -> None:
    """Every floating-point state tensor from ``Generator().manual_seed(crc32(name))`` (golden names): BN
    ``running_var`` 1 + 0.1 rand, BN ``weight`` 1 + 0.1 randn, BN ``bias`` / ``running_mean`` 0.05 randn,
    any other ``weight`` randn * sqrt(2 / (numel / shape[0])), any other ``bias`` 0.01 randn."""
    bn_names = {f"{m}.{p}" for m, mod in net.named_modules() if isinstance(mod, torch.nn.BatchNorm2d)
                for p in ("weight", "bias", "running_mean", "running_var")}
    with torch.no_grad():
        for name, t in net.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                continue  # num_batches_tracked is left alone
            g = torch.Generator().manual_seed(zlib.crc32(golden_name(name).encode()))
            shape, leaf = t.shape, name.rsplit(".", 1)[1]
            if name in bn_names:
                if leaf == "running_var":
                    v = 1 + 0.1 * torch.rand(shape, generator=g, dtype=torch.float64)
                elif leaf == "weight":
                    v = 1 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
                else:
                    v = 0.05 * torch.randn(shape, generator=g, dtype=torch.float64)
            elif leaf == "weight":
                v = torch.randn(shape, generator=g, dtype=torch.float64) * math.sqrt(2 / (t.numel() / shape[0]))
            else:
                v = 0.01 * torch.randn(shape, generator=g, dtype=torch.float64)
            t.copy_(v)


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(require_shared(GOLDEN).read_text())


@pytest.fixture(scope="module")
def three_steps() -> dict:
    return run_three_steps()


def run_three_steps() -> dict:
    """Run the three steps; return the per-step losses and ZCL/reconstruction means, the step-0
    gradient norms and the FEN statistics afterwards."""
    with torch_threads(2):
        net = FERD(BANDS)
        fill_by_rule(net)  # into the float32 state dict, as the rule says: the draws are rounded to float32 ...
        net.double()       # ... and then the step runs in float64
        net.train()  # the teacher stays in eval mode by construction
        x = golden_input()
        loss_fn = FERDLoss()  # the paper's weights, double sigmoid (quirk 1)
        optimizer = training.loop.adam(net.trainable(), train.parse_args([]))  # train.py's: lr 0.005, betas (0.5, 0.999), fused
        assert optimizer.defaults["fused"] and optimizer.defaults["lr"] == 0.005
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        outputs = []
        hook = net.register_forward_hook(lambda module, inputs, out: outputs.append(
            {"p_mean": out.p.mean().item(), "reconstruction_mean": out.reconstruction.mean().item()}))
        steps, grad_norms = [], {}
        for k in range(3):
            loss, terms = training.loop.train_step(net, loss_fn, optimizer, scaler, x, amp_dtype=None)
            steps.append({"loss": loss, **terms, **outputs[-1]})
            if k == 0:
                grad_norms = {n: p.grad.norm().item() for n, p in net.named_parameters() if p.grad is not None}
        hook.remove()
        fen = net.fen()
        with torch.no_grad():
            out = fen(x)
    return {"steps": steps, "grad_norms": grad_norms,
            "fen": {"mean": out.mean().item(), "abs_sum": out.abs().sum().item(), "max": out.max().item()}}


def test_rule_fills_the_network_it_names(golden):
    """The golden's gradient names are this network's trainable parameters, one for one."""
    net = FERD(BANDS)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert {current_name(n) for n in golden["steps"][0]["grad_norms"]} == trainable
    assert len(trainable) == 173


def test_step0_loss_and_terms(golden, three_steps):
    ref, got = golden["steps"][0], three_steps["steps"][0]
    for key in STEP_KEYS:
        assert got[key] == pytest.approx(ref[key], rel=REL, abs=0), key


def test_step0_every_gradient_norm(golden, three_steps):
    ref, got = golden["steps"][0]["grad_norms"], three_steps["grad_norms"]
    assert len(ref) == 173 and len(got) == 173
    bad = {n: (got[current_name(n)], v) for n, v in ref.items()
           if got[current_name(n)] != pytest.approx(v, rel=REL, abs=0)}
    assert not bad, f"{len(bad)} gradient norms off by more than {REL} relative: {list(bad.items())[:5]}"


def test_later_steps_and_the_fen_after_three(golden, three_steps):
    for k in (1, 2):
        for key in STEP_KEYS:
            assert three_steps["steps"][k][key] == pytest.approx(golden["steps"][k][key], rel=REL, abs=0), (k, key)
    for key in ("mean", "abs_sum", "max"):
        assert three_steps["fen"][key] == pytest.approx(golden["fen_after_3_steps"][key], rel=REL, abs=0), key
