"""Live MONAI Label test: our bundle served by a real MONAI Label 0.8.5 server (our app, monailabel_app/, which
serves 2D images as MONAI Label's monaibundle app does).

One server is started on 127.0.0.1 (free port) from the separate environment that
``scripts/setup_monailabel_env.sh`` builds (``.venv-monailabel``), with a temporary copy of the app
holding a copy of ``bundle/`` as ``model/medt``, behind the app's ASGI layer (``--uvicorn_app``, no login).
Over HTTP it checks what a clinician's 2D client (3D Slicer) does:

* ``GET /info/``: our model is listed as a 2D segmentation model with the bundle's labels;
* ``POST /infer/medt`` with an uploaded non-square PNG: the returned mask has the image's size and
  orientation and equals the bundle's own CLI inference (``python -m monai.bundle run`` with
  ``configs/inference.json``, main environment) on the same image, pixel for pixel, with a minimum object size set
  in the served ``inference.json`` as docs/monailabel.md says (the components under it, and only those, are gone);
* ``PUT /datastore/image`` + ``PUT /datastore/label``: the corrected label is stored and listed;
* ``POST /train/medt`` (1 epoch, the datastore's few images): the training finishes and
  ``models/model.pt`` is rewritten with a checkpoint the network loads.

The server runs in its own process group and is killed in the fixture's ``finally``, whatever happens.
Without the environment the tests skip with the command to create it; with
``MEDT_REQUIRE_MONAILABEL=1`` (CI) they fail instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import _eval_output_bias
from monailabel_helpers import free_port, log_tail, running_server

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundle"
MODEL = "medt"  # the bundle's folder name in the app: <app>/model/medt (no _vX.Y.Z suffix)
ML_VENV = Path(os.environ.get("MEDT_MONAILABEL_VENV", str(ROOT / ".venv-monailabel")))
ML_PYTHON = ML_VENV / "bin" / "python"
REQUIRED = os.environ.get("MEDT_REQUIRE_MONAILABEL", "") == "1"

# The uploaded test image: non-square (W != H) so that a transposed mask cannot pass.
IMG_W, IMG_H = 160, 96
N_SEEDED = 3  # labelled demo images the datastore starts with; the test adds one more
DOCS_DEFAULT = '"object_min_size": 0,'  # what docs/monailabel.md's sed replaces in the served inference.json
MIN_SIZE = 20  # the served bundle's --object_min_size: foreground components under 20 pixels become background

HTTP_TIMEOUT = 120  # any single request
TRAIN_TIMEOUT = 300  # the 1-epoch training task


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


class Client:
    def __init__(self, base: str):
        self.base = base

    def request(self, method, path, query=None, body=None, content_type=None, timeout=HTTP_TIMEOUT):
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        req = urllib.request.Request(url, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method, path, query=None, payload=None, timeout=HTTP_TIMEOUT):
        body = json.dumps(payload).encode() if payload is not None else None
        status, data = self.request(method, path, query, body, "application/json" if body else None, timeout)
        assert status == 200, f"{method} {path} -> HTTP {status}: {data[:2000]!r}"
        return json.loads(data)

    def upload(self, method, path, query, files, fields=None, timeout=HTTP_TIMEOUT):
        body, ctype = _multipart(fields or {}, files)
        status, data = self.request(method, path, query, body, ctype, timeout)
        assert status == 200, f"{method} {path} -> HTTP {status}: {data[:2000]!r}"
        return data


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _read_png(data_or_path) -> np.ndarray:
    from PIL import Image

    src = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else data_or_path
    with Image.open(src) as im:
        return np.array(im)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _label_indices(mask: np.ndarray) -> np.ndarray:
    """A MedT-layout ground truth (0/255, possibly RGB) as label indices 0/1, as MONAI Label stores labels."""
    if mask.ndim == 3:
        mask = mask[..., 0]
    return (mask > 127).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ml_python() -> Path:
    if not ML_PYTHON.exists():
        msg = (
            f"MONAI Label environment not found ({ML_PYTHON}); create it with "
            "`bash scripts/setup_monailabel_env.sh` (takes about 2 minutes from nothing)"
        )
        if REQUIRED:
            pytest.fail(msg + " [MEDT_REQUIRE_MONAILABEL=1]", pytrace=False)
        pytest.skip(msg)
    return ML_PYTHON


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, ml_python):
    """A fresh app (a copy of monailabel_app/ + our bundle with an initial model.pt), a datastore, a test image."""
    import torch
    from monai.bundle import ConfigParser
    from PIL import Image

    from medt_monai.data import make_demo_dataset

    work = tmp_path_factory.mktemp("monailabel")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    # our app, copied so that the server's folders (logs, model) are made outside the checkout
    app = work / "apps" / "medt"
    shutil.copytree(ROOT / "monailabel_app", app, ignore=shutil.ignore_patterns("__pycache__"))
    bundle = app / "model" / MODEL
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("__pycache__", "eval", "logs", "*.pt", "*.ts"))
    (bundle / "models").mkdir(exist_ok=True)
    # a minimum object size, set in the served bundle as docs/monailabel.md's sed sets 3200 for GlaS
    config = bundle / "configs" / "inference.json"
    text = config.read_text()
    assert text.count(DOCS_DEFAULT) == 1, f"docs/monailabel.md's sed no longer matches inference.json: {DOCS_DEFAULT}"
    text = text.replace(DOCS_DEFAULT, f'"object_min_size": {MIN_SIZE},')
    # a seeded semantic network on whole images (the checks below compare masks pixel for pixel and retrain it); the
    # shipped model's scale and instances are served in tests/test_monailabel_wsi.py
    for default, semantic in (
        ("\"image_scale\": \"$medt_monai.data.recipe_default('glas', 'image_scale')\",", '"image_scale": null,'),
        ("\"output\": \"$medt_monai.data.recipe_default('glas', 'output')\",", '"output": "semantic",'),
    ):
        assert text.count(default) == 1, f"inference.json no longer has {default}"
        text = text.replace(default, semantic)
    config.write_text(text)

    # datastore: a few labelled demo images (labels as 0/1 indices, like a client's saved labels)
    demo = make_demo_dataset(seed=0)  # the shared, generated-once demo set (read only here)
    studies = work / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    imgs = sorted((demo / "train" / "img").glob("*.png"))[:N_SEEDED]
    assert len(imgs) == N_SEEDED, f"demo set too small: {demo}"
    for p in imgs:
        shutil.copy(p, studies / p.name)
        gt = _read_png(demo / "train" / "labelcol" / p.name)
        Image.fromarray(_label_indices(gt)).save(studies / "labels" / "final" / p.name)

    # the test image: a demo test image resized to a non-square 160x96 RGB PNG
    src = sorted((demo / "test" / "img").glob("*.png"))[0]
    with Image.open(src) as im:
        test_img = np.array(im.convert("RGB").resize((IMG_W, IMG_H), Image.BILINEAR))
    assert test_img.shape == (IMG_H, IMG_W, 3)
    image_png = work / "case_nonsquare.png"
    Image.fromarray(test_img).save(image_png)

    # models/model.pt: the network's seeded initial weights, saved as the bundle's CheckpointLoader reads
    # them. A fresh network labels (almost) every pixel alike, and an all-one mask cannot show a flip
    # or a transpose, so the output bias is shifted to put the decision threshold inside the widest gap
    # between the test image's sorted logit margins (30th..70th percentile): 30-70 % of the pixels come
    # out foreground, in the network's own pattern, and no pixel sits near a tie that float rounding
    # between the two environments (torch 2.13 here, 2.14 in the server) could flip.
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def", instantiate=True).eval()
    x = parser.get_parsed_content("preprocessing", instantiate=True)({"image": str(image_png)})["image"]
    with torch.no_grad():
        logits = net(torch.as_tensor(x)[None].float())[0]
    n_out = logits.shape[0]
    state = net.state_dict()
    head_bias = _eval_output_bias(state, n_out)
    fg = 0 if n_out == 1 else 1
    margin = logits[0] if n_out == 1 else logits[1] - torch.cat([logits[:1], logits[2:]]).amax(0)
    margin = margin.flatten().sort().values
    lo, hi = int(0.3 * margin.numel()), int(0.7 * margin.numel())
    i = lo + int((margin[lo + 1 : hi] - margin[lo : hi - 1]).argmax())
    state[head_bias][fg] -= (margin[i] + margin[i + 1]) / 2
    net.load_state_dict(state)
    torch.save({"model": net.state_dict()}, bundle / "models" / "model.pt")

    return {"work": work, "app": app, "bundle": bundle, "studies": studies, "image": image_png, "env": env}


@pytest.fixture(scope="module")
def server(workspace, ml_python):
    port = free_port()
    log_path = workspace["work"] / "server.log"
    cmd = [
        str(ml_python), "-m", "monailabel.main", "start_server",
        "--app", str(workspace["app"]), "--studies", str(workspace["studies"]),
        "--host", "127.0.0.1", "--port", str(port), "--uvicorn_app", "monailabel_app.server:app",
        "--conf", "preload", "false",
    ]  # fmt: skip
    env = {**workspace["env"], "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false", "CUDA_VISIBLE_DEVICES": ""}
    client = Client(f"http://127.0.0.1:{port}")
    with running_server(cmd, env, log_path, lambda: client.request("GET", "/info/", timeout=5)[0] == 200):
        client.log_path = log_path
        yield client


@pytest.fixture(scope="module")
def server_mask(server, workspace) -> np.ndarray:
    """POST /infer/medt with the uploaded non-square PNG; the returned mask (H, W)."""
    data = server.upload(
        "POST", f"/infer/{MODEL}", {"output": "image"},
        files={"file": ("case_nonsquare.png", workspace["image"].read_bytes())},
        fields={"params": json.dumps({"device": "cpu"})},
    )  # fmt: skip
    return _read_png(bytes(data))


def _cli_mask(workspace, tmp_path_factory, *overrides: str) -> np.ndarray:
    """The bundle's own CLI inference (main environment) on the uploaded PNG with the same model.pt."""
    tmp = tmp_path_factory.mktemp("cli")
    in_dir, out_dir = tmp / "in", tmp / "out"
    in_dir.mkdir()
    shutil.copy(workspace["image"], in_dir / workspace["image"].name)
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(workspace["bundle"] / "configs" / "inference.json"),
        "--bundle_root", str(workspace["bundle"]),
        "--dataset_dir", str(in_dir), "--output_dir", str(out_dir),
        "--device", "$torch.device('cpu')", *overrides,
    ]  # fmt: skip
    r = subprocess.run(cmd, env=workspace["env"], capture_output=True, text=True, timeout=HTTP_TIMEOUT)
    assert r.returncode == 0, f"bundle CLI inference failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    outs = sorted(out_dir.rglob("*.png"))
    assert len(outs) == 1, f"expected one PNG from the CLI, got {outs}"
    return _read_png(outs[0])


