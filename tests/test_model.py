"""The full FERD network: shapes of every stage, the frozen teacher, FEN extraction, the losses."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torchvision.models.resnet import Bottleneck

from model.cwl import CWL_PAD, crop
from model.decoder import Decoder, UpBottleneck
from model.fen import FEN
from model.ferd import FERD, FERDOutput, extra_pad
from model.losses import FERDLoss, reconstruction_loss, similarity_loss, zero_centering_loss
from model.mffm import MFFM
from model.teacher import Teacher
from weights.imagenet import TeacherError, apply_teacher_state, imagenet_state_dict, load_teacher
from weights.release import load_fen, save_fen

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shapes_of_every_stage_for_64x64():
    """method sec. 2, for a 64 x 64 x 50 patch (meta tensors: shapes without arithmetic)."""
    with torch.device("meta"):
        net = FERD(50)
        x = torch.empty(2, 50, 64, 64)
        c = net.cwl(x)
        f = net.teacher(c)
        z = net.mffm(f)
        g = net.decoder(z)
        out = net(x)
        proj = net.sfam.fpl(f[0][..., 4:-4, 4:-4])
    assert c.shape == (2, 64, 72, 72)
    assert [t.shape for t in f] == [(2, 256, 72, 72), (2, 512, 36, 36), (2, 1024, 18, 18)]
    assert z.shape == (2, 2048, 9, 9)
    assert [t.shape for t in g] == [(2, 256, 72, 72), (2, 512, 36, 36), (2, 1024, 18, 18)]
    assert out.reconstruction.shape == (2, 50, 64, 64)
    assert proj.shape == (2, 50, 64, 64)
    assert out.p.shape == (2, 1, 64, 64)
    assert net.config == {"bands": 50, "hidden": 128}
    with torch.device("meta"):
        assert FERD(200).config == {"bands": 200, "hidden": 256}


@pytest.mark.parametrize("side,extra", [(64, 0), (16, 0), (12, 4), (13, 3), (57, 7)])
def test_other_sizes_pad_bottom_right_and_crop_back(side, extra):
    """H + 8 + extra is a multiple of 8; every output is cropped back to H x W (method sec. 2)."""
    assert extra_pad(side) == extra and (side + 2 * CWL_PAD + extra) % 8 == 0
    with torch.device("meta"):
        out = FERD(10)(torch.empty(1, 10, side, side + 1))
    assert out.reconstruction.shape == (1, 10, side, side + 1) and out.p.shape == (1, 1, side, side + 1)
    assert out.f[2].shape == out.g[2].shape == (1, 1024, (side + 8 + extra) // 4, (side + 9 + extra_pad(side + 1)) // 4)


@pytest.mark.parametrize("bands", [50, 200])
def test_authors_initialisation_of_the_1x1_layers(bands):
    """CWL, reconstruction CWL, FPL (both convs) and ZCL start as the authors' do: Xavier-normal weights
    (std sqrt(2 / (fan_in + fan_out)), within 10 %) and zero biases; PyTorch's default would give about half
    that spread and non-zero biases. MFFM and decoder convs: Kaiming-normal fan_out (std sqrt(2 / fan_out))."""
    torch.manual_seed(10)
    net = FERD(bands)
    layers = {"cwl": net.cwl.conv, "rec_cwl": net.rec_cwl, "fpl.conv1": net.sfam.fpl.conv1,
              "fpl.conv2": net.sfam.fpl.conv2, "zcl": net.sfam.zcl.conv}
    for name, conv in layers.items():
        w = conv.weight
        xavier = math.sqrt(2.0 / (w.shape[0] + w.shape[1]))
        assert w.std().item() == pytest.approx(xavier, rel=0.10), name
        if conv.bias is not None:
            assert torch.count_nonzero(conv.bias) == 0, name
    assert net.cwl.conv.bias is None and net.rec_cwl.bias is None
    assert net.sfam.fpl.conv1.bias is not None and net.sfam.zcl.conv.bias is not None
    conv = net.mffm.fuse[0].conv1  # 1x1, fan_out = out channels
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / conv.weight.shape[0]), rel=0.10)


def test_blocks_are_torchvision_ones():
    """MFFM's fusion stage and the teacher are torchvision's wide Bottleneck; the teacher's names match
    torchvision's wide_resnet101_2 layers 1-3 exactly (so its ImageNet file loads)."""
    with torch.device("meta"):
        reference = torchvision.models.wide_resnet101_2()
        teacher, mffm, decoder = Teacher(), MFFM(), Decoder()
    ref = {k: v.shape for k, v in reference.state_dict().items() if k.split(".")[0] in ("layer1", "layer2", "layer3")}
    assert {k: v.shape for k, v in teacher.state_dict().items()} == ref
    first = mffm.fuse[0]
    assert type(first) is Bottleneck and len(mffm.fuse) == 3
    assert (first.conv1.in_channels, first.conv2.out_channels, first.conv3.out_channels) == (3072, 1024, 2048)
    assert first.downsample[0].stride == (2, 2) and first.downsample[0].kernel_size == (1, 1)
    assert [len(s) for s in (decoder.layer1, decoder.layer2, decoder.layer3)] == [3, 4, 6]
    up = decoder.layer1[0]
    assert isinstance(up.conv2, torch.nn.ConvTranspose2d) and up.conv2.kernel_size == (2, 2) and up.conv2.bias is None
    assert isinstance(up.downsample[0], torch.nn.ConvTranspose2d) and isinstance(up.downsample[1], torch.nn.BatchNorm2d)


