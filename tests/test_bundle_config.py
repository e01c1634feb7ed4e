"""The bundle's configs as parsed, without a training run: the settings that must agree between ``train.json`` and
``inference.json``, command-line switches given as strings (TTA, mixed precision, channels-last), training crops and
flips, the swappable parts (loss, optimizer, schedule, augmentation) and the metric names, and the bad settings, data
and checkpoints that are named, with the way out, before any work is done.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import CONFIGS, EVALUATE, IMG, INFERENCE, OBJECT_METRICS, TRAIN, _config_error, _parser, _truncate


def test_inference_config_network_matches_training_config():
    train = json.loads(Path(TRAIN).read_text())
    infer = json.loads(Path(INFERENCE).read_text())
    for key in (
        "network_def",
        "network_name",
        "img_size",
        "in_channels",
        "num_classes",
        "network_args",
        "intensity",
        "intensity_max",
        "window_inferer",
    ):
        assert infer[key] == train[key], f"inference.json and train.json disagree on {key!r}"
    # the output and the scale: train.json's per data set, inference.json's those of the shipped GlaS model
    trained, served = _parser(TRAIN, dataset="glas", data_dir="unused"), _parser(INFERENCE)
    for key, value in (("output", "instances"), ("image_scale", 0.2), ("training_crops", "montage")):
        assert trained.get_parsed_content(key) == served.get_parsed_content(key) == value, key
    assert _parser(TRAIN).get_parsed_content("output") == "semantic"  # the demo set: as before
    assert _parser(TRAIN).get_parsed_content("training_crops") == "image"
    # flip TTA: on for inference and evaluation (the shipped scores are with it), off for validation in training
    evaluate = json.loads(Path(EVALUATE).read_text())
    assert (infer["tta"], evaluate["tta"], train["tta"]) == (True, True, False)
    # window grids likewise: 2 x 2 for inference and evaluation (the twenty-seventh round), one grid in validation
    assert (infer["tta_shifts"], evaluate["tta_shifts"], train["tta_shifts"]) == (2, 2, 1)
    post = [t["_target_"] for t in infer["postprocessing"]["transforms"]]
    # MONAI Label drops SaveImaged and needs the channel squeezed and uint8 after it (2D PNG)
    assert post[-3:] == ["SaveImaged", "SqueezeDimd", "CastToTyped"], post


@pytest.mark.parametrize(
    "flag, flips", [("false", False), ("False", False), (False, False), ("true", True), (True, True)]
)
def test_boolean_switches_read_command_line_strings(flag, flips):
    """``--tta false`` arrives as the string 'false' from the command line; it must switch TTA off, not on."""
    from monai.bundle import ConfigParser
    from monai.inferers import SlidingWindowInferer

    from medt_monai.inferers import FlipInferer, GridShiftInferer

    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["tta"] = flag
    inferer = parser.get_parsed_content("inferer")
    # the shipped model's windows: glass past the image, as it was trained, on 2 x 2 shifted grids
    windows = inferer.inferer if flips else inferer
    assert type(windows) is GridShiftInferer and windows.shifts == 2
    assert type(windows.inferer) is SlidingWindowInferer and windows.inferer.padding_mode == "constant"
    assert type(inferer) is (FlipInferer if flips else GridShiftInferer)
    if flips:
        assert inferer.transpose is False  # the 4 flips by default
        parser = ConfigParser()
        parser.read_config(INFERENCE)
        parser.update({"tta": flag, "tta_rotations": flag})
        assert parser.get_parsed_content("inferer").transpose is True  # ``--tta_rotations true``: the 8 symmetries


@pytest.mark.parametrize("config", ["train", "inference"])
def test_mixed_precision_dtype_and_channels_last_switches(config):
    """``--amp True --amp_dtype bfloat16`` reaches the engines' autocast, ``--channels_last True`` the network's
    memory format; a misspelt dtype names the allowed ones."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(TRAIN if config == "train" else INFERENCE)
    parser.update({"amp": "True", "amp_dtype": "bfloat16", "channels_last": "True", "device": "$torch.device('cpu')"})
    engines = ["train#trainer", "validate#evaluator"] if config == "train" else ["evaluator"]
    for engine in engines:
        assert parser.get_parsed_content(f"{engine}#amp") is True
        assert parser.get_parsed_content(f"{engine}#amp_kwargs") == {"dtype": torch.bfloat16}
    network = parser.get_parsed_content("network")
    conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    parser = ConfigParser()
    parser.read_config(TRAIN if config == "train" else INFERENCE)
    parser["amp_dtype"] = "bf16"
    with pytest.raises(RuntimeError) as error:  # MONAI's config error, caused by look_up_option's
        parser.get_parsed_content("amp_kwargs")
    assert "Unsupported option 'bf16'" in str(error.value.__cause__) and "bfloat16" in str(error.value.__cause__)


