"""The dependency rules of ARCHITECTURE.md, checked on the source: every module under gallery/ parsed with ``ast``.

What counts as an import:

- every ``import`` statement, at module level or inside a function (a deferred import hides a
  dependency, it does not remove one: ``decision`` importing ``calibration`` inside
  ``rule_from_dict`` was a real cycle);
- ``if TYPE_CHECKING:`` imports never run: they are left out of the cycle check (they are how
  annotations name a type without a runtime edge) but count for the layer rules (a layer that
  names another's types knows it);
- ``from package import name`` is an edge to ``package.name`` when that is a module, else to
  the package; importing ``a.b.c`` is not also counted as importing ``a.b`` (Python runs the
  package's ``__init__`` first, but counting that would make every package that re-exports
  its own modules a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "gallery"

# Imported by every layer; they import no other gallery module.
LEAVES = frozenset({"gallery.errors", "gallery.atomicfile", "gallery.types", "gallery.arguments"})

# ARCHITECTURE.md, "Ownership": the layers below the facade, and the other layers each may import
# (besides itself and the leaves). Anything not listed (the facade and its helpers, the shells) is
# above them all.
LAYERS: Mapping[str, frozenset[str]] = {
    "gallery.models": frozenset(),  # network definitions and their file readers
    "gallery.vision": frozenset({"gallery.models"}),  # the pipeline; "knows nothing of storage"
    "gallery.store": frozenset(),  # "knows nothing of images or decisions"
    "gallery.decision": frozenset(),  # what identify runs: "imports neither store nor calibration"
    "gallery.calibration": frozenset({"gallery.decision"}),  # offline: "imports decision"
}

# "nothing at identify time imports it": only the facade's calibrate/evaluate path, and the
# package's public surface (which re-exports its result types lazily), may import calibration.
CALIBRATION_IMPORTERS = frozenset({"gallery", "gallery.gallery", "gallery.calibrating", "gallery.rule_learning"})

# "shells import the facade, never the reverse".
SHELLS = frozenset({"gallery.cli", "gallery.__main__", "gallery.service"})
# ``gallery serve`` launches the HTTP service: the one shell that may import another (importer, shell).
LAUNCHERS = frozenset({("gallery.cli.serve", "gallery.service")})

# "torch only under models/vision, FAISS only under store".
THIRD_PARTY_HOMES: Mapping[str, frozenset[str]] = {
    "torch": frozenset({"gallery.models", "gallery.vision"}),
    "faiss": frozenset({"gallery.store"}),
}

Kind = Literal["module", "function", "type_checking"]


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a gallery module (resolved) or a third-party dotted name
    line: int
    kind: Kind

    def __str__(self) -> str:
        where = {"module": "", "function": " (in a function)", "type_checking": " (TYPE_CHECKING)"}[self.kind]
        return f"{self.importer} imports {self.target}{where}, line {self.line}"


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str | None:
    return next((layer for layer in LAYERS if within(module, layer)), None)


def package_sources(root: Path = PACKAGE_ROOT) -> dict[str, tuple[str, bool]]:
    """Module name -> (source, is_package) for every ``.py`` file under ``root``."""
    sources = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        sources[".".join(parts)] = (path.read_text(encoding="utf-8"), is_package)
    return sources


def collect_imports(sources: Mapping[str, tuple[str, bool]]) -> list[Import]:
    """Every import statement of every module, gallery targets resolved to the modules they name."""
    found: list[Import] = []
    for module, (source, is_package) in sources.items():
        tree = ast.parse(source, filename=module)
        for node, kind in _walk(tree, "module"):
            for target in _targets(node, module, is_package, sources):
                found.append(Import(module, target, node.lineno, kind))
    return found


def _walk(node: ast.AST, kind: Kind) -> Iterable[tuple[ast.Import | ast.ImportFrom, Kind]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, kind
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            yield from _walk(ast.Module(body=child.body, type_ignores=[]), "type_checking")
            yield from _walk(ast.Module(body=child.orelse, type_ignores=[]), kind)
        else:
            deferred = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from _walk(child, "function" if deferred and kind == "module" else kind)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, sources: Mapping[str, object]
) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in sources else base for alias in node.names]
    return list(dict.fromkeys(names))


# ---- the rules ----------------------------------------------------------------------------


def cycles(imports: Iterable[Import], modules: Iterable[str]) -> list[list[str]]:
    """Strongly connected groups of gallery modules (runtime imports only), each a cycle or knot of cycles."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.kind != "type_checking" and imp.target in graph:
            graph[imp.importer].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_violations(imports: Iterable[Import]) -> list[str]:
    """Imports that point up (or sideways) out of a layer, by ``LAYERS`` and ``LEAVES``."""
    bad = []
    for imp in imports:
        if not within(imp.target, "gallery") or imp.target in LEAVES:
            continue
        if imp.importer in LEAVES:
            bad.append(f"{imp}: a leaf module imports no other gallery module")
            continue
        layer = layer_of(imp.importer)
        if layer is None or within(imp.target, layer):
            continue
        allowed = LAYERS[layer]
        if not any(within(imp.target, other) for other in allowed):
            may = ", ".join(sorted(allowed)) or "nothing"
            bad.append(f"{imp}: {layer} may import only itself, the leaves and {may}")
    return bad


def calibration_violations(imports: Iterable[Import]) -> list[str]:
    return [
        f"{imp}: only {', '.join(sorted(CALIBRATION_IMPORTERS))} may import gallery.calibration (offline only)"
        for imp in imports
        if within(imp.target, "gallery.calibration")
        and not within(imp.importer, "gallery.calibration")
        and imp.importer not in CALIBRATION_IMPORTERS
    ]