def test_upbottleneck_stride1_is_torchvision_bottleneck():
    torch.manual_seed(0)
    ours = UpBottleneck(64, 16).eval()
    ref = Bottleneck(64, 16, base_width=128).eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 64, 5, 5)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    up = UpBottleneck(64, 8, stride=2, upsample=torch.nn.Sequential(torch.nn.ConvTranspose2d(64, 32, 2, 2, bias=False),
                                                                     torch.nn.BatchNorm2d(32))).eval()
    assert up(x).shape == (2, 32, 10, 10)


# ---------------------------------------------------------------- one real optimiser step, shared below

@pytest.fixture(scope="module")
def stepped():
    """A FERD (8 bands, random teacher) before and after one Adam step on a 2 x 8 x 16 x 16 batch."""
    torch.manual_seed(0)
    net = FERD(8)
    load_teacher(net.teacher, "random", seed=3)
    teacher_before = {k: v.clone() for k, v in net.teacher.state_dict().items()}
    student_bn_before = net.mffm.down2[1].running_mean.clone()
    net.train()
    opt = torch.optim.Adam(net.trainable(), lr=0.005, betas=(0.5, 0.999))
    x = torch.rand(2, 8, 16, 16) * 0.2 - 0.1
    out = net(x)
    loss, terms = FERDLoss()(out, x)
    opt.zero_grad()
    loss.backward()
    cwl_grad = net.cwl.conv.weight.grad.clone()
    opt.step()
    detached = FERDOutput([t.detach() for t in out.f], [t.detach() for t in out.g], out.reconstruction.detach(),
                          out.p.detach())
    return dict(net=net, teacher_before=teacher_before, cwl_grad=cwl_grad, loss=loss.item(), terms=terms,
                student_bn_before=student_bn_before, x=x, out=detached)


def test_teacher_frozen_but_differentiable(stepped):
    net = stepped["net"]
    assert net.training and not net.teacher.training  # train() leaves the teacher in eval mode
    assert all(not m.training for m in net.teacher.modules())
    after = net.teacher.state_dict()
    assert after.keys() == stepped["teacher_before"].keys()
    for k, v in stepped["teacher_before"].items():  # weights and BN running stats, bit for bit
        assert torch.equal(after[k], v), k
    assert all(p.grad is None and not p.requires_grad for p in net.teacher.parameters())
    assert stepped["cwl_grad"].abs().sum().item() > 0  # the gradient reached the CWL through the teacher
    assert not torch.equal(net.mffm.down2[1].running_mean, stepped["student_bn_before"])  # student BN does train
    assert set(map(id, net.trainable())) == {id(p) for n, p in net.named_parameters() if not n.startswith("teacher.")}
    assert math.isfinite(stepped["loss"]) and stepped["loss"] > 0


