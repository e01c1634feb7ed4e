"""Live MONAI Label test of our app (monailabel_app/) with QuPath's MONAI Label extension's calls, on a real slide.

One server is started on 127.0.0.1 (free port) from the MONAI Label environment (``.venv-monailabel``, built by
``scripts/setup_monailabel_env.sh``) with a copy of the app, a copy of ``bundle/`` whose model has a physical scale
(``image_scale`` 0.2, ``output`` instances, no TTA) and seeded random weights, the shared slide
``../shared/data/slides/CMU-1-Small-Region.svs`` in the datastore (``MONAI_LABEL_DATASTORE_FILE_EXT``) and login on
(``--conf auth_users``). A client speaking exactly as the extension does (``http.client``: no ``Content-Type`` on
JSON bodies, ``Authorization`` from its login flow, its multipart layout) checks:

* the login flow (``GET /auth/``, ``POST /auth/token`` form, ``GET /auth/token/valid``) gets in; without a valid token
  ``/info``, ``/datastore``, ``/infer`` and ``/train`` answer 401;
* ``/info/`` lists ``medt`` as QuPath's segmentation tool lists models;
* ``HEAD /datastore/image`` then ``POST /infer/wsi/medt?output=asap&image=<id>``: well-formed ASAP XML, read as the
  extension reads it, valid polygons of class Gland inside the region, in absolute level-0 coordinates, equal to the
  bundle's own slide command (CLI, main environment) on the same region, cut to it; ``output=dsa`` and ``json`` give
  the same polygons;
* ``POST /infer/wsi_v2/medt`` with the region as an uploaded PNG: polygons relative to the patch, inside it;
* ``PUT /datastore/label`` with the extension's ASAP XML stores it as the slide's final label, and the training pair
  ``/train`` makes of it is the region at the bundle's µm/px with the model's classes filled in.

The random network's output bias is set so that about half of the region's pixels are foreground (the geometry
checks would be blind on an empty answer). Without the environment the tests skip (fail with
``MEDT_REQUIRE_MONAILABEL=1``); without the shared slide they skip. The ASGI layer's own rules (the loopback-only
rule without login, token expiry and tampering, the users file) are checked in-process at the end, no server needed.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.parse
import xml.dom.minidom
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import _eval_output_bias
from monailabel_helpers import free_port, log_tail, running_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # monailabel_app (its server module is stdlib only)
from monailabel_app import server as front  # noqa: E402

BUNDLE = ROOT / "bundle"
MODEL = "medt"
ML_VENV = Path(os.environ.get("MEDT_MONAILABEL_VENV", str(ROOT / ".venv-monailabel")))
ML_PYTHON = ML_VENV / "bin" / "python"
REQUIRED = os.environ.get("MEDT_REQUIRE_MONAILABEL", "") == "1"
SLIDE = ROOT.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
SLIDE_ID = SLIDE.stem
SLIDE_MPP = 0.499  # the slide's own micrometres per pixel (20x)
REGION = (600, 900, 1000, 1000)  # level-0 x, y, width, height
MIN_POLY_AREA = 30  # what the extension sends
FILE_EXT = '["*.png", "*.jpg", "*.svs", "*.tif", "*.tiff", "*.ndpi", "*.mrxs", "*.xml"]'  # docs/monailabel.md (xml: QuPath labels)
USER, PASSWORD = "clinician", "correct horse battery"

HTTP_TIMEOUT = 300


class Extension:
    """The extension's HTTP layer (RequestUtils.java) over ``http.client``: HTTP/1.1, ``User-Agent``, the body's
    ``Content-Length``, ``Authorization`` when its login flow gives one, and no other header (urllib would add a
    Content-Type)."""

    def __init__(self, port: int, user: str | None = USER, password: str | None = PASSWORD):
        self.port, self.user, self.password, self.token = port, user, password, None

    def raw(self, method: str, path: str, body: bytes | None = None, headers=()) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            conn.putheader("User-Agent", "Java-http-client/17.0.2")
            for key, value in headers:
                conn.putheader(key, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def auth_headers(self) -> list[tuple[str, str]]:
        """addAuthHeader(): ``GET /auth/``; if enabled, the cached token if ``/auth/token/valid`` takes it, else a
        login (``POST /auth/token``, form)."""
        status, data = self.raw("GET", "/auth/")
        if status != 200 or not json.loads(data).get("enabled"):
            return []
        if (
            self.token is None
            or self.raw("GET", "/auth/token/valid", headers=[("Authorization", self.token)])[0] != 200
        ):
            form = urllib.parse.urlencode({"username": self.user, "password": self.password}).encode()
            status, data = self.raw(
                "POST", "/auth/token", form, [("Content-Type", "application/x-www-form-urlencoded")]
            )
            assert status == 200, f"login refused: HTTP {status} {data[:300]!r}"
            token = json.loads(data)
            self.token = f"{token['token_type']} {token['access_token']}"
        return [("Authorization", self.token)]

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        return self.raw(method, path, body, self.auth_headers())

    def multipart(self, method: str, path: str, files: dict, fields: dict) -> tuple[int, bytes]:
        """requestMultiPart(): a decimal boundary, the file parts (with their type) first, then the text parts."""
        boundary = str(secrets.randbits(128))
        parts = []
        for name, (filename, ctype, data) in files.items():
            head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: {ctype}'
            parts.append(f"--{boundary}\r\n{head}\r\n\r\n".encode() + data + b"\r\n")
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = [*self.auth_headers(), ("Content-Type", f"multipart/form-data; boundary={boundary}")]
        return self.raw(method, path, body, headers)


def _infer_body(location, size) -> bytes:
    """RequestInfer as Gson writes it."""
    body = {"level": 0, "location": list(location), "size": list(size), "tile_size": [1024, 1024],
            "min_poly_area": MIN_POLY_AREA, "params": {"foreground": [], "background": [], "max_workers": 1}}  # fmt: skip
    return json.dumps(body, separators=(",", ":")).encode()


def _read_like_extension(data: bytes, offset=(0, 0)) -> list[tuple[str, int, list[tuple[float, float]]]]:
    """RunInference.updateAnnotations(): every ``Annotation`` element anywhere; its ``Name`` (required) and optional
    ``#rrggbb`` ``Color``; each element child a polygon of its children's ``X``, ``Y`` plus the offset."""
    dom = xml.dom.minidom.parseString(data)  # the extension's DocumentBuilder: well-formed XML or an error
    polygons = []
    for annotation in dom.getElementsByTagName("Annotation"):
        assert annotation.hasAttribute("Name"), annotation.toxml()[:200]
        color = int(annotation.getAttribute("Color").replace("#", "", 1) or "ff0000", 16)
        for container in annotation.childNodes:
            if container.nodeType != container.ELEMENT_NODE:
                continue
            points = [
                (offset[0] + float(c.getAttribute("X")), offset[1] + float(c.getAttribute("Y")))
                for c in container.childNodes
                if c.attributes is not None
            ]
            if points:
                polygons.append((annotation.getAttribute("Name"), color, points))
    return polygons


