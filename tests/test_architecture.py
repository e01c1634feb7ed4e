"""The package's layering, as the README's "Architecture" section states it: imports go one way, from the bundle's
configs down to ``utils``, with no cycle between modules and no sideways import between ``transforms``, ``metrics``
and ``inferers`` or between ``data`` and ``handlers``. Every import counts, also those inside functions."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import medt_monai

PACKAGE = Path(medt_monai.__file__).parent

#: each part of the package with its layer: a module may import from its own part and from lower layers only
LAYERS = {
    "utils": 0,
    "_extensions": 0,
    "networks": 1,
    "transforms": 2,
    "metrics": 2,
    "inferers": 2,
    "data": 3,
    "handlers": 3,
    "bundle": 4,
}
#: inside ``networks``: operators, then blocks, then networks; the package's own modules (registry, convert, ...) on top
NETWORK_LAYERS = {"layers": 0, "blocks": 1, "nets": 2}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The ``medt_monai`` modules that ``path`` imports anywhere in its code (relative imports resolved; for ``from
    package import submodule``, the submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            found |= submodules if len(submodules) == len(node.names) else {base}
    found = {name for name in found if name.split(".")[0] == "medt_monai"}
    resolved = set()
    for name in found:
        while name not in modules and "." in name:
            name = name.rpartition(".")[0]
        if name in modules and name != module:
            resolved.add(name)
    return resolved


def _graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {module: _imports(path, module, set(modules)) for module, path in modules.items()}


def _part(module: str) -> tuple[str, str]:
    parts = module.split(".")
    return (parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def _against_the_layers(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        part, sub = _part(module)
        for target in targets:
            target_part, target_sub = _part(target)
            if not part or not target_part or target_part == part != "networks":
                continue
            if target_part == part:  # inside networks: layers -> blocks -> nets, the package's own modules on top
                if sub in NETWORK_LAYERS and NETWORK_LAYERS.get(target_sub, 3) > NETWORK_LAYERS[sub]:
                    wrong.append(f"{module} -> {target}")
            elif LAYERS[target_part] >= LAYERS[part]:
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def test_no_import_cycle_between_the_modules_of_the_package():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_imports_go_down_the_layers_of_the_architecture():
    assert set(LAYERS) == {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    wrong = _against_the_layers(_graph())
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_checks_find_a_cycle_and_a_sideways_import(tmp_path, monkeypatch):
    """The two checks can fail: a package whose metrics import transforms, which import metrics inside a function."""
    fake = tmp_path / "medt_monai"
    for folder, source in {
        "metrics": "from medt_monai.transforms.a import f\n",
        "transforms": "def f():\n    from ..metrics import a\n",
    }.items():
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
        (fake / folder / "a.py").write_text(source)
    (fake / "__init__.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    graph = _graph()
    assert graph["medt_monai.metrics.a"] == {"medt_monai.transforms.a"}
    assert graph["medt_monai.transforms.a"] == {"medt_monai.metrics.a"}
    assert _cycles(graph) == [["medt_monai.metrics.a", "medt_monai.transforms.a", "medt_monai.metrics.a"]]
    assert _against_the_layers(graph) == ["medt_monai.metrics.a -> medt_monai.transforms.a",
                                          "medt_monai.transforms.a -> medt_monai.metrics.a"]  # fmt: skip