def test_fen_extracted_equals_network_inference_path(stepped, tmp_path):
    net = stepped["net"]
    fen = net.fen()
    x = torch.rand(1, 8, 20, 23) * 0.2 - 0.1

    @torch.no_grad()
    def network_path(x: torch.Tensor) -> torch.Tensor:  # x + FPL(crop(layer1(CWL(x)))) through net's own modules
        return x + net.sfam.fpl(crop(net.teacher.layer1(net.cwl(x))))

    ours = fen.enhance(x, normalize=False, layout="bhw")
    assert torch.equal(ours, network_path(x))
    assert isinstance(fen, FEN) and not fen.training and fen.config == net.config
    # a copy, not a view: changing the network afterwards leaves the FEN alone
    with torch.no_grad():
        net.sfam.fpl.conv2.bias.add_(1.0)
    assert torch.equal(fen.enhance(x, normalize=False, layout="bhw"), ours)
    assert not torch.equal(network_path(x), ours)
    with torch.no_grad():
        net.sfam.fpl.conv2.bias.sub_(1.0)
    # and the checkpoint test.py loads gives the same cube
    save_fen(fen, tmp_path / "fen.pt", select="last")
    assert torch.equal(load_fen(str(tmp_path / "fen.pt"), 8).enhance(x, normalize=False, layout="bhw"), ours)


# ---------------------------------------------------------------- losses

def test_similarity_loss_zero_for_identical_positive_otherwise():
    torch.manual_seed(0)
    f = [torch.randn(3, 4, 6, 6), torch.randn(3, 8, 3, 3)]
    assert similarity_loss(f, f).item() == pytest.approx(0.0, abs=1e-6)
    assert similarity_loss(f, [2.5 * t for t in f]).item() == pytest.approx(0.0, abs=1e-6)  # cosine: scale-free
    assert similarity_loss(f, [-t for t in f]).item() == pytest.approx(4.0, abs=1e-5)  # 1 - (-1), two pairs
    g = [torch.randn_like(t) for t in f]
    value = similarity_loss(f, g).item()
    manual = sum((1 - torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1))).mean().item()
                 for a, b in zip(f, g))
    assert value > 0.5 and value == pytest.approx(manual, rel=1e-6)


def test_reconstruction_and_zero_centering_losses():
    x = torch.rand(2, 5, 4, 4)
    assert reconstruction_loss(x, x).item() == 0.0
    assert reconstruction_loss(x + 0.5, x).item() == pytest.approx(0.25)
    zero = torch.zeros(2, 1, 4, 4)
    # quirk 1: sigmoid applied twice; at p = 0 the loss is log(1 + e^0) = log 2, never 0
    assert zero_centering_loss(zero).item() == pytest.approx(math.log(2), rel=1e-6)
    assert zero_centering_loss(torch.full_like(zero, 0.5)).item() == pytest.approx(math.log1p(math.exp(0.5)), rel=1e-6)
    # the clean variant: plain BCE of p against 0
    assert zero_centering_loss(zero, double_sigmoid=False).item() == pytest.approx(0.0, abs=1e-7)
    assert zero_centering_loss(torch.full_like(zero, 0.5), double_sigmoid=False).item() == pytest.approx(math.log(2))