def _check_polygons(polygons, region) -> None:
    """Valid polygons of class Gland inside ``region`` (level-0 x, y, w, h), none under the minimum area."""
    import shapely

    assert polygons, "no polygon: the geometry checks would be blind"
    x, y, w, h = region
    for name, _, points in polygons:
        assert name == "gland"
        polygon = shapely.Polygon(points)
        assert polygon.is_valid, shapely.validation.explain_validity(polygon)
        assert polygon.area >= MIN_POLY_AREA
        x0, y0, x1, y1 = polygon.bounds
        assert x - 1e-6 <= x0 and y - 1e-6 <= y0 and x1 <= x + w + 1e-6 and y1 <= y + h + 1e-6, (polygon.bounds, region)


def _union(polygons):
    import shapely

    return shapely.union_all([shapely.Polygon(points) for *_, points in polygons])


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
    if not SLIDE.is_file():
        pytest.skip(f"shared slide {SLIDE} not found (the ../shared/data folder beside the checkout)")
    return ML_PYTHON


def _calibrated_weights(bundle: Path, path: Path) -> None:
    """A seeded random network whose output bias puts half of the region's pixels in the foreground (interior
    class; the boundary class never wins), in the pattern of the network's own logits on the region's block."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / "inference.json"), str(bundle / "configs" / "inference_wsi.json")])
    parser.update({"bundle_root": str(bundle), "slide": str(SLIDE), "region": list(REGION), "dataset_dir": None,
                   "device": "$torch.device('cpu')"})  # fmt: skip
    blocks = parser.get_parsed_content("blocks")
    assert len(blocks) == 1, f"the region should fit one block: {len(blocks)}"
    image = parser.get_parsed_content("preprocessing")(blocks[0])["image"]
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        logits = parser.get_parsed_content("inferer")(torch.as_tensor(image)[None].float(), net)[0]
    state = net.state_dict()
    bias = state[_eval_output_bias(state, 3)]
    bias[2] -= 100.0  # boundary
    margin = (logits[1] - logits[0]).flatten().sort().values  # interior over background
    lo, hi = int(0.3 * margin.numel()), int(0.7 * margin.numel())
    i = lo + int((margin[lo + 1 : hi] - margin[lo : hi - 1]).argmax())
    bias[1] -= (margin[i] + margin[i + 1]) / 2
    torch.save({"model": state}, path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, ml_python):
    work = tmp_path_factory.mktemp("monailabel_wsi")
    app = work / "app"
    shutil.copytree(ROOT / "monailabel_app", app, ignore=shutil.ignore_patterns("__pycache__"))
    bundle = app / "model" / MODEL
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("__pycache__", "eval", "logs", "*.pt", "*.ts"))
    (bundle / "models").mkdir(exist_ok=True)
    config_path = bundle / "configs" / "inference.json"
    config = json.loads(config_path.read_text())
    config.update(image_scale=0.2, output="instances", tta=False)  # the model the shipped weights will become
    config_path.write_text(json.dumps(config, indent=4))
    _calibrated_weights(bundle, bundle / "models" / "model.pt")

    studies = work / "studies"
    studies.mkdir()
    (studies / SLIDE.name).symlink_to(SLIDE)
    users = work / "users.txt"
    front.add_user(users, USER, PASSWORD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return {"work": work, "app": app, "bundle": bundle, "studies": studies, "users": users, "env": env}


@pytest.fixture(scope="module")
def server(workspace, ml_python):
    port = free_port()
    log_path = workspace["work"] / "server.log"
    cmd = [
        str(ml_python), "-m", "monailabel.main", "start_server",
        "--app", str(workspace["app"]), "--studies", str(workspace["studies"]),
        "--host", "127.0.0.1", "--port", str(port), "--uvicorn_app", "monailabel_app.server:app",
        "--conf", "auth_users", str(workspace["users"]), "--conf", "upload_mpp", str(SLIDE_MPP),
    ]  # fmt: skip
    env = {**workspace["env"], "MONAI_LABEL_DATASTORE_FILE_EXT": FILE_EXT,
           "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false", "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    client = Extension(port)
    with running_server(
        cmd, env, log_path, lambda: client.raw("GET", "/auth/")[0] == 200 and client.request("GET", "/info/")[0] == 200
    ):
        client.log_path = log_path
        yield client


@pytest.fixture(scope="module")
def wsi_asap(server) -> bytes:
    """What the extension does for a slide on the server: HEAD /datastore/image, then POST /infer/wsi as asap."""
    status, _ = server.request("HEAD", f"/datastore/image?image={SLIDE_ID}")
    assert status == 200, f"HEAD /datastore/image -> {status}: the slide is not in the datastore"
    status, data = server.request("POST", f"/infer/wsi/{MODEL}?output=asap&image={SLIDE_ID}", _infer_body(REGION[:2], REGION[2:]))  # fmt: skip
    assert status == 200, f"/infer/wsi -> HTTP {status}: {data[:2000]!r}\n{log_tail(server.log_path)}"
    return data


@pytest.fixture(scope="module")
def cli_union(workspace, tmp_path_factory):
    """The bundle's slide command (CLI, main environment) on the same slide and region, its polygons cut to it."""
    import shapely

    out = tmp_path_factory.mktemp("cli_wsi")
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str([str(workspace["bundle"] / "configs" / c) for c in ("inference.json", "inference_wsi.json")]),
        "--bundle_root", str(workspace["bundle"]), "--slide", str(SLIDE), "--region", str(list(REGION)),
        "--output_dir", str(out), "--device", "$torch.device('cpu')",
    ]  # fmt: skip
    r = subprocess.run(cmd, env=workspace["env"], capture_output=True, text=True, timeout=HTTP_TIMEOUT)
    assert r.returncode == 0, f"slide command failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    collection = json.loads((out / f"{SLIDE_ID}.geojson").read_text())
    x, y, w, h = REGION
    box = shapely.box(x, y, x + w, y + h)
    parts = [shapely.geometry.shape(f["geometry"]).intersection(box) for f in collection["features"]]
    return shapely.union_all([p for p in parts if p.area >= MIN_POLY_AREA])