def test_crops_per_image_sets_the_number_of_training_crops_of_each_zoomed_image():
    from monai.bundle import ConfigParser
    from monai.transforms import RandSpatialCropSamplesd

    parser = ConfigParser()
    parser.read_config(TRAIN)
    assert parser["crops_per_image"] == 1
    parser.update({"image_scale": 0.5, "crops_per_image": 3})
    (crop,) = [
        t for t in parser.get_parsed_content("train#preprocessing").transforms if isinstance(t, RandSpatialCropSamplesd)
    ]
    assert crop.cropper.num_samples == 3
    assert crop.cropper.cropper.roi_size == [parser["img_size"]] * 2


def test_training_crops_montage_trains_on_montages_and_validates_on_glass():
    """``--training_crops montage``: the training set is a ``MontageDataset`` (its chain has no crops) and validation's
    windows read glass past the image; a model trained so is served the same way (``window_inferer`` takes it)."""
    from monai.inferers import SlidingWindowInferer

    from medt_monai.data import MontageDataset
    from medt_monai.inferers import GLASS_INTENSITY, ReflectSlidingWindowInferer

    parser = _parser((TRAIN,), image_scale=0.5, training_crops="montage")
    assert isinstance(parser.get_parsed_content("train#dataset"), MontageDataset)
    inferer = parser.get_parsed_content("window_inferer")
    assert type(inferer) is SlidingWindowInferer and inferer.cval == GLASS_INTENSITY
    assert inferer.padding_mode == "constant"
    assert isinstance(
        _parser((TRAIN,), image_scale=0.5).get_parsed_content("window_inferer"), ReflectSlidingWindowInferer
    )


@pytest.mark.parametrize("augmentation", ["flip", "dihedral", "dihedral_color", "dihedral_color_affine"])
def test_flip_prob_reaches_the_flip_of_every_augmentation_preset(augmentation):
    from monai.transforms import RandFlipd

    parser = _parser((TRAIN,), augmentation=augmentation, flip_prob=0.125)
    chain = parser.get_parsed_content("train#preprocessing").transforms
    assert [t.prob for t in chain if isinstance(t, RandFlipd)] == [0.125]


def test_the_config_reads_as_the_recipe_and_its_parts_are_monai_components():
    from monai.losses import DeepSupervisionLoss, DiceLoss
    from torch.optim import SGD, Adam
    from torch.optim.lr_scheduler import PolynomialLR

    parser = _parser((TRAIN,))
    assert parser["network_name"] == "medt"
    assert parser["network_args"] == {
        "full_resolution_skip": True,
        "zero_init_residual": True,
        "branch_supervision": True,
    }
    assert _parser(INFERENCE)["network_args"] == parser["network_args"]  # the shipped model.pt's configuration
    network = parser.get_parsed_content("network_def")
    assert network.full_resolution is not None and network.global_head is not None
    # the loss wraps cross-entropy in DeepSupervisionLoss (a tensor passes through; MedT's branch logits are weighed)
    loss = parser.get_parsed_content("loss")
    assert isinstance(loss, DeepSupervisionLoss) and loss.loss.lambda_dice == 0.0  # default: cross-entropy only
    assert loss.get_weights(3) == [1.0, 0.5, 0.5]  # MedT(branch_supervision=True): network, global, local logits
    assert isinstance(parser.get_parsed_content("optimizer"), Adam)
    assert isinstance(parser.get_parsed_content("lr_scheduler"), PolynomialLR)
    # a part of one's own is a component override, as in any model-zoo bundle
    parser = _parser((TRAIN,), **{"loss#loss": {"_target_": "DiceLoss", "to_onehot_y": True, "softmax": True}})
    assert isinstance(parser.get_parsed_content("loss").loss, DiceLoss)
    parser = _parser((TRAIN,), optimizer={"_target_": "torch.optim.SGD", "params": "$@network.parameters()", "lr": 0.1})
    assert isinstance(parser.get_parsed_content("optimizer"), SGD)
    assert parser.get_parsed_content("lr_scheduler").optimizer is parser.get_parsed_content("optimizer")
    error = _config_error(_parser((TRAIN,), augmentation="mixup"), "train#preprocessing")
    assert "augmentation must be one of 'none', 'flip', 'dihedral', 'dihedral_color'" in str(error), error


