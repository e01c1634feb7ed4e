"""The optimised attention computes the same mathematics as the plain formulation (BatchNorm modules, einsum, gathered
relative encodings), in eval and training mode, chunked and channels-last, in both implementations: the compiled CPU
kernel (``medt_monai/_extensions``) and the PyTorch operators (GPUs, bf16, tracing, machines without a compiler)."""

from __future__ import annotations

import shutil

import pytest
import torch

from medt_monai._extensions import cpu_attention_available
from medt_monai._extensions.loader import ENV_SWITCH
from medt_monai.networks import set_memory_lean
from medt_monai.networks.blocks import AxialAttention
from medt_monai.networks.nets import MedT


@pytest.fixture(params=["kernel", "pytorch"])
def implementation(request, monkeypatch):
    """Run a test with the compiled CPU kernel, then with the PyTorch implementation."""
    if request.param == "pytorch":
        monkeypatch.setenv(ENV_SWITCH, "0")
    elif not cpu_attention_available():
        pytest.skip("the CPU attention kernel could not be built here (see the warning); PyTorch fallback tested")
    return request.param


def _use(implementation: str, monkeypatch) -> None:
    monkeypatch.setenv(ENV_SWITCH, "1" if implementation == "kernel" else "0")


def test_cpu_kernel_is_built_where_a_compiler_exists(monkeypatch):
    """The speed of the CPU numbers in docs/performance.md depends on it; a silent fallback would hide a broken build."""
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine: MedT uses the PyTorch implementation")
    assert cpu_attention_available()


def _plain(layer: AxialAttention, x: torch.Tensor) -> torch.Tensor:
    """Eq. 2 / Eq. 3 written out directly, with the layer's own BatchNorm modules (the library's reference)."""
    return layer.reference_forward(x)