@pytest.fixture(scope="module")
def cli_mask(workspace, tmp_path_factory) -> np.ndarray:
    """The CLI's mask with the served bundle's configs unchanged (its ``object_min_size`` of ``MIN_SIZE``)."""
    return _cli_mask(workspace, tmp_path_factory)


@pytest.fixture(scope="module")
def cli_mask_every_component(workspace, tmp_path_factory) -> np.ndarray:
    """The CLI's mask with ``--object_min_size 0``: every predicted component kept."""
    return _cli_mask(workspace, tmp_path_factory, "--object_min_size", "0")


@pytest.fixture(scope="module")
def corrected_label(server, workspace, server_mask, cli_mask) -> tuple[str, np.ndarray]:
    """The clinician's correction of the prediction, saved to the datastore as the final label.

    (Depends on both masks so that they are taken with the initial model.pt, before /train.)"""
    image_id = "case_nonsquare"
    image_png = workspace["image"].read_bytes()
    server.upload("PUT", "/datastore/image", {"image": image_id}, files={"file": (f"{image_id}.png", image_png)})
    # what a viewer does next: infer by the datastore's image id (same model.pt as the upload's mask)
    by_id = _read_png(server.upload("POST", f"/infer/{MODEL}", {"image": image_id, "output": "image"}, files={}))
    assert by_id.shape == server_mask.shape and np.array_equal(by_id, server_mask), "/infer by image id != by upload"
    corrected = (server_mask > 0).astype(np.uint8)
    corrected[IMG_H // 4 : IMG_H // 2, IMG_W // 8 : IMG_W // 3] = 1  # "painted" foreground
    corrected[-IMG_H // 4 :, -IMG_W // 4 :] = 0  # "erased" region
    server.upload(
        "PUT", "/datastore/label", {"image": image_id, "tag": "final"},
        files={"label": (f"{image_id}.png", _png_bytes(corrected))},
        fields={"params": json.dumps({"label_info": [{"name": "gland", "idx": 1}]})},
    )  # fmt: skip
    return image_id, corrected


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------
def test_info_lists_medt_as_2d_with_bundle_labels(server, workspace):
    info = server.json("GET", "/info/")
    meta = json.loads((workspace["bundle"] / "configs" / "metadata.json").read_text())
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    expected = {v.lower(): int(k) for k, v in channel_def.items() if v.lower() != "background"}
    assert expected, "metadata.json outputs#pred#channel_def has no foreground label"

    model = info["models"].get(MODEL)
    assert model is not None, f"{MODEL} not in /info models: {list(info['models'])}"
    assert model["dimension"] == 2
    assert model["type"] == "segmentation"
    assert model["labels"] == expected
    assert MODEL in info["trainers"], f"no trainer for {MODEL}: {list(info['trainers'])}"
    assert list(info["models"]) == [MODEL]  # nothing else (no SAM2: nothing is downloaded)


def test_infer_matches_bundle_cli(server_mask, cli_mask, workspace):
    from PIL import Image

    # size and orientation: (H, W) of the uploaded image, single channel
    assert server_mask.shape == (IMG_H, IMG_W), f"server mask {server_mask.shape}, image {(IMG_H, IMG_W)}"
    assert cli_mask.shape == (IMG_H, IMG_W), f"CLI mask {cli_mask.shape}, image {(IMG_H, IMG_W)}"
    labels = set(np.unique(server_mask).tolist())
    assert labels <= {0, 1}, f"server mask values {labels}"

    # the CLI saves a 2-class mask for viewing (0/255, `output_scale`); the server returns indices 0/1
    cli_values = set(np.unique(cli_mask).tolist())
    assert cli_values <= {0, 1} or cli_values <= {0, 255}, f"CLI mask values {cli_values}"
    cli_idx = (cli_mask > 0).astype(np.uint8)
    # a comparison that can catch flips: the mask must be neither empty nor full, nor mirror-symmetric
    frac = float(server_mask.mean())
    assert 0.01 < frac < 0.99, f"degenerate prediction (foreground fraction {frac:.3f}); the check would be blind"
    assert not np.array_equal(server_mask, server_mask[::-1]) and not np.array_equal(server_mask, server_mask[:, ::-1])
    # exact equality, no tolerance: both sides run the same transforms and network on the same file,
    # and torch 2.13 (CPU) and 2.14.1 give bit-identical MedT outputs here (checked when this was written)
    diff = int((server_mask != cli_idx).sum())
    assert diff == 0, f"{diff} of {server_mask.size} pixels differ between /infer and the bundle CLI"
    with Image.open(workspace["image"]) as im:
        assert im.size == (IMG_W, IMG_H)


def test_served_object_min_size_removes_exactly_the_small_components(server_mask, cli_mask_every_component):
    """The minimum object size set in the served bundle's inference.json (docs/monailabel.md) applies in /infer: the
    returned mask is the unfiltered prediction without its components under ``MIN_SIZE`` pixels, and nothing else."""
    import torch

    from medt_monai.metrics import label_objects
    from medt_monai.transforms import RemoveSmallComponents

    every = (cli_mask_every_component > 0).astype(np.uint8)
    small = [n for n in np.bincount(label_objects(every).ravel())[1:].tolist() if n < MIN_SIZE]
    assert small, "the unfiltered prediction has no component under MIN_SIZE pixels: the check would be blind"
    expected = RemoveSmallComponents(MIN_SIZE)(torch.as_tensor(every)[None])[0].numpy()
    assert int((expected != every).sum()) == sum(small)  # exactly the small components went
    assert np.array_equal(server_mask, expected), f"{int((server_mask != expected).sum())} pixels differ"


def test_datastore_accepts_corrected_label(server, workspace, corrected_label):
    import torch
    from monai.bundle import ConfigParser

    image_id, corrected = corrected_label
    ds = server.json("GET", "/datastore/", {"output": "all"})
    obj = ds["objects"].get(image_id)
    assert obj is not None, f"{image_id} not in datastore: {list(ds['objects'])}"
    assert "final" in obj["labels"], obj
    status, data = server.request("GET", "/datastore/label", {"label": image_id, "tag": "final"})
    assert status == 200, data[:500]
    stored = _read_png(data)
    assert stored.shape == corrected.shape and np.array_equal(stored, corrected)
    labelled = [k for k, v in ds["objects"].items() if "final" in v.get("labels", {})]
    assert len(labelled) == N_SEEDED + 1, labelled

    # the bundle's training reads the stored label (0/1 indices, as viewers save them) as that mask,
    # not as an empty one (a MedT-layout 0/255 reader would): the same mask after loading
    parser = ConfigParser()
    parser.read_config(str(workspace["bundle"] / "configs" / "train.json"))
    parser["bundle_root"] = str(workspace["bundle"])
    pre = parser.get_parsed_content("validate#preprocessing", instantiate=True)  # train's, without random flips
    item = pre({"image": str(workspace["studies"] / f"{image_id}.png"),
                "label": str(workspace["studies"] / "labels" / "final" / f"{image_id}.png")})  # fmt: skip
    label = torch.as_tensor(item["label"])
    assert set(torch.unique(label).tolist()) <= {0.0, 1.0}, torch.unique(label)
    # exactly the correction, nearest-resized to the network size (MONAI's PNG reader puts width first)
    expected = torch.nn.functional.interpolate(
        torch.as_tensor(corrected.T.copy())[None, None].float(), size=tuple(label.shape[-2:]), mode="nearest"
    )
    assert torch.equal(label.reshape(expected.shape).float(), expected), (float(label.mean()), float(expected.mean()))


def test_train_from_datastore_updates_model(server, workspace, corrected_label):
    import torch
    from monai.bundle import ConfigParser

    model_pt = workspace["bundle"] / "models" / "model.pt"
    before = _sha(model_pt)
    params = {"max_epochs": 1, "val_split": 0.25, "device": "cpu", "multi_gpu": False, "pretrained": True}
    res = server.json("POST", f"/train/{MODEL}", payload=params)
    assert res.get("id"), res

    deadline = time.monotonic() + TRAIN_TIMEOUT
    while True:
        task = server.json("GET", "/train/", timeout=10)
        if task.get("id") == res["id"] and task.get("status") in ("DONE", "ERROR"):
            break
        assert time.monotonic() < deadline, f"training not done in {TRAIN_TIMEOUT} s: {task}"
        time.sleep(2)
    details = "\n".join(task.get("details", []))
    assert task["status"] == "DONE", f"training failed:\n{details}\n--- server log ---\n{log_tail(server.log_path)}"

    # trained from the datastore: the seeded labels plus the corrected one, split 3 train / 1 val
    log = server.log_path.read_text(errors="replace")
    assert f"Total Records in Dataset: {N_SEEDED + 1}" in log, log_tail(server.log_path)

    assert _sha(model_pt) != before, "model.pt was not rewritten by /train"
    ckpt = torch.load(model_pt, map_location="cpu", weights_only=True)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    parser = ConfigParser()
    parser.read_config(str(workspace["bundle"] / "configs" / "inference.json"))
    parser["bundle_root"] = str(workspace["bundle"])
    net = parser.get_parsed_content("network_def", instantiate=True)
    net.load_state_dict(state)  # strict: the trained checkpoint is the bundle's network
