"""The import contract: asyncmpc's packages are layers, and no module imports up or across.

The order is the one ``asyncmpc/__init__.py`` documents. Every import counts, also one inside
a function (the CLI imports lazily), and ``TYPE_CHECKING`` imports too: a layer that needs a
type from above it is as tangled as one that calls it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "asyncmpc"

LAYERS: list[set[str]] = [
    {"errors"},
    {"config"},
    {"crypto"},
    {"wire"},
    {"protocol", "learning"},  # side by side: neither imports the other
    {"net"},
    {"roles"},
    {"cli"},
    {"__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def unit(module: str) -> str:
    """The layer a dotted module name belongs to: its first part below ``asyncmpc``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "asyncmpc"


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every ``asyncmpc`` module that ``path`` imports, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "asyncmpc":
                yield from ((node.lineno, f"asyncmpc.{alias.name}") for alias in node.names)
            elif node.module.startswith("asyncmpc."):
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.startswith("asyncmpc."))


def violations(root: Path = ROOT) -> list[str]:
    """Every import that goes up a layer or across to a sibling, as "file:line: a -> b"."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        source = unit(".".join(rel.with_suffix("").parts))
        if source == "__init__" or source not in RANK:
            if source != "__init__":
                found.append(f"{rel}: {source} is in no layer (add it to LAYERS)")
            continue
        for line, module in imports(path):
            target = unit(module)
            if target == source:
                continue
            if target not in RANK:
                found.append(f"{rel}:{line}: imports {module}, which is in no layer")
            elif RANK[target] >= RANK[source]:
                found.append(f"{rel}:{line}: {source} imports {module} ({target} is not below {source})")
    return found


def test_no_module_imports_up_a_layer_or_across() -> None:
    assert violations() == []


def test_the_check_catches_an_upward_and_a_sideways_import(tmp_path: Path) -> None:
    pkg = tmp_path / "asyncmpc"
    for name, text in {
        "crypto/ring.py": "from asyncmpc.wire.codec import decode_message\n",
        "protocol/server.py": "def f():\n    from asyncmpc.learning import training\n",
        "wire/codec.py": "from asyncmpc.crypto import ring\nfrom asyncmpc import errors\n",
        "extra/thing.py": "",
    }.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    assert violations(pkg) == [
        "asyncmpc/crypto/ring.py:1: crypto imports asyncmpc.wire.codec (wire is not below crypto)",
        "asyncmpc/extra/thing.py: extra is in no layer (add it to LAYERS)",
        "asyncmpc/protocol/server.py:2: protocol imports asyncmpc.learning (learning is not below protocol)",
    ]


@pytest.mark.parametrize("package", sorted(p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"))
def test_every_package_has_a_layer(package: str) -> None:
    assert package in RANK