def _randomise(layer: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, tensor in layer.state_dict().items():
            if tensor.dtype.is_floating_point and "norm" in name or "gate" in name:
                tensor.copy_(
                    torch.rand_like(tensor) + 0.5 if "var" in name or "weight" in name else torch.randn_like(tensor)
                )


@pytest.mark.parametrize(
    "attention, placement",
    [("nopos", "before_norm"), ("axial", "before_norm"), ("gated", "before_norm"), ("gated", "after_norm")],
)
@pytest.mark.parametrize("axis", [0, 1])
# two softmax code paths of the PyTorch implementation; the longer rows in a layer built for longer ones (central
# offsets of the relative table)
@pytest.mark.parametrize("length, axis_length", [(12, 12), (20, 23)], ids=["short_rows", "long_rows_longer_table"])
def test_fused_attention_equals_plain_formulation_in_eval_and_training(
    attention, placement, axis, length, axis_length, implementation
):
    torch.manual_seed(0)
    options = {"attention": attention, "gate_placement": placement}
    fused = AxialAttention(32, axis_length, axis, **options)
    _randomise(fused)
    plain = AxialAttention(32, axis_length, axis, **options)
    plain.load_state_dict(fused.state_dict())
    fused.max_lines = 7  # PyTorch: 30 lines in chunks of 7, training statistics must not depend on the chunking
    x = torch.randn(3, 32, 10, length) if axis else torch.randn(3, 32, length, 10)
    for training in (False, True, False):  # eval, training (updates running stats), eval with the updated stats
        fused.train(training)
        plain.train(training)
        x_fused, x_plain = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_fused, out_plain = fused(x_fused), _plain(plain, x_plain)
        torch.testing.assert_close(out_fused, out_plain, rtol=1e-4, atol=1e-4)
        weights = torch.randn_like(out_plain)
        (out_fused * weights).sum().backward()
        (out_plain * weights).sum().backward()
        assert (x_fused.grad - x_plain.grad).abs().max() <= 1e-4 * x_plain.grad.abs().max()
        # float round-off, relative to the layer's largest gradient (gates cancelled by BatchNorm have ~0 gradients)
        scale = max(p.grad.abs().max() for p in plain.parameters() if p.grad is not None)
        for (name, p_fused), p_plain in zip(fused.named_parameters(), plain.parameters()):
            if name in ("qk_norm.bias", "qr_norm.bias", "kr_norm.bias"):
                # a per-head shift of the logits: softmax is invariant to it, its exact gradient is 0 (both are
                # round-off), so only the absence of a real gradient can be checked.
                p_fused.grad = p_plain.grad = None
                continue
            grad_plain = p_plain.grad if p_plain.grad is not None else torch.zeros_like(p_plain)
            grad_fused = p_fused.grad if p_fused.grad is not None else torch.zeros_like(p_fused)
            error = (grad_fused - grad_plain).abs().max() / scale
            assert error < 1e-4, f"{name} (training={training}): relative error {error:.2e}"
            p_fused.grad = p_plain.grad = None
    torch.testing.assert_close(fused.state_dict(), plain.state_dict(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", ["nopos", "gated"])
def test_training_mode_without_gradients_uses_batch_statistics(attention, implementation):
    """A training-mode forward under ``torch.no_grad`` (the authors' "validation", MONAI's ``train_mode`` without
    gradients) normalises with the batch statistics and updates the running ones, as with gradients."""
    torch.manual_seed(0)
    layer = AxialAttention(32, 12, 1, attention=attention)
    _randomise(layer)
    reference = AxialAttention(32, 12, 1, attention=attention)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(3, 32, 5, 12)
    with torch.no_grad():
        out = layer(x)
    expected = _plain(reference, x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.state_dict(), reference.state_dict(), rtol=1e-5, atol=1e-6)


def test_memory_lean_inference_and_channels_last_give_the_same_output():
    torch.manual_seed(0)
    network = MedT(img_size=128).eval()
    image = torch.rand(2, 3, 128, 128)
    with torch.inference_mode():
        expected = network(image)
        assert set_memory_lean(network, 7) == 2 * (3 + 8)  # 11 blocks, height + width attention each
        lean = network(image)
        set_memory_lean(network, None)
        channels_last = network.to(memory_format=torch.channels_last)(image.to(memory_format=torch.channels_last))
    torch.testing.assert_close(lean, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(channels_last, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
def test_kernel_and_chunked_pytorch_training_agree_on_medt(memory_format, monkeypatch):
    """One training step of a whole MedT (every head width: 1-8 query channels, lines of 2-32 positions) in the CPU
    kernel and in the PyTorch implementation, chunked: same output, parameter gradients and running statistics.

    In float64: in float32 both differ from the exact gradients by round-off that training-mode BatchNorm over tiny
    deep maps (batch 2, 4x4 patches) amplifies to several per cent for some parameters, alike for both."""
    if not cpu_attention_available():
        pytest.skip("the CPU attention kernel could not be built here (see the warning)")
    torch.manual_seed(0)
    network = MedT(img_size=64).double().to(memory_format=memory_format)
    chunked = MedT(img_size=64).double().to(memory_format=memory_format)
    chunked.load_state_dict(network.state_dict())
    set_memory_lean(chunked, 3)
    image = torch.rand(2, 3, 64, 64, dtype=torch.float64).contiguous(memory_format=memory_format)
    _use("kernel", monkeypatch)
    expected = network(image)
    expected.square().sum().backward()
    _use("pytorch", monkeypatch)
    out = chunked(image)
    out.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    scale = max(p.grad.abs().max() for p in network.parameters() if p.grad is not None)
    for (name, p), p_chunked in zip(network.named_parameters(), chunked.parameters()):
        if p.grad is not None:
            assert (p_chunked.grad - p.grad).abs().max() < 1e-10 * scale, name
    torch.testing.assert_close(chunked.state_dict(), network.state_dict(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("attention", ["nopos", "gated"])
def test_kernel_in_float64_equals_plain_formulation_to_double_round_off(attention):
    """In float64 the kernel must agree with the plain formulation far below float32 round-off: a wrong index or a
    missing term cannot hide in a tolerance."""
    if not cpu_attention_available():
        pytest.skip("the CPU attention kernel could not be built here (see the warning)")
    torch.manual_seed(0)
    layer = AxialAttention(
        64, 19, 1, attention=attention
    ).double()  # 8 query channels per head, a table longer than the rows
    _randomise(layer)
    x = torch.randn(2, 64, 5, 17, dtype=torch.float64, requires_grad=True)
    for training in (True, False):
        layer.train(training)
        reference = AxialAttention(64, 19, 1, attention=attention).double().train(training)
        reference.load_state_dict(layer.state_dict())
        out, expected = layer(x), _plain(reference, x)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
        weights = torch.randn_like(out)
        (grad,) = torch.autograd.grad((out * weights).sum(), x)
        (grad_expected,) = torch.autograd.grad((expected * weights).sum(), x)
        torch.testing.assert_close(grad, grad_expected, rtol=1e-9, atol=1e-9)
        if attention == "gated":
            (grad_table,) = torch.autograd.grad((layer(x) * weights).sum(), layer.relative_position)
            (grad_table_expected,) = torch.autograd.grad(
                (_plain(reference, x) * weights).sum(), reference.relative_position
            )
            torch.testing.assert_close(grad_table, grad_table_expected, rtol=1e-9, atol=1e-9)


def test_bf16_autocast_runs_and_stays_close():
    torch.manual_seed(0)
    network = MedT(img_size=64).eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        expected = network(image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = network(image).float()
    assert torch.isfinite(low).all()
    assert (low - expected).abs().max() < 0.1 * expected.abs().max() + 0.1


def test_batched_metatensor_input_with_per_image_metadata():
    """What MONAI engines feed the network: a collated MetaTensor batch (chunking must not split its metadata)."""
    from monai.data import MetaTensor, list_data_collate

    torch.manual_seed(0)
    network = MedT(img_size=64)
    set_memory_lean(network, 5)
    items = [{"image": MetaTensor(torch.rand(3, 64, 64), meta={"filename_or_obj": f"img{i}.png"})} for i in range(2)]
    batch = list_data_collate(items)["image"]
    out = network(batch)
    out.sum().backward()
    assert out.shape == (2, 2, 64, 64)
    torch.testing.assert_close(out.as_subclass(torch.Tensor), network(batch.as_tensor()).as_subclass(torch.Tensor))


def _compile_graph_ops(module: torch.nn.Module, *inputs: torch.Tensor) -> tuple[set[str], torch.Tensor]:
    """The operators in the graph that ``torch.compile`` (dynamo) captures of ``module(*inputs)``, and its output
    computed through AOTAutograd's ``aot_eager`` backend (fake-tensor tracing and the registered gradients, no code
    generation, so it takes seconds)."""
    from torch._dynamo.backends.common import aot_autograd

    ops: set[str] = set()

    def recording(graph, example_inputs):
        ops.update(
            str(node.target).removesuffix(".default") for node in graph.graph.nodes if node.op == "call_function"
        )
        return aot_autograd(fw_compiler=lambda g, _: g, bw_compiler=lambda g, _: g)(graph, example_inputs)

    torch._dynamo.reset()
    out = torch.compile(module, backend=recording, fullgraph=True)(*inputs)
    return ops, out


@pytest.mark.parametrize("attention", ["nopos", "gated"])
def test_torch_compile_keeps_the_kernel_in_one_graph_with_the_same_gradients(attention):
    """``torch.compile`` must not fall back to the slower PyTorch operators on CPU, nor break the graph around the
    kernel: its operators have shape functions (fake tensors) and registered gradients."""
    if not cpu_attention_available():
        pytest.skip("the CPU attention kernel could not be built here (see the warning)")
    torch.manual_seed(0)
    layer = AxialAttention(32, 16, 1, attention=attention).double()
    _randomise(layer)
    x = torch.randn(2, 32, 8, 16, dtype=torch.float64, requires_grad=True)
    expected = layer(x)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), x)
    ops, out = _compile_graph_ops(layer, x)
    assert {"medt_monai.axial_attention_forward", "medt_monai.axial_attention_statistics"} <= ops
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, grad_expected, rtol=1e-10, atol=1e-10)
    layer.eval()
    with torch.inference_mode():
        ops, out = _compile_graph_ops(layer, x.detach())
        assert "medt_monai.axial_attention_forward" in ops
        torch.testing.assert_close(out, _plain(layer, x.detach()), rtol=1e-10, atol=1e-10)


def test_flop_counter_counts_the_kernel_like_a_matrix_formulation():
    """``scripts/benchmark.py`` reports FLOP/s from ``FlopCounterMode``: the kernel's products must count as the
    einsums / bmms of the authors' formulation would (hand count for one small map)."""
    if not cpu_attention_available():
        pytest.skip("the CPU attention kernel could not be built here (see the warning)")
    from torch.utils.flop_counter import FlopCounterMode

    qkv = torch.randn(1, 32, 4, 8, requires_grad=True)  # 8 heads of d = 2 (h = 1); width attention: 4 lines of L = 8
    scales, shift, table = torch.rand(8, 3), torch.zeros(8), torch.randn(4, 15)
    lines_heads_pairs = 4 * 8 * 8 * 8
    for positional, per_pair in ((False, 1 + 2), (True, 1 + 2 + 1 + 1 + 2)):
        with FlopCounterMode(display=False) as counter:
            out = torch.ops.medt_monai.axial_attention_forward(
                qkv, 1, 8, scales, shift, table if positional else None, None
            )
        assert counter.get_total_flops() == 2 * lines_heads_pairs * per_pair
        with FlopCounterMode(display=False) as counter:
            sum(o.sum() for o in out).backward()
        assert counter.get_total_flops() == 4 * lines_heads_pairs * per_pair