def test_metric_names_carry_the_workflow_prefix_from_one_definition():
    train = _parser((TRAIN,))
    assert list(train.get_parsed_content("validate#key_metric")) == ["val_mean_dice"]
    assert list(train.get_parsed_content("validate#additional_metrics")) == ["val_mean_iou"]
    evaluate = _parser((TRAIN, EVALUATE), object_metrics=True)
    assert list(evaluate.get_parsed_content("validate#key_metric")) == ["test_mean_dice"]
    assert list(evaluate.get_parsed_content("validate#evaluator#additional_metrics")) == [
        "test_mean_iou",
        "test_object_f1",
        "test_object_f1_pooled",
        *OBJECT_METRICS[1:],
    ]


# ------------------------------------------------------------------------------------------------
# bad settings, data and checkpoints
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, kind, message",
    [
        ({"network_name": "foo"}, ValueError, "unknown network name 'foo'; the networks are: unet, resunet, unetpp"),
        ({"network_name": "medt_fullres_zero_init"}, ValueError, "removed in bundle 0.14.0: .*--network_name medt --network_args"),
        ({"network_name": "resunet"}, TypeError, "'resunet' .* does not take branch_supervision, full_resolution_skip, zero_init_residual; .*--network_args \"{}\""),
        ({"img_size": 100}, ValueError, "--img_size 100 does not fit --network_name medt: .* multiples of 64; e.g. --img_size 64 or 128"),
        ({"network_name": "unet", "network_args": {}, "img_size": 72}, ValueError, "multiples of 16"),
        ({"ckpt_dir": "{file}/models"}, PermissionError, "--ckpt_dir .*/a_file/models: cannot create this folder"),
    ],
    ids=["network_name", "removed_name", "other_network_recipe_args", "img_size", "unet_img_size", "ckpt_dir"],
)  # fmt: skip
def test_bad_settings_fail_when_the_workflow_starts_before_data_are_read(tmp_path, overrides, kind, message):
    (tmp_path / "a_file").write_text("")
    overrides = {k: v.format(file=tmp_path / "a_file") if isinstance(v, str) else v for k, v in overrides.items()}
    # data that cannot be found: the checks come first, so their error is the one raised
    data = {"dataset": "folder", "data_dir": str(tmp_path / "no_data")}
    for configs, run_ids in (
        ((TRAIN,), ("run", "training")),
        ((TRAIN, EVALUATE), ("run", "evaluating")),
        ((INFERENCE,), ("run",)),
    ):
        parser = _parser(configs, **data, **overrides)
        if "ckpt_dir" in overrides and configs[-1] != TRAIN:
            continue  # evaluation and inference do not write ckpt_dir
        for run_id in run_ids:
            assert parser[run_id][0] == "@workflow_checks", (configs, run_id)
        error = _config_error(parser, f"{run_ids[0]}#0")
        assert isinstance(error, kind) and re.search(message, str(error)), (configs, error)


