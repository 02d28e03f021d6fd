"""Imports point one way: engine <- (data, interpolate, pde, models) <- experiments/train <- cli.

The engine never imports models, training, the CLI or plotting libraries, so it stays usable
(and importable) on its own. This test reads every module's imports with ``ast``.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "src" / "kutta"

# The layer of each top-level part of the package; a module may import its own layer or lower.
LAYERS = {
    "engine": 0,
    "api": 2,  # the top-level package re-exports the engine and the models
    "data": 1,
    "interpolate": 1,
    "pde": 2,
    "models": 2,
    "train": 3,
    "experiments": 4,
    "cli": 5,
}
UPPER_PARTS = {name for name in LAYERS if name not in ("engine", "api")}
PRESENTATION_LIBRARIES = {"matplotlib", "rich", "typer", "tensorboard"}


def _layer_of(module_path: pathlib.Path) -> str:
    rel = module_path.relative_to(PACKAGE)
    if rel == pathlib.Path("__init__.py"):
        return "api"
    top = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    return top if top in UPPER_PARTS else "engine"


def _imported_modules(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(("kutta", *path.relative_to(PACKAGE).with_suffix("").parts))
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                names.append(".".join(base + ([node.module] if node.module else [])))
            else:
                names.append(node.module or "")
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path):
    here = _layer_of(path)
    for name in _imported_modules(path):
        parts = name.split(".")
        if parts[0] == "kutta" and len(parts) > 1 and parts[1] in UPPER_PARTS:
            assert LAYERS[parts[1]] <= LAYERS[here], (
                f"{path.relative_to(PACKAGE)} ({here}) imports {name} ({parts[1]}): "
                "imports must point down the layers"
            )
        if here in ("engine", "api", "data", "interpolate", "models", "pde", "train"):
            assert (
                parts[0] not in PRESENTATION_LIBRARIES
                or here == "train"
                and parts[0] == "tensorboard"
            ), (
                f"{path.relative_to(PACKAGE)} ({here}) imports {name}: "
                "plotting and terminal libraries belong to cli/ and experiments/"
            )


def test_the_top_level_package_exports_only_the_engine():
    # `import kutta` must not drag in models, training or plotting.
    for name in _imported_modules(PACKAGE / "__init__.py"):
        parts = name.split(".")
        assert not (
            parts[0] == "kutta" and len(parts) > 1 and parts[1] in {"train", "cli", "experiments"}
        ), name
        assert parts[0] not in PRESENTATION_LIBRARIES, name