def shell_violations(imports: Iterable[Import]) -> list[str]:
    bad = []
    for imp in imports:
        shell = next((s for s in SHELLS if within(imp.target, s)), None)
        if shell is None or within(imp.importer, shell) or imp.importer == "gallery.__main__":
            continue
        if (imp.importer, shell) in LAUNCHERS:
            continue
        bad.append(f"{imp}: shells import the facade, never the reverse")
    return bad


def third_party_violations(imports: Iterable[Import]) -> list[str]:
    bad = []
    for imp in imports:
        homes = THIRD_PARTY_HOMES.get(imp.target.split(".")[0])
        if homes is not None and not any(within(imp.importer, home) for home in homes):
            bad.append(f"{imp}: {imp.target.split('.')[0]} belongs under {' or '.join(sorted(homes))} only")
    return bad


def every_violation(sources: Mapping[str, tuple[str, bool]]) -> list[str]:
    imports = collect_imports(sources)
    return [
        *(f"import cycle: {' <-> '.join(group)}" for group in cycles(imports, sources)),
        *layer_violations(imports),
        *calibration_violations(imports),
        *shell_violations(imports),
        *third_party_violations(imports),
    ]


# ---- the package --------------------------------------------------------------------------


def test_the_package_follows_the_dependency_rules_of_the_architecture() -> None:
    sources = package_sources()
    assert "gallery.decision" in sources and "gallery.calibration.fit" in sources
    violations = every_violation(sources)
    assert not violations, "\n".join(violations)


def test_the_import_graph_is_read_from_the_source() -> None:
    imports = collect_imports(package_sources())
    edges = {(imp.importer, imp.target, imp.kind) for imp in imports}
    assert ("gallery.calibration.fit", "gallery.decision.normalised", "module") in edges
    assert ("gallery.cli.context", "gallery.gallery", "function") in edges
    assert ("gallery", "gallery.gallery", "type_checking") in edges


# ---- the checker catches what it is for (on made-up modules) ------------------------------


def _modules(**sources: str) -> dict[str, tuple[str, bool]]:
    """Module sources keyed by name with ``__`` for dots; a name ending ``__init`` is a package."""
    out = {}
    for key, source in sources.items():
        name = key.replace("__", ".")
        is_package = name.endswith(".init")
        out[name.removesuffix(".init")] = (source, is_package)
    return out


def test_a_cycle_through_a_function_level_import_is_reported() -> None:
    sources = _modules(
        gallery__decision__rule="def load():\n    from gallery.decision.normalised import N\n",
        gallery__decision__normalised="from gallery.decision.rule import Decision\n",
    )
    assert every_violation(sources) == ["import cycle: gallery.decision.normalised <-> gallery.decision.rule"]


def test_a_cycle_only_under_type_checking_is_not_a_cycle() -> None:
    sources = _modules(
        gallery__results="from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gallery.gallery import G\n",
        gallery__gallery="from gallery.results import R\n",
    )
    assert every_violation(sources) == []


def test_a_relative_import_through_the_package_init_is_a_cycle() -> None:
    sources = _modules(
        gallery__decision__init="from .rule import Decision\n",
        gallery__decision__rule="from . import cohort\nfrom gallery.decision import COHORT_SIZE\n",
        gallery__decision__cohort="COHORT_SIZE = 10\n",
    )
    assert every_violation(sources) == ["import cycle: gallery.decision <-> gallery.decision.rule"]


def test_decision_may_not_import_the_store_or_calibration_even_for_types() -> None:
    sources = _modules(
        gallery__decision__rule=(
            "from typing import TYPE_CHECKING\nfrom gallery.errors import E\n"
            "if TYPE_CHECKING:\n    from gallery.store import Store\n"
        ),
        gallery__decision__normalised="def f():\n    import gallery.calibration.fit\n",
        gallery__store__init="",
        gallery__calibration__fit="from gallery.decision.rule import Decision\n",
    )
    violations = every_violation(sources)
    assert len(violations) == 3, violations
    assert violations[0].startswith("gallery.decision.rule imports gallery.store (TYPE_CHECKING), line 4")
    assert "gallery.decision.normalised imports gallery.calibration.fit (in a function)" in violations[1]
    assert (
        "only gallery, gallery.calibrating, gallery.gallery, gallery.rule_learning may import gallery.calibration"
        in violations[2]
    )


def test_the_store_may_not_know_images_and_a_leaf_may_not_import_upward() -> None:
    sources = _modules(
        gallery__store__records="from gallery.vision.pipeline import Face\nfrom gallery.types import Box\n",
        gallery__vision__pipeline="from gallery.models.resnet import R\n",
        gallery__models__resnet="",
        gallery__types="from gallery.results import X\n",
        gallery__results="",
    )
    violations = every_violation(sources)
    assert len(violations) == 2, violations
    assert "gallery.store.records imports gallery.vision.pipeline" in violations[0]
    assert "gallery.types imports gallery.results" in violations[1]


def test_torch_and_faiss_stay_in_their_layers_and_nothing_imports_the_cli() -> None:
    sources = _modules(
        gallery__gallery="import faiss\ndef f():\n    from gallery import cli\n",
        gallery__vision__threads="import torch\n",
        gallery__store__index="import faiss.contrib.torch_utils\nimport torch.nn\n",
        gallery__cli="",
        gallery__init="",
    )
    violations = every_violation(sources)
    assert len(violations) == 3, violations
    assert "gallery.gallery imports gallery.cli (in a function)" in violations[0]
    assert "gallery.gallery imports faiss" in violations[1]
    assert "gallery.store.index imports torch.nn, line 2: torch belongs under" in violations[2]