# ------------------------------------------------------------------------------------------------
# live tests
# ------------------------------------------------------------------------------------------------
def test_without_a_valid_token_everything_is_refused(server):
    anonymous = Extension(server.port, user=None)
    assert anonymous.raw("GET", "/auth/")[0] == 200 and json.loads(anonymous.raw("GET", "/auth/")[1])["enabled"]
    calls = [("GET", "/info/", None), ("GET", "/datastore/?output=all", None),
             ("HEAD", f"/datastore/image?image={SLIDE_ID}", None),
             ("POST", f"/infer/wsi/{MODEL}?output=asap&image={SLIDE_ID}", _infer_body(REGION[:2], REGION[2:])),
             ("POST", f"/train/{MODEL}", b"{}"), ("GET", "/train/", None)]  # fmt: skip
    forged = [("Authorization", "Bearer " + "x" * 40 + "." + "y" * 43)]
    for method, path, body in calls:
        for headers in ([], forged):
            status, data = anonymous.raw(method, path, body, headers)
            assert status == 401, f"{method} {path} with {headers} -> {status} {data[:200]!r}"
    form = urllib.parse.urlencode({"username": USER, "password": "wrong password"}).encode()
    status, _ = anonymous.raw("POST", "/auth/token", form, [("Content-Type", "application/x-www-form-urlencoded")])
    assert status == 401
    assert anonymous.raw("GET", "/auth/token/valid")[0] == 401


