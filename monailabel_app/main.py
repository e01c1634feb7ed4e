"""medt-monai's MONAI Label app: the bundle (model ``medt``) for 2D images as MONAI Label's ``monaibundle`` app serves
it (BundleInferTask, BundleTrainTask), and whole-slide regions for QuPath (``/infer/wsi``, ``/infer/wsi_v2``) through
the bundle's own slide command (:mod:`monailabel_app.wsi`).

Settings (``--conf <key> <value>``):

- ``bundle``: the bundle folder the server uses and trains (default ``<app>/model/medt``); a copy of ``bundle/``,
  since training rewrites its ``models/model.pt``;
- ``upload_mpp``: micrometres per pixel of a region QuPath uploads (a PNG has none); default the bundle's
  ``image_mpp``;
- ``preload``, ``skip_trainers``: as in ``monaibundle``;
- ``auth_users``, ``auth_token_hours``: login, see :mod:`monailabel_app.server`.

Start it with ``--uvicorn_app monailabel_app.server:app`` (docs/monailabel.md).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from fastapi import HTTPException
from monai.bundle import ConfigParser
from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask
from monailabel.utils.others.generic import strtobool

logger = logging.getLogger(__name__)

MODEL = "medt"
#: formats the bundle's 2D training reads; other datastore images (slides) are left out of /train
TRAINABLE = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
UPLOADED = (".png", ".jpg", ".jpeg")  # regions QuPath uploads to /infer/wsi_v2


class SlideInferTask(BundleInferTask):
    """The bundle's 2D inference, listed in ``/info`` with ``pathology: true`` (QuPath's model list)."""

    def info(self):
        return {**super().info(), "pathology": True}


class ImageTrainTask(BundleTrainTask):
    """The bundle's training on the datastore's labelled 2D images and on the regions clinicians saved from QuPath
    (a slide with an ASAP label: the label's box as a PNG pair at the bundle's µm/px, made in ``regions_dir``);
    other labelled images (slides with other labels) are left out, with a warning."""

    def __init__(self, path: str, conf: dict, regions_dir: Path, labels: dict[str, int], image_mpp: float):
        super().__init__(path, conf)
        self.regions_dir, self.region_labels, self.image_mpp = regions_dir, labels, image_mpp

    def _fetch_datalist(self, request, datastore):
        from medt_monai.data import SLIDE_EXTENSIONS
        from monailabel_app import wsi

        keep = []
        for d in super()._fetch_datalist(request, datastore):
            image, label = Path(d["image"]), Path(d["label"])
            if label.suffix.lower() == ".xml" and image.suffix.lower() in SLIDE_EXTENSIONS:
                pair = wsi.label_region_pngs(image, label, self.regions_dir, self.region_labels, self.image_mpp)
                if pair is None:
                    logger.warning(f"training leaves out {image.name}: its label {label.name} has no usable box")
                else:
                    keep.append({"image": str(pair[0]), "label": str(pair[1])})
            elif image.suffix.lower() in TRAINABLE and label.suffix.lower() != ".xml":
                keep.append(d)
            else:
                logger.warning(f"training leaves out {image.name} with label {label.name}: not a 2D image and mask")
        return keep


class MedTApp(MONAILabelApp):
    """The app MONAI Label loads from this file (the first class deriving ``MONAILabelApp`` directly)."""

    def __init__(self, app_dir, studies, conf):
        self.bundle = Path(conf.get("bundle") or Path(app_dir) / "model" / MODEL).expanduser().resolve()
        needs = [f"configs/{n}.json" for n in ("inference", "inference_wsi", "metadata")] + ["models/model.pt"]
        for need in needs:
            if not (self.bundle / need).is_file():
                raise FileNotFoundError(f"bundle {self.bundle} (--conf bundle) has no {need}.")
        config = ConfigParser()  # image_mpp may be an expression ("$medt_monai.data.GLAS_MPP")
        config.read_config(str(self.bundle / "configs" / "inference.json"))
        self.image_mpp = float(config.get_parsed_content("image_mpp") or 0)
        self.upload_mpp = float(conf.get("upload_mpp") or self.image_mpp)
        if not self.image_mpp > 0:
            raise ValueError(f"{self.bundle}/configs/inference.json: image_mpp must be > 0, got {self.image_mpp}.")
        if not self.upload_mpp > 0:
            raise ValueError(f"--conf upload_mpp must be > 0 micrometres per pixel, got {self.upload_mpp}.")
        metadata = json.loads((self.bundle / "configs" / "metadata.json").read_text())
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="medt-monai",
            description=f"MedT bundle {metadata.get('version', '')} for 2D images and whole-slide regions",
            version=str(metadata.get("version", "")),
        )

    def init_infers(self):
        return {MODEL: SlideInferTask(str(self.bundle), self.conf, type="segmentation")}

    def init_trainers(self):
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        metadata = json.loads((self.bundle / "configs" / "metadata.json").read_text())
        channels = metadata["network_data_format"]["outputs"]["pred"].get("channel_def", {})
        labels = {v.lower(): int(k) for k, v in channels.items() if v.lower() != "background"}
        regions = Path(self.studies) / ".medt_regions"
        task = ImageTrainTask(str(self.bundle), self.conf, regions, labels, self.image_mpp)
        return {MODEL: task} if task.is_valid() else {}

    def init_strategies(self):
        return {"random": Random(), "first": First()}

    def on_init_complete(self):
        front = getattr(sys.modules.get("monailabel_app.server"), "_front", None)
        if front is None:
            if self.conf.get("auth_users"):
                raise RuntimeError("--conf auth_users needs --uvicorn_app monailabel_app.server:app (the login layer).")
            logger.warning("not started with --uvicorn_app monailabel_app.server:app: QuPath's /infer/wsi gets 422")
        super().on_init_complete()

    def infer_wsi(self, request, datastore=None):
        """The bundle's objects in a region of a slide of the datastore (``image`` = its id; ``location``, ``size``:
        level-0 pixels), or in an uploaded region (``/infer/wsi_v2``: coordinates relative to it); ``output`` ``asap``,
        ``dsa`` or ``json``; polygons under ``min_poly_area`` level-0 px² dropped."""
        from medt_monai.data import SLIDE_EXTENSIONS
        from monailabel_app import wsi

        if request.get("model") != MODEL:
            raise HTTPException(404, f"no model {request.get('model')!r} here; the model is {MODEL!r}")
        if int(request.get("level") or 0) != 0:
            raise HTTPException(400, f"level {request.get('level')}: only 0 (level-0 location and size) is supported")
        x, y = (int(v) for v in (request.get("location") or (0, 0)))
        w, h = (int(v) for v in (request.get("size") or (0, 0)))
        region = [x, y, w, h] if w > 0 and h > 0 else None
        output = request.get("output") or "dsa"
        image = str(request.get("image") or "")
        with tempfile.TemporaryDirectory(prefix="medt-wsi-") as tmp:
            tmp = Path(tmp)
            upload = Path(image)
            if upload.parent == Path(tempfile.gettempdir()) and upload.name.startswith("tmp") and upload.is_file():
                if upload.suffix.lower() not in UPLOADED:  # MONAI Label's copy of an upload to /infer/wsi_v2
                    raise HTTPException(400, f"uploaded {upload.suffix} region: send a PNG or JPEG")
                slide = wsi.write_upload_tiff(upload, tmp / "upload.tif", self.upload_mpp)
            else:
                slide = Path((datastore or self.datastore()).get_image_uri(image) or "")
                if not image or not slide.is_file():
                    raise HTTPException(404, f"image {image!r} is not in the datastore ({self.studies})")
                if slide.suffix.lower() not in SLIDE_EXTENSIONS:
                    raise HTTPException(400, f"image {image!r} ({slide.name}) is not a whole-slide image")
            try:
                collection = wsi.run_slide_command(self.bundle, slide, region, tmp / "out")
            except Exception as e:
                logger.exception(f"slide command on {slide.name} {region} failed")
                cause = e
                while cause.__cause__ is not None:  # the bundle's own message, under MONAI's config wrappers
                    cause = cause.__cause__
                raise HTTPException(500, f"the bundle's slide command failed on {image!r}: {cause}") from e
        polygons = wsi.region_polygons(collection, region, float(request.get("min_poly_area") or 0))
        name = f"MedT {MODEL} for {[x, y, w, h]}"
        params = wsi.feature_collection(polygons, name=name, model=MODEL, location=[x, y], size=[w, h])
        logger.info(f"{name}: {len(polygons)} polygons on {image!r}")
        if output == "json":
            return {"file": None, "params": params}
        if output == "asap":
            text, suffix = wsi.asap_xml(polygons, name, MODEL, (x, y), (w, h)), ".xml"
        else:
            text, suffix = json.dumps(wsi.dsa_json(polygons, name, MODEL)), ".json"
        fd, path = tempfile.mkstemp(prefix="medt-wsi-", suffix=suffix)  # send_response deletes it once sent
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return {"file": path, "params": params}