def test_ferd_loss_weights(stepped):
    """The loss and its terms against the method's formulas, computed here in float64 from the network's
    outputs: L_sim = sum_k mean_n (1 - cos(flatten f_k, flatten g_k)), L_rec = mean (r - x)^2, L_zc (double
    sigmoid, quirk 1) = mean log(1 + e^p); the paper's weights 1, 0.1, 0.1, and others given."""
    out, x = stepped["out"], stepped["x"].double()
    sim = sum((1 - (fk.double().flatten(1) * gk.double().flatten(1)).sum(1)
               / (fk.double().flatten(1).norm(dim=1) * gk.double().flatten(1).norm(dim=1))).mean()
              for fk, gk in zip(out.f, out.g))
    rec = (out.reconstruction.double() - x).square().mean()
    zc = torch.log1p(torch.exp(out.p.double())).mean()
    terms = stepped["terms"]  # float32, as the network: 1e-6 relative leaves room for its rounding (~1e-7)
    assert len(out.f) == len(out.g) == 3
    for name, value in (("sim", sim), ("rec", rec), ("zc", zc)):
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-6), name
    assert stepped["loss"] == pytest.approx((1.0 * sim + 0.1 * rec + 0.1 * zc).item(), rel=1e-6)
    assert terms["sim"].item() > 0 and terms["zc"].item() >= math.log(2) - 1e-6
    loss, _ = FERDLoss(w_sim=2.0, w_rec=3.0, w_zc=5.0)(out, stepped["x"])
    assert loss.item() == pytest.approx((2 * sim + 3 * rec + 5 * zc).item(), rel=1e-6)


# ---------------------------------------------------------------- teacher weights

@pytest.fixture(scope="module")
def teachers():
    return Teacher(), Teacher()


def test_teacher_from_layer1_only_file_says_the_rest_is_random(teachers, tmp_path):
    """The authors' enc.pt holds layer1 only: layer1 is loaded, layers 2-3 start seeded-random, and it says so."""
    a, b = teachers
    enc = {f"layer1.{k}": (v + 0.5 if v.is_floating_point() else v) for k, v in a.layer1.state_dict().items()}
    torch.save({"state_dict": enc}, tmp_path / "enc.pt")
    msg = load_teacher(a, str(tmp_path / "enc.pt"), seed=4)
    assert "layer1 loaded" in msg and "layer2 and layer3" in msg and "RANDOM" in msg
    assert all(torch.equal(a.state_dict()[k], v) for k, v in enc.items())
    assert "random teacher" in load_teacher(b, "random", seed=4)  # the same seeded start for what the file lacks
    assert torch.equal(a.layer3[5].conv2.weight, b.layer3[5].conv2.weight)
    assert not torch.equal(a.layer1[0].conv1.weight, b.layer1[0].conv1.weight)
    # a full torchvision file: layers 1-3 taken, stem/layer4/fc ignored, the seed irrelevant
    full = dict(b.state_dict()) | {"fc.weight": torch.zeros(3), "conv1.weight": torch.zeros(1)}
    assert "layers 1-3 loaded" in apply_teacher_state(a, full, "full.pth", seed=99)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_teacher_bad_files(teachers, tmp_path):
    t = teachers[0]
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(TeacherError, match="no wide_resnet101_2 layer1"):
        load_teacher(t, str(tmp_path / "other.pt"))
    with pytest.raises(TeacherError, match="not 'imagenet', 'random' or an existing"):
        load_teacher(t, str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherError, match="junk.pt: not a readable"):
        load_teacher(t, str(tmp_path / "junk.pt"))
    part = {f"layer1.{k}": v for k, v in list(t.layer1.state_dict().items())[:-3]}
    with pytest.raises(TeacherError, match="layer1 is incomplete"):
        apply_teacher_state(t, part, "part.pt")
    bad = {f"layer1.{k}": v[..., :1] if v.dim() == 4 else v for k, v in t.layer1.state_dict().items()}
    with pytest.raises(TeacherError, match="has shape"):
        apply_teacher_state(t, bad, "bad.pt")


def test_imagenet_offline_fails_at_once_naming_the_file(tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    where = str(tmp_path / "hub" / "checkpoints" / "wide_resnet101_2-32ee1156.pth")
    with pytest.raises(TeacherError) as err:
        imagenet_state_dict(download=True)
    msg = str(err.value)
    assert "\n" not in msg and where in msg and "unreachable" in msg and "teacher='random'" in msg
    with pytest.raises(TeacherError, match="download=False"):
        imagenet_state_dict(download=False)
    # a cached file is used as it is, without any network
    torch.save({"layer1.0.conv1.weight": torch.ones(1)}, tmp_path / "x.pt")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "x.pt").rename(where)
    assert torch.equal(imagenet_state_dict(download=False)["layer1.0.conv1.weight"], torch.ones(1))