def test_login_flow_gets_in(server):
    client = Extension(server.port)
    headers = client.auth_headers()
    assert headers and headers[0][1].lower().startswith("bearer ")
    status, data = client.raw("GET", "/auth/token/valid", headers=headers)
    assert status == 200 and json.loads(data)["username"] == USER
    assert client.raw("GET", "/info/", headers=headers)[0] == 200
    assert client.raw("HEAD", f"/datastore/image?image={SLIDE_ID}", headers=headers)[0] == 200


def test_info_lists_medt_for_qupath(server):
    status, data = server.request("GET", "/info/")
    assert status == 200
    model = json.loads(data)["models"][MODEL]
    assert model["type"].lower() == "segmentation" and model["dimension"] == 2 and model["pathology"] is True
    assert model["labels"] == {"gland": 1}
    assert isinstance(json.loads(data)["trainers"][MODEL]["config"], dict)


def test_wsi_answers_asap_polygons_in_the_region(wsi_asap, cli_union):
    polygons = _read_like_extension(wsi_asap)  # offset 0: the slide is on the server
    _check_polygons(polygons, REGION)
    assert {color for _, color, _ in polygons} == {0x00A000}
    # the model's objects for the region, in absolute level-0 coordinates: the slide command's own, cut to the region
    served = _union(polygons)
    assert served.symmetric_difference(cli_union).area <= 0.01 * cli_union.area, (served.area, cli_union.area)


