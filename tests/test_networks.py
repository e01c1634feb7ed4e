"""Behaviour of the MedT network family that users rely on: shapes, exactness against the authors' code, gates, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss

from medt_monai.networks import NETWORKS, REMOVED_NAMES, gate_values, get_network, set_gates_trainable
from medt_monai.networks.blocks import AxialAttention, AxialBlock, axial_attention_layer
from medt_monai.networks.convert import convert_authors_state_dict, load_authors_checkpoint
from medt_monai.networks.nets import AxialUNet, GatedAxialUNet, LoGo, MedT

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "original_vectors"
FACTORIES = {"medt": MedT, "logo": LoGo, "axialunet": AxialUNet, "gated": GatedAxialUNet}
#: the axial-attention networks of the registry (those sized by ``img_size``)
VARIANTS = [name for name, spec in NETWORKS.items() if spec.takes_img_size]


def _reference(name: str) -> dict:
    path = VECTORS / f"{name}_128.pt"
    if not path.exists():
        pytest.skip(f"reference vectors not found at {path} (they live in ../shared/reference/original_vectors)")
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_converted_authors_weights_reproduce_reference_outputs(name):
    reference = _reference(name)
    network = FACTORIES[name]().eval()
    network.load_state_dict(convert_authors_state_dict(reference["state_dict"], network))
    with torch.inference_mode():
        output = network(reference["input"])
    assert output.shape == reference["output"].shape == (2, 2, 128, 128)
    assert (output - reference["output"]).abs().max().item() <= 1e-5


def test_converter_accepts_dataparallel_prefix_and_checkpoint_files(tmp_path):
    reference = _reference("gated")
    wrapped = {f"module.{k}": v for k, v in reference["state_dict"].items()}
    torch.save(wrapped, tmp_path / "authors.pth")
    network = load_authors_checkpoint(GatedAxialUNet(), tmp_path / "authors.pth").eval()
    with torch.inference_mode():
        assert torch.allclose(network(reference["input"]), reference["output"], atol=1e-5)
    gates = gate_values(network)["branch.stages.0.0.height_attention"]
    assert gates.tolist() == pytest.approx(
        [reference["state_dict"][f"layer1.0.hight_block.{g}"].item() for g in ("f_qr", "f_kr", "f_sv", "f_sve")]
    )


def test_converter_rejects_mismatched_network_and_bad_files(tmp_path):
    reference = _reference("medt")
    with pytest.raises(ValueError, match="MedT/LoGo model but the target network is AxialUNet"):
        convert_authors_state_dict(reference["state_dict"], AxialUNet())
    with pytest.raises(ValueError, match="does not fit MedT"):
        convert_authors_state_dict(reference["state_dict"], MedT(img_size=256))
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pth: not a readable PyTorch checkpoint"):
        load_authors_checkpoint(MedT(), broken)


def test_parameter_counts_match_the_authors_effective_counts():
    # The authors' code counts 1,560,140 for MedT, of which 35,570 are never used in forward (README table).
    counts = {name: sum(p.numel() for p in FACTORIES[name]().parameters()) for name in FACTORIES}
    assert counts == {"medt": 1_524_570, "logo": 1_529_498, "axialunet": 1_326_850, "gated": 1_326_914}


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("size", [(128, 128), (256, 256), (192, 320)])
def test_every_variant_returns_logits_of_the_input_size(name, size):
    network = get_network(name, img_size=size).eval()
    with torch.inference_mode():
        output = network(torch.rand(1, 3, *size))
    assert output.shape == (1, 2, *size)
    assert torch.isfinite(output).all()


def test_full_resolution_skip_adds_two_convolutions_at_the_input_resolution_and_scripts():
    torch.manual_seed(0)
    network = MedT(img_size=64, full_resolution_skip=True)
    added = sum(p.numel() for p in network.parameters()) - sum(p.numel() for p in MedT(img_size=64).parameters())
    assert added == (3 * 9 * 16 + 2 * 16) + (16 * 9 * 16 + 2 * 16)  # 3x3 convs 3 -> 16 -> 16, each with BN
    image = torch.rand(2, 3, 64, 64)
    torch.nn.functional.cross_entropy(network(image), torch.randint(0, 2, (2, 64, 64))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.full_resolution.parameters())
    network = _trained_like(network)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(network)(image), network(image), rtol=1e-5, atol=1e-5)


def test_branch_supervision_returns_each_branch_logits_in_training_only_and_deep_supervision_loss_weighs_them():
    torch.manual_seed(0)
    network = MedT(img_size=64, full_resolution_skip=True, branch_supervision=True)
    plain = MedT(img_size=64, full_resolution_skip=True)
    extra = {k for k in network.state_dict() if k not in plain.state_dict()}
    assert extra == {f"{b}_head.{p}" for b in ("global", "local") for p in ("weight", "bias")}
    plain.load_state_dict({k: v for k, v in network.state_dict().items() if k not in extra})
    image, label = torch.rand(2, 3, 64, 64), torch.randint(0, 2, (2, 1, 64, 64))
    logits, global_logits, local_logits = network(image)
    torch.testing.assert_close(logits, plain(image))  # the heads only add outputs
    torch.testing.assert_close(global_logits, network.global_head(network.global_branch(image)))
    torch.testing.assert_close(local_logits, network.local_head(network._local_features(image)))
    # DeepSupervisionLoss(weight_mode="two") (the bundle's weights, tested in test_bundle.py):
    # CE(logits) + 0.5 CE(global) + 0.5 CE(local)
    loss = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.0), weight_mode="two")
    ce = [torch.nn.functional.cross_entropy(o, label[:, 0]) for o in (logits, global_logits, local_logits)]
    torch.testing.assert_close(loss([logits, global_logits, local_logits], label), ce[0] + 0.5 * (ce[1] + ce[2]))
    loss([logits, global_logits, local_logits], label).backward()
    assert network.global_head.weight.grad.abs().sum() > 0 and network.local_head.weight.grad.abs().sum() > 0
    network = _trained_like(network)  # eval mode: one tensor, as inference, evaluation and MONAI Label expect
    with torch.no_grad():
        torch.testing.assert_close(network(image), _trained_like(plain)(image))
        torch.testing.assert_close(torch.jit.script(network)(image), network(image), rtol=1e-5, atol=1e-5)


def test_zero_init_residual_starts_every_attention_block_as_its_shortcut_and_then_trains_them():
    torch.manual_seed(0)
    network = MedT(img_size=64, zero_init_residual=True)
    assert network.state_dict().keys() == MedT(img_size=64).state_dict().keys()  # weights stay interchangeable
    blocks = [m for m in network.modules() if isinstance(m, AxialBlock)]
    assert len(blocks) == sum((1, 2)) + sum((1, 2, 4, 1))  # global and local branch blocks
    for block in blocks[:2]:  # at initialisation a block is ReLU(shortcut(x)), in training and in eval mode
        x = torch.randn(2, block.reduce[0].in_channels, 16, 16)
        for training in (True, False):
            block.train(training)
            torch.testing.assert_close(block(x), torch.relu(block.shortcut(x)))
    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    for _ in range(2):  # step 1 moves the zeroed weights, step 2 reaches the attention layers behind them
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(
            network(torch.rand(2, 3, 64, 64)), torch.randint(0, 2, (2, 64, 64))
        ).backward()
        optimizer.step()
    assert all(block.expand[1].weight.abs().min() > 0 for block in blocks)
    assert all(block.reduce[0].weight.grad.abs().sum() > 0 for block in blocks)


def test_smaller_inputs_than_img_size_use_the_central_relative_encodings():
    network = MedT(img_size=256).eval()
    with torch.inference_mode():
        assert network(torch.rand(1, 3, 128, 192)).shape == (1, 2, 128, 192)


def test_multiclass_output_and_single_channel_input_train():
    network = MedT(in_channels=1, out_channels=4, img_size=64)
    image, label = torch.rand(2, 1, 64, 64), torch.randint(0, 4, (2, 64, 64))
    logits = network(image)
    assert logits.shape == (2, 4, 64, 64)
    torch.nn.functional.cross_entropy(logits, label).backward()
    assert all(p.grad is not None for p in network.parameters())


def test_local_branch_sees_every_patch_of_the_grid():
    # The authors' loop only covered the top-left 128x128 at larger sizes; ours must react to every patch.
    network = MedT(branches=["local"], img_size=256).eval()
    image = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        base = network(image)
        image[..., 200:, 200:] += 1.0  # bottom-right patch only
        changed = (network(image) - base).abs().amax(dim=1)[0]
    assert changed[200:, 200:].max() > 1e-3
    assert changed[:128, :128].max() == 0  # patches are independent in the local-only network


def test_gates_freeze_and_unfreeze():
    network = MedT(img_size=64)
    assert set_gates_trainable(network, False) == 3 * 2 * 4  # 3 gated blocks x 2 axes x 4 gates
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2, weight_decay=1e-5)
    before = gate_values(network)
    torch.nn.functional.cross_entropy(network(torch.rand(2, 3, 64, 64)), torch.randint(0, 2, (2, 64, 64))).backward()
    optimizer.step()
    after = gate_values(network)
    assert all(torch.equal(before[k], after[k]) for k in before)
    set_gates_trainable(network, True)
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(network(torch.rand(2, 3, 64, 64)), torch.randint(0, 2, (2, 64, 64))).backward()
    optimizer.step()
    assert any(not torch.equal(after[k], v) for k, v in gate_values(network).items())


def _relative_change_from_gate(placement: str) -> float:
    torch.manual_seed(0)
    layer = AxialAttention(16, 32, axis=0, attention="gated", gate_placement=placement).train()
    x = torch.randn(4, 16, 32, 32)
    base = layer(x)
    with torch.no_grad():
        layer.gate_q.fill_(1.0)
        layer.gate_v2.fill_(1.0)
    return ((layer(x) - base).norm() / base.norm()).item()


def test_gates_before_norm_are_cancelled_by_batchnorm_gates_after_norm_are_not():
    assert _relative_change_from_gate("before_norm") < 0.02
    assert _relative_change_from_gate("after_norm") > 0.2


def test_attention_options_are_checked_once_where_they_enter_and_reach_every_layer(monkeypatch):
    import medt_monai.networks.blocks.axial_attention as attention_module

    calls = []
    check = attention_module._check_options
    monkeypatch.setattr(attention_module, "_check_options", lambda *a: calls.append(a) or check(*a))
    network = MedT(img_size=64, gate_placement="after_norm", num_heads=4)
    layers = [m for m in network.modules() if isinstance(m, AxialAttention)]
    # once per branch where the options enter MedT, once per layer that the factories build; no level in between
    assert len(calls) == 2 + len(layers)
    assert {(m.num_heads, m.gates_after_norm) for m in layers} == {(4, True)}
    assert {m.gated for m in network.global_branch.modules() if isinstance(m, AxialAttention)} == {True}
    assert {m.positional for m in network.local_branch.modules() if isinstance(m, AxialAttention)} == {False}
    block = AxialBlock(32, 32, (8, 8), attention_layer=axial_attention_layer("gated", num_heads=2))
    assert block.height_attention.gated and block.width_attention.num_heads == 2 and block.width_attention.axis == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spatial_dims": 3}, "spatial_dims=3 is not supported"),
        ({"channels": (24, 48, 96, 192)}, "multiple of 4 \\* num_heads = 32"),
        ({"img_size": (128,)}, "img_size must be"),
        ({"patch_grid": (4, 0)}, "patch_grid must be"),
        ({"branches": ["middle"]}, "branches must be"),
        ({"branches": ["global"], "branch_supervision": True}, "branch_supervision needs both branches"),
        ({"global_attention": "gaussian"}, "attention must be one of"),
        ({"gate_placement": "inside"}, "gate_placement must be one of"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MedT(**kwargs)


@pytest.mark.parametrize(
    "network, size, message",
    [
        (MedT(img_size=128), (96, 128), "height must be a multiple of 64"),
        (MedT(img_size=128), (128, 256), "width a multiple of 64 and at most 128"),
        (AxialUNet(img_size=64), (40, 64), "multiple of 16"),
    ],
)
def test_unsupported_input_sizes_raise_a_clear_error(network, size, message):
    with pytest.raises(ValueError, match=message):
        network(torch.rand(1, 3, *size))


def _trained_like(network: torch.nn.Module) -> torch.nn.Module:
    """``network`` in eval mode with BatchNorm running statistics and gates away from their initial values, so folding
    them into the convolutions and the attention is exercised (fresh statistics are the identity)."""
    generator = torch.Generator().manual_seed(0)
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=generator) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) * 1.5 + 0.5)
        if isinstance(module, AxialAttention):
            for gate in module.gates():
                gate.data.mul_(1.5)
    return network.eval()


@pytest.mark.parametrize("attention, placement", [("nopos", "before_norm"), ("axial", "before_norm"), ("gated", "before_norm"),
                                             ("gated", "after_norm")])  # fmt: skip
def test_torchscript_script_of_every_attention_kind_matches_eager(attention, placement):
    torch.manual_seed(0)
    layer = _trained_like(AxialAttention(16, 12, axis=1, num_heads=2, attention=attention, gate_placement=placement))
    scripted = torch.jit.script(layer)
    x = torch.randn(2, 16, 5, 12)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), layer(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(scripted(x[..., :7]), layer(x[..., :7]), rtol=1e-5, atol=1e-5)  # shorter lines


# the two network structures (LoGo is MedT, GatedAxialUNet is AxialUNet, with other attention kinds)
@pytest.mark.parametrize("name", ["medt", "axial_unet"])
def test_torchscript_script_matches_eager_and_survives_save_and_load(name, tmp_path):
    torch.manual_seed(0)
    network = _trained_like(get_network(name, img_size=128))
    images = [torch.rand(2, 3, 128, 128), torch.rand(1, 3, 64, 128)]  # any batch, any supported size
    torch.jit.save(torch.jit.script(network), str(tmp_path / "model.ts"))
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    with torch.no_grad():
        for image in images:
            torch.testing.assert_close(scripted(image), network(image), rtol=1e-5, atol=1e-5)
    # the eager network's checks, compiled (a loaded TorchScript model raises them as torch.jit.Error)
    with pytest.raises(torch.jit.Error, match="ValueError: input size 40x128 is not supported"):
        scripted(torch.rand(1, 3, 40, 128))
    with pytest.raises(torch.jit.Error, match="eval mode only"):
        scripted.train()(images[1])


@pytest.mark.parametrize("name", ["medt", "axial_unet"])
def test_torchscript_trace_matches_eager(name):
    torch.manual_seed(0)
    network = _trained_like(get_network(name, img_size=64))
    image = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        expected = network(image)
    traced = torch.jit.trace(network, image[:1], check_trace=False)  # traced at batch 1, used at batch 2
    with torch.inference_mode():
        torch.testing.assert_close(traced(image), expected, rtol=1e-5, atol=1e-5)


def test_onnx_export_matches_eager(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    network = MedT(img_size=64).eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        expected = network(image).numpy()
    path = tmp_path / "medt.onnx"
    torch.onnx.export(network, (image,), str(path), input_names=["image"], output_names=["pred"], dynamo=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"image": image.numpy()})
    assert abs(output - expected).max() <= 1e-4


def test_unet_plus_plus_returns_a_tensor_and_refuses_deep_supervision():
    from monai.networks.nets import BasicUNetPlusPlus

    from medt_monai.networks.nets import UNetPlusPlus

    torch.manual_seed(0)
    network = UNetPlusPlus(spatial_dims=2, in_channels=3, out_channels=2, features=(8, 8, 16, 32, 64, 8)).eval()
    reference = BasicUNetPlusPlus(spatial_dims=2, in_channels=3, out_channels=2, features=(8, 8, 16, 32, 64, 8)).eval()
    reference.load_state_dict(network.state_dict())
    image = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        out = network(image)
        assert isinstance(out, torch.Tensor) and out.shape == (2, 2, 32, 48)
        torch.testing.assert_close(out, reference(image)[0])
    with pytest.raises(ValueError, match="deep supervision"):
        UNetPlusPlus(spatial_dims=2, in_channels=3, out_channels=2, deep_supervision=True)


def test_registry_names_networks_and_variants_are_constructor_arguments():
    assert list(NETWORKS) == [
        "unet", "resunet", "unetpp", "swin_unetr", "axial_unet", "gated_axial_unet", "logo", "medt"
    ]  # fmt: skip
    assert get_network("medt", img_size=64, branches=("global",)).local_branch is None
    shipped = get_network(
        "medt", img_size=64, full_resolution_skip=True, zero_init_residual=True, branch_supervision=True
    )  # the bundle's network_args
    assert shipped.full_resolution is not None and shipped.global_head is not None
    assert all(block.expand[1].weight.abs().sum() == 0 for block in shipped.modules() if isinstance(block, AxialBlock))
    assert get_network("medt", img_size=64).full_resolution is None
    effective = get_network("gated_axial_unet", img_size=64, gate_placement="after_norm")
    assert {m.gates_after_norm for m in effective.modules() if isinstance(m, AxialAttention) and m.gated} == {True}
    assert len(get_network("medt", img_size=64, global_num_blocks=(1, 2, 4, 1)).global_branch.stages) == 4
    assert get_network("logo", img_size=64, branches=("local",)).global_branch is None  # LoGo passes them to MedT
    resunet = get_network("resunet", in_channels=1, out_channels=3)
    assert sum(p.numel() for p in resunet.parameters()) == 6_500_814
    with pytest.raises(ValueError, match=r"unknown network name 'foo'; the networks are: unet, resunet, .*, medt\."):
        get_network("foo")


@pytest.mark.parametrize("name, network, arguments", [(n, *a) for n, a in REMOVED_NAMES.items()])
def test_a_name_of_an_earlier_bundle_is_refused_with_the_network_and_arguments_it_was(name, network, arguments):
    with pytest.raises(ValueError, match=f"--network_name {network} --network_args") as error:
        get_network(name)
    assert str(arguments) in str(error.value) and "removed in bundle 0.14.0" in str(error.value)
    get_network(network, img_size=64, **arguments)  # the replacement builds


def test_an_argument_the_network_does_not_take_is_named_with_its_arguments():
    with pytest.raises(
        TypeError, match=r"'resunet' .* does not take full_resolution_skip; its arguments are: .*strides"
    ):
        get_network("resunet", full_resolution_skip=True)
    with pytest.raises(TypeError, match=r"'logo' .* does not take logit_norm; its arguments are: .*branch_supervision"):
        get_network("logo", logit_norm="scaled")
