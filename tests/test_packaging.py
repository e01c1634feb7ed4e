"""The built distributions carry everything the package reads at run time, the C++ kernel source included.

The wheel and the sdist are built from a copy of the package's sources (so build folders left in the checkout cannot
leak into them), offline, with the environment's setuptools (``--no-build-isolation``). Installing the wheel into a
fresh environment and running a copied bundle with it is ``scripts/check_wheel_install.sh`` (CI).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "medt_monai"


def _package_files() -> set[str]:
    """Every file of the package as it lies in the checkout (sources, the kernel's C++), minus bytecode caches."""
    return {
        p.relative_to(ROOT).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "medt_monai", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def _build(args: list[str], cwd: Path) -> None:
    r = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(args)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def test_wheel_carries_every_package_file_and_the_kernel_source(sources, tmp_path):
    _build(["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-q", "-w", str(tmp_path),
            str(sources)], cwd=tmp_path)  # fmt: skip
    (wheel,) = tmp_path.glob("medt_monai-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "medt_monai/_extensions/axial_attention_cpu.cpp" in names
    missing = _package_files() - names
    assert not missing, f"{wheel.name} lacks {sorted(missing)}"


def test_sdist_carries_every_package_file_and_the_kernel_source(sources, tmp_path):
    code = f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})"
    _build(["-c", code], cwd=sources)
    (sdist,) = tmp_path.glob("medt_monai-*.tar.gz")
    with tarfile.open(sdist) as archive:
        top = sdist.name[: -len(".tar.gz")]
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
    assert "medt_monai/_extensions/axial_attention_cpu.cpp" in names
    missing = _package_files() - names
    assert not missing, f"{sdist.name} lacks {sorted(missing)}"