def test_wsi_dsa_and_json_give_the_same_polygons(server, wsi_asap):
    expected = [points for *_, points in _read_like_extension(wsi_asap)]
    status, data = server.request("POST", f"/infer/wsi/{MODEL}?output=dsa&image={SLIDE_ID}", _infer_body(REGION[:2], REGION[2:]))  # fmt: skip
    assert status == 200, data[:2000]
    elements = json.loads(data)["elements"]
    assert all(e["type"] == "polyline" and e["closed"] and e["label"]["value"] == "gland" for e in elements)
    assert [[tuple(p[:2]) for p in e["points"]] for e in elements] == expected
    status, data = server.request("POST", f"/infer/wsi/{MODEL}?output=json&image={SLIDE_ID}", _infer_body(REGION[:2], REGION[2:]))  # fmt: skip
    assert status == 200, data[:2000]
    collection = json.loads(data)
    assert collection["type"] == "FeatureCollection"
    rings = [f["geometry"]["coordinates"][0] for f in collection["features"]]
    assert all(ring[0] == ring[-1] for ring in rings)
    assert [[tuple(p) for p in ring[:-1]] for ring in rings] == expected


def test_wsi_v2_upload_answers_patch_relative_polygons(server):
    import openslide
    from PIL import Image

    x, y, w, h = REGION
    with openslide.OpenSlide(str(SLIDE)) as slide:
        patch = slide.read_region((x, y), 0, (w, h)).convert("RGB")
    png = Path(server.log_path).parent / "patch123.png"
    patch.save(png)
    wsi = _infer_body((0, 0), (0, 0)).decode()  # the extension resets location and size for an upload
    status, data = server.multipart("POST", f"/infer/wsi_v2/{MODEL}?output=asap",
                                    files={"file": (png.name, "image/png", png.read_bytes())}, fields={"wsi": wsi})  # fmt: skip
    assert status == 200, f"/infer/wsi_v2 -> HTTP {status}: {data[:2000]!r}\n{log_tail(server.log_path)}"
    with Image.open(png) as im:
        assert im.size == (w, h)
    _check_polygons(_read_like_extension(data, offset=(x, y)), REGION)  # the extension adds the region's offset


def _label_xml() -> bytes:
    """SubmitLabel's XML: the box of the region, each object's points relative to it (here one triangle)."""
    x, y, w, h = REGION
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ASAP_Annotations>\n<Annotations Name="" Description="" X="{x}" '
        f'Y="{y}" W="{w}" H="{h}">\n<Annotation Name="Gland" Type="Polygon" PartOfGroup="Gland" Color="#00a000">\n'
        '<Coordinates>\n<Coordinate Order="0" X="100" Y="100"/>\n<Coordinate Order="1" X="400" Y="120"/>\n'
        '<Coordinate Order="2" X="300" Y="380"/>\n</Coordinates>\n</Annotation>\n'
        '<Annotation Name="Stroma" Type="Polygon" PartOfGroup="Stroma" Color="#ff0000">\n<Coordinates>\n'
        '<Coordinate Order="0" X="600" Y="600"/>\n<Coordinate Order="1" X="900" Y="600"/>\n'
        '<Coordinate Order="2" X="900" Y="900"/>\n</Coordinates>\n</Annotation>\n</Annotations>\n<AnnotationGroups>\n'
        '<Group Name="Gland" PartOfGroup="None" Color="#00a000">\n<Attributes/>\n</Group>\n</AnnotationGroups>\n'
        "</ASAP_Annotations>\n"
    ).encode()


def test_corrected_region_saved_back(server, workspace, tmp_path):
    """SubmitLabel: the clinician's objects as ASAP XML, PUT as the final label; what the training makes of it."""
    from PIL import Image

    from monailabel_app.wsi import label_region_pngs

    label = _label_xml()
    status, data = server.multipart("PUT", f"/datastore/label?image={SLIDE_ID}",
                                    files={"label": (f"{SLIDE_ID}123.xml", "application/xml", label)},
                                    fields={"params": "{}"})  # fmt: skip
    assert status == 200, data[:2000]
    assert json.loads(data)["label"] == SLIDE_ID
    status, data = server.request("GET", "/datastore/?output=all")
    assert "final" in json.loads(data)["objects"][SLIDE_ID]["labels"]
    status, stored = server.request("GET", f"/datastore/label?label={SLIDE_ID}&tag=final")
    assert status == 200 and stored == label

    # the training pair /train makes of it: the region at the bundle's 0.62 um/px, the Gland triangle as 1
    stored_file = workspace["studies"] / "labels" / "final" / f"{SLIDE_ID}.xml"
    image_png, label_png = label_region_pngs(SLIDE, stored_file, tmp_path, {"gland": 1}, 0.62)
    factor = SLIDE_MPP / 0.62
    with Image.open(image_png) as im, Image.open(label_png) as lb:
        image, mask = np.asarray(im), np.asarray(lb)
    assert image.shape == (round(1000 * factor), round(1000 * factor), 3) and mask.shape == image.shape[:2]
    assert set(np.unique(mask).tolist()) == {0, 1}  # Stroma is not a class of the model: left out
    assert abs(int(mask.sum()) - 40_000 * factor**2) < 0.05 * mask.sum()  # the triangle's 40,000 level-0 px²
    assert image.std() > 10  # the slide's tissue, not an empty canvas
    assert mask[round(200 * factor), round(270 * factor)] == 1 and mask[round(750 * factor), round(850 * factor)] == 0