def test_truncated_training_image_is_named_before_caching(tmp_path):
    """``--verify_data full`` (the default) decodes every image when the splits are made, before the datasets cache."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 1), ("test", 1)):
        for i in range(n):
            for sub, arr in (("img", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)),
                             ("labelcol", np.zeros((40, 40), np.uint8))):  # fmt: skip
                (tmp_path / split / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(tmp_path / split / sub / f"{split}{i}.png")
    bad = _truncate(tmp_path / "train" / "img" / "train2.png")
    parser = _parser(TRAIN, dataset="medt", data_dir=str(tmp_path), img_size=IMG)
    error = _config_error(parser, "train#dataset")
    assert isinstance(error, ValueError) and f"{bad}: cannot read as an image" in str(error), error
    assert "truncated" in str(error)
    parser = _parser(TRAIN, dataset="medt", data_dir=str(tmp_path), img_size=IMG, verify_data="header")
    assert len(parser.get_parsed_content("splits")["train"]) == 4  # the fast check cannot see it


def test_bad_checkpoints_are_named_with_the_way_out(tmp_path):
    from ignite.engine import Engine

    from medt_monai.handlers import ResumeCheckpointLoader
    from medt_monai.networks import get_network

    (tmp_path / "empty.pt").write_bytes(b"")
    error = _config_error(_parser(INFERENCE, ckpt_path=str(tmp_path / "empty.pt")), "workflow_checks")
    assert isinstance(error, ValueError) and "--ckpt_path" in str(error) and "empty" in str(error)

    torch.save({"model": torch.nn.Linear(4, 4).state_dict()}, tmp_path / "model.pt")
    truncated = _truncate(tmp_path / "model.pt")
    loader = _parser(INFERENCE, ckpt_path=str(truncated), device="$torch.device('cpu')").get_parsed_content(
        "handlers#0"
    )
    with pytest.raises(RuntimeError, match=rf"(?s)cannot load {re.escape(str(truncated))}.*--ckpt_path must be"):
        loader(Engine(lambda e, b: None))

    # weights of the networks shipped by bundles 0.10-0.12 (no branch heads) and 0.8-0.9 given to the default network:
    # the missing heads are named, and the --network_args that load the file
    for arguments, fitting in [
        ({"full_resolution_skip": True, "zero_init_residual": True}, "{'full_resolution_skip': True, 'branch_supervision': False}"),
        ({}, "{'full_resolution_skip': False, 'branch_supervision': False}"),
        ({"branches": ["global"]}, "{'branches': ['global'], 'full_resolution_skip': False, 'branch_supervision': False}"),
    ]:  # fmt: skip
        plain = tmp_path / "plain.pt"
        torch.save(get_network("medt", **arguments).state_dict(), plain)
        loader = _parser(INFERENCE, ckpt_path=str(plain), device="$torch.device('cpu')").get_parsed_content(
            "handlers#0"
        )
        with pytest.raises(
            RuntimeError, match=r"(?s)Missing key.*global_head\.weight.*--network_name, --network_args"
        ) as e:
            loader(Engine(lambda e, b: None))
        assert f'This file holds a MedT: --network_name medt --network_args "{fitting}" loads it.' in str(e.value)
        get_network("medt", **eval(fitting)).load_state_dict(torch.load(plain))  # the named arguments do load it

    # checkpoint_latest.pt of another network, found on resume
    latest = tmp_path / "checkpoint_latest.pt"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "trainer": {"iteration": 1, "epoch_length": 1}}, latest)
    for problem in (f"{latest} does not fit this run", f"cannot read {latest}"):
        if problem.startswith("cannot"):
            _truncate(latest)
        trainer = Engine(lambda e, b: None)
        ResumeCheckpointLoader(str(latest), {"model": torch.nn.Linear(3, 3)}, engine_key="trainer").attach(trainer)
        with pytest.raises(RuntimeError, match=rf"(?s){re.escape(problem)}.*--resume False.*--output_dir"):
            trainer.run([0], max_epochs=3)


def test_bundle_root_is_the_bundle_of_the_command_lines_config_file_else_the_working_directory(tmp_path, monkeypatch):
    from medt_monai.bundle import bundle_root

    monkeypatch.chdir(tmp_path)
    train = str(tmp_path / "copy" / "configs" / "train.json")
    assert bundle_root(["monai/bundle/__main__.py", "run", "training", "--config_file", train]) == str(
        tmp_path / "copy"
    )
    listed = f"['{train}','{tmp_path / 'copy' / 'configs' / 'evaluate.json'}']"
    assert bundle_root(["run", f"--config_file={listed}"]) == str(tmp_path / "copy")
    assert bundle_root(["run", "--config_file", "mine/train.json"]) == str(
        tmp_path / "mine"
    )  # not in a configs/ folder
    assert bundle_root(["pytest", "-q"]) == bundle_root() == str(tmp_path)  # no command line of monai.bundle run
    # the configs compute it from sys.argv; --bundle_root (an override) wins
    monkeypatch.setattr(sys, "argv", ["x", "run", "--config_file", train])
    assert _parser(INFERENCE).get_parsed_content("ckpt_path") == str(tmp_path / "copy" / "models" / "model.pt")
    assert _parser(INFERENCE, bundle_root="/b").get_parsed_content("ckpt_path") == "/b/models/model.pt"


def test_whole_image_recipes_keep_image_crops_on_glas():
    """``--dataset glas`` trains on montages by default, but a recipe without a scale (``--image_scale null``, e.g.
    ``paper_recipe.json`` or the weights of bundles 0.13-0.14) has no windows: it keeps ``training_crops="image"``."""
    from monai.inferers import SimpleInferer

    for configs in ((TRAIN,), (TRAIN, str(CONFIGS / "paper_recipe.json"))):
        parser = _parser(
            configs, dataset="glas", data_dir="unused", **({"image_scale": None} if len(configs) == 1 else {})
        )
        assert parser.get_parsed_content("training_crops") == "image"
        assert isinstance(parser.get_parsed_content("window_inferer"), SimpleInferer)
    served = _parser(INFERENCE, image_scale=None)
    assert served.get_parsed_content("training_crops") == "image"
