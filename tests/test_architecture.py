"""The package's shape: stages import only downwards, no two modules import each other,
no module grows past about 400 lines. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "whisper_finetune"
MAX_LINES = 420

# lower ranks are imported by higher ones, never the other way round; the top-level
# helpers (version, staging, text) and the shipped assets are rank 0; ``__main__`` is
# the entry point, above everything
RANKS = {
    "": 0,
    "assets": 0,
    "models": 1,
    "data": 2,
    "inference": 3,
    "evaluation": 4,
    "training": 5,
    "serving": 5,
    "demo": 6,
    "cli": 7,
    "__main__": 8,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _stage(module: str) -> str:
    parts = module.split(".")
    if module == "whisper_finetune.__main__":
        return "__main__"
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return parts[1]
    return ""


def _imports(path: Path, module: str) -> set[str]:
    """Every whisper_finetune module ``path`` imports, at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("whisper_finetune"):
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        targets = set()
        for name in _imports(path, module):
            # keep the longest prefix that is a module of ours ("pkg.mod.func" -> "pkg.mod")
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module and name != "whisper_finetune":
                targets.add(name)
        graph[module] = targets
    return graph


GRAPH = _graph()


def test_the_graph_sees_function_level_imports():
    # load_transcriber imports the backends; the CLI imports the library inside handlers
    assert "whisper_finetune.inference.ct2" in GRAPH["whisper_finetune.inference.loader"]
    assert "whisper_finetune.training.train" in GRAPH["whisper_finetune.cli.finetune"]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_stage_imports_a_stage_above_it(module):
    stage = _stage(module)
    for target in GRAPH[module]:
        other = _stage(target)
        if other == stage:
            continue
        assert RANKS[other] < RANKS[stage], (
            f"{module} (stage {stage or 'top'}, rank {RANKS[stage]}) imports {target} "
            f"(stage {other or 'top'}, rank {RANKS[other]}): a stage may import only lower ones"
        )


def test_no_import_cycles():
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if seen.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = 2

    for module in sorted(GRAPH):
        if module not in seen:
            visit(module)


def test_package_init_imports_nothing_heavy_eagerly():
    # the top-level __init__ re-exports lazily: it may import only version
    assert GRAPH["whisper_finetune"] <= {"whisper_finetune.version"}


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_modules_stay_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, (
        f"{path.relative_to(PACKAGE)} has {lines} lines; split it along its seams"
    )
