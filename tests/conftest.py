"""Fixtures shared by the bundle's test modules (``tests/test_bundle_*.py``): the demo data set and one short training
run. Both are session-scoped, so the whole suite makes the data and trains once, whichever modules run; the plain
helpers and constants are in ``bundle_helpers.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_helpers import IMG, N_TEST, N_TRAIN, N_VAL, _ok, _run, _train_args


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> dict:
    """The demo data set in a temporary folder and a config that keeps the first few images of each split."""
    from medt_monai.data import make_demo_dataset

    work = tmp_path_factory.mktemp("bundle")
    demo = make_demo_dataset(root=work / "demo", seed=0)
    subset = work / "subset.json"
    subset.write_text(
        json.dumps(
            {
                "splits": "$(lambda s: {'train': s['train'][:%d], 'validation': s['validation'][:%d], "
                "'test': s['test'][:%d]})(medt_monai.data.dataset_splits(@dataset, root=@data_dir, "
                "val_fraction=@val_fraction, test_fraction=@test_fraction, seed=@split_seed, verify=@verify_data))"
                % (N_TRAIN, N_VAL, N_TEST)
            }
        )
    )
    common = ["--dataset", "demo", "--data_dir", str(demo), "--img_size", str(IMG), "--num_workers", "0"]
    return {"work": work, "demo": Path(demo), "subset": str(subset), "common": common}


@pytest.fixture(scope="session")
def trained(work) -> dict:
    """``run training`` for 2 epochs: the checkpoint every later step uses."""
    out = work["work"] / "run"
    log = _ok(_run(_train_args(work, out, "--max_epochs", "2")))
    return {"out": out, "log": log, "model": out / "models" / "model.pt"}
