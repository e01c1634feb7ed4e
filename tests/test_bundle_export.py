"""The model zoo's checks of the bundle and its exports: ``verify_metadata`` offline against the published schema (and the
package versions ``metadata.json`` pins), ``verify_net_in_out``, ``ckpt_export`` to TorchScript (traced, and scripted as
the zoo's ``ci/verify_bundle.py`` does with the shipped weights) and ``onnx_export``, each export matching the eager
network.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import BUNDLE, CONFIGS, IMG, INFERENCE, _ok, _run

METADATA = str(CONFIGS / "metadata.json")
SCHEMA = BUNDLE / "docs" / "meta_schema_20240725.json"
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"  # the file published by MONAI (MONAI-extra-test-data 0.8.1)


def test_verify_metadata_offline():
    import hashlib

    assert hashlib.md5(SCHEMA.read_bytes()).hexdigest() == SCHEMA_MD5
    args = ["verify_metadata", "--meta_file", METADATA, "--filepath", str(SCHEMA), "--hash_val", SCHEMA_MD5]
    log = _ok(_run(args, timeout=120))
    assert "skipped downloading" in log and "metadata is verified with no error" in log
    meta = json.loads(Path(METADATA).read_text())
    fmt = meta["network_data_format"]
    assert list(fmt["inputs"]) == ["image"] and list(fmt["outputs"]) == ["pred"]
    assert len(fmt["inputs"]["image"]["spatial_shape"]) == 2  # MONAI Label: 2D model
    assert fmt["outputs"]["pred"]["channel_def"]["0"] == "background"
    from importlib.metadata import version

    for name, pinned in meta["required_packages_version"].items():
        assert version(name) == pinned, f"metadata.json pins {name}=={pinned}, installed {version(name)}"
    assert meta["monai_version"] == version("monai")


def test_verify_net_in_out():
    args = [
        "verify_net_in_out", "network_def", "--meta_file", METADATA, "--config_file", INFERENCE,
        "--img_size", str(IMG), "--_meta_#network_data_format#inputs#image#spatial_shape", f"[{IMG}, {IMG}]",
        "--_meta_#network_data_format#outputs#pred#spatial_shape", f"[{IMG}, {IMG}]",
    ]  # fmt: skip
    assert "verified with no error" in _ok(_run(args, timeout=300))


def _eager(
    model_pt: Path, img_size: int = IMG, output: str | None = "semantic"
) -> tuple[torch.nn.Module, torch.Tensor]:
    """The network of ``inference.json`` with ``model_pt`` (the demo-trained models: ``output="semantic"``; the shipped
    model: None, the config's default)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["img_size"] = img_size
    if output is not None:
        parser["output"] = output
    parser["device"] = "$torch.device('cpu')"
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(model_pt, map_location="cpu", weights_only=True))
    torch.manual_seed(0)
    return net.eval(), torch.rand(2, 3, img_size, img_size)


def test_ckpt_export_torchscript_matches_eager(trained, tmp_path):
    ts = tmp_path / "model.ts"
    args = [
        "ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(trained["model"]),
        "--meta_file", METADATA, "--config_file", INFERENCE, "--img_size", str(IMG), "--output", "semantic",
        "--use_trace", "True", "--input_shape", f"[1, 3, {IMG}, {IMG}]",
    ]  # fmt: skip
    _ok(_run(args, timeout=300))
    net, x = _eager(trained["model"])
    scripted = torch.jit.load(str(ts), map_location="cpu").eval()
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-4, rtol=1e-4)


def test_model_zoo_ckpt_export_scripts_the_shipped_model(tmp_path):
    """The call the model zoo's ``ci/verify_bundle.py`` makes in full mode (``verify_torchscript``): ``ckpt_export``
    of ``network_def`` by ``torch.jit.script`` (no ``use_trace``, no input shape), with the shipped weights, on a copy
    of the bundle laid out as ``models/<name>``; the TorchScript module matches the eager network."""
    from monai.bundle import ckpt_export

    bundle_path = str(tmp_path / "models" / "medt_2d_segmentation")
    shutil.copytree(BUNDLE, bundle_path)
    ckpt_export(
        net_id="network_def",
        filepath=os.path.join(bundle_path, "models/verify_model.ts"),
        ckpt_file=os.path.join(bundle_path, "models", "model.pt"),
        meta_file=os.path.join(bundle_path, "configs/metadata.json"),
        config_file=os.path.join(bundle_path, "configs/inference.json"),
        bundle_root=bundle_path,
    )
    extra = {"metadata.json": ""}
    scripted = torch.jit.load(os.path.join(bundle_path, "models/verify_model.ts"), _extra_files=extra).eval()
    assert json.loads(extra["metadata.json"])["version"] == json.loads(Path(METADATA).read_text())["version"]
    net, _ = _eager(BUNDLE / "models" / "model.pt", img_size=128, output=None)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-5)


def test_onnx_export_matches_eager(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "model.onnx"
    args = [
        "onnx_export", "network_def", "--filepath", str(onnx_path), "--ckpt_file", str(trained["model"]),
        "--meta_file", METADATA, "--config_file", INFERENCE, "--img_size", str(IMG), "--output", "semantic",
        "--use_trace", "True", "--input_shape", f"[1, 3, {IMG}, {IMG}]", "--converter_kwargs", "{'dynamo': True}",
    ]  # fmt: skip
    _ok(_run(args, timeout=600))
    net, x = _eager(trained["model"])
    x = x[:1]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, net(x).numpy(), atol=1e-4, rtol=1e-4)