# ------------------------------------------------------------------------------------------------
# the ASGI layer in-process (no server)
# ------------------------------------------------------------------------------------------------
def _call(app, method="GET", path="/info/", headers=(), body=b"", client=("127.0.0.1", 5000)):
    """One HTTP request through an ASGI app: ``(status, body, what the inner app saw)``."""
    sent, seen = [], {}

    async def inner(scope, receive, send):
        seen.update(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
             "client": client}  # fmt: skip
    app.inner = inner
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), seen


def test_front_without_login_serves_this_machine_only_and_adds_json_content_type():
    app = front.Front(None)
    status, _, seen = _call(app, "POST", "/infer/wsi/medt", body=b"{}")
    assert status == 200 and (b"content-type", b"application/json") in seen["headers"]
    status, _, seen = _call(app, "PUT", "/datastore/label", [("Content-Type", "multipart/form-data; boundary=1")])
    assert dict(seen["headers"])[b"content-type"] == b"multipart/form-data; boundary=1"
    assert _call(app, client=("::1", 5000))[0] == 200
    status, body, seen = _call(app, client=("10.1.2.3", 5000))
    assert status == 403 and not seen and b"auth_users" in body
    assert _call(app, "GET", "/auth/")[2]["path"] == "/auth/"  # to MONAI Label: 404, which the extension reads as off


def test_front_tokens_expire_are_signed_and_die_with_the_users_entry(tmp_path):
    users = tmp_path / "users.txt"
    front.add_user(users, "ana", "first password")
    app = front.Front(None, users, token_hours=1)
    form = urllib.parse.urlencode({"username": "ana", "password": "first password"})
    status, body, _ = _call(
        app, "POST", "/auth/token", [("Content-Type", "application/x-www-form-urlencoded")], form.encode()
    )
    assert status == 200
    token = json.loads(body)["access_token"]
    bearer = [("Authorization", f"Bearer {token}")]
    assert _call(app, headers=bearer, client=("10.1.2.3", 5000))[0] == 200  # remote, logged in
    assert _call(app, headers=[("Authorization", f"Bearer {token[:-2]}xx")])[0] == 401  # tampered
    assert _call(app, "GET", "/auth/token/valid", bearer)[0] == 200
    app.signer.lifetime_s = -1
    expired = [("Authorization", f"Bearer {app.signer.issue('ana', front.read_users(users)['ana'])}")]
    assert _call(app, headers=expired)[0] == 401
    front.add_user(users, "ana", "second password")  # a new password voids the old tokens
    assert _call(app, headers=bearer)[0] == 401
    front.add_user(users, "bob", "bob's password")
    app.signer.lifetime_s = 3600
    bob = [("Authorization", f"Bearer {app.signer.issue('bob', front.read_users(users)['bob'])}")]
    assert _call(app, headers=bob)[0] == 200
    users.write_text("".join(line for line in users.read_text().splitlines(True) if not line.startswith("bob:")))
    assert _call(app, headers=bob)[0] == 401  # a removed user's tokens end with the line
    stored = users.read_text()
    assert (
        "first password" not in stored and "second password" not in stored and oct(users.stat().st_mode)[-3:] == "600"
    )
    with pytest.raises(ValueError, match="line 3"):
        users.write_text(stored + "bob:plain-text-password\n")
        front.read_users(users)
    with pytest.raises(FileNotFoundError, match="auth_users"):
        front.Front(None, tmp_path / "missing.txt")
