"""The docs' account of the code, checked against the code: the import tiers of
docs/architecture.md, the probe list, the presets of docs/configuration.md, and the shape rules
(no function of 100 lines or more, no Hessian call that passes placeholders for what it ignores).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "src" / "smoothbench"
DOCS = REPO / "docs"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _expand(item: str) -> list[str]:
    """`probes/{a, b}.py` -> the two paths; `run/*.py` -> every module of run/ (as paths)."""
    match = re.fullmatch(r"(.*)\{(.*)\}(.*)", item)
    if match:
        head, names, tail = match.groups()
        return [f"{head}{name.strip()}{tail}" for name in names.split(",")]
    if "*" in item:
        found = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.glob(item))
        assert found, f"docs/architecture.md names {item!r}, which matches no file"
        return found
    return [item]


def documented_tiers(text: str) -> list[list[str]]:
    """The tier block of docs/architecture.md's "The layers": tiers top to bottom, each a list
    of paths relative to the package."""
    section = text[text.index("## The layers") :]
    block = section[section.index("```\n") + 4 :]
    block = block[: block.index("```")]
    tiers: list[list[str]] = []
    for line in block.splitlines():
        if not line.strip() or set(line.strip()) <= set("│▼"):
            continue
        label, items = line[:16], line[16:]
        if label.strip():
            tiers.append([])
        for item in items.split(" · "):
            tiers[-1].extend(_expand(item.strip()))
    return tiers


def _imports(path: Path, name: str, tree: ast.AST | None = None) -> set[str]:
    """The smoothbench modules `path` imports, at module level or inside functions (or those
    of `tree`, a part of it)."""
    modules = _modules()
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text()) if tree is None else tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: None if is_package else -1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("smoothbench") and target != name:
                found.add(target)
    return found


def test_every_module_is_in_exactly_one_documented_tier():
    tiers = documented_tiers((DOCS / "architecture.md").read_text())
    listed = [path for tier in tiers for path in tier]
    assert len(tiers) == 6
    doubled = sorted({p for p in listed if listed.count(p) > 1})
    assert not doubled, f"in more than one tier: {doubled}"
    on_disk = {str(p.relative_to(PACKAGE)) for p in _modules().values()}
    assert not on_disk - set(listed), f"in no tier of docs/architecture.md: {on_disk - set(listed)}"
    assert not set(listed) - on_disk, f"documented but absent: {set(listed) - on_disk}"


def test_imports_only_go_down_the_documented_tiers():
    tiers = documented_tiers((DOCS / "architecture.md").read_text())
    tier_of = {
        _module_name(PACKAGE / path): level for level, tier in enumerate(tiers) for path in tier
    }
    upward = []
    for name, path in _modules().items():
        for target in _imports(path, name):
            if tier_of.get(target, -1) < tier_of.get(name, -1):  # unlisted: the test above
                upward.append(f"{name} -> {target}")
    assert not upward, f"imports from a tier above: {upward}"


def test_the_probe_runner_and_the_solvers_know_no_probe_by_name():
    from smoothbench.probes.registry import probe_types

    probe_modules = {probe.__module__ for probe in probe_types().values()}
    assert "smoothbench.probes.hessian" in probe_modules
    for name in ("smoothbench.probes.runner", "smoothbench.build"):
        assert not _imports(_modules()[name], name) & probe_modules, name
    for name, path in _modules().items():
        if name.startswith(("smoothbench.curvature", "smoothbench.surfaces")):
            assert not any(t.startswith("smoothbench.probes") for t in _imports(path, name)), name


def test_no_module_level_import_cycles():
    graph = {}
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        top = ast.Module(
            body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)],
            type_ignores=[],
        )
        graph[name] = _imports(path, name, top)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):
                continue  # a package importing its own modules (its __init__) is no cycle
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*trail, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_documented_probe_list_is_the_registry():
    from smoothbench.probes.registry import probe_names

    text = (DOCS / "architecture.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `probes/` |"))
    listed = re.search(r"one per module \(([^)]*)\)", row).group(1)
    assert {name.strip(" `") for name in listed.split(",")} == set(probe_names())


def test_the_preset_families_of_configuration_md_are_the_presets():
    text = (DOCS / "configuration.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| (VGG|ResNet|DLN) \(`", line)]
    documented = {name for row in rows for name in re.search(r"\(`([^`]*)`\)", row)[1].split()}
    presets = {p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")}
    assert documented == presets


def test_no_function_of_a_hundred_lines_or_more():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length >= 100:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({length} lines)")
    assert not long


def test_no_call_passes_placeholders_for_arguments_it_ignores():
    hits = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "None, None, None" in path.read_text()
    ]
    assert not hits
