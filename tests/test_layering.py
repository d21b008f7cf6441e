"""The package's import graph: no cycles, no arrow from a lower layer to a higher one, no reaching
into another module's private names.

Data flows one way (README, "The flow"): envs <- agents <- harness <- distill / reports <- api /
experiment <- cli. Every import counts, also the ones inside functions (they are taken lazily for
speed, but they are still a dependency). The graph is read with `ast`, so nothing is imported.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "sad_eval"

# (layer, module-name prefixes), lowest first; a module belongs to its longest matching prefix.
# A module may import its own layer and the layers below; siblings of one layer (distill and
# reports) may not import each other.
LAYERS: list[tuple[str, float, tuple[str, ...]]] = [
    # shared formats and file helpers that every layer uses
    ("core", 0, ("sad_eval.errors", "sad_eval.paths", "sad_eval.statefiles", "sad_eval.data", "sad_eval.models",
                 "sad_eval.trajectory", "sad_eval.topk_format", "sad_eval.provenance", "sad_eval.options",
                 "sad_eval.layout")),
    ("envs", 1, ("sad_eval.envs",)),
    # the turn format and REASON/ACT segmentation, by the env specs' rules (agents, distill, reports use it)
    ("segment", 1.5, ("sad_eval.segment",)),
    ("agents", 2, ("sad_eval.agents",)),
    ("harness", 3, ("sad_eval.harness", "sad_eval.run", "sad_eval.topk_collect", "sad_eval.metrics",
                    "sad_eval.settings")),
    ("distill", 4, ("sad_eval.distill",)),
    ("reports", 4, ("sad_eval.reports",)),
    ("experiment", 5, ("sad_eval.api", "sad_eval.experiment")),
    # commands (wherever they live) and the package's own facade (`sad_eval.evaluate`, ...)
    ("cli", 6, ("sad_eval.cli", "sad_eval.harness_cli", "sad_eval.experiment_cli", "sad_eval.serve_cli",
                "sad_eval.distill.cli", "sad_eval.envs.webshop.cli", "sad_eval.agents.serve_model", "sad_eval")),
]

# Arrows allowed for now, each with its reason: (importer, imported). Delete an entry when its arrow is
# gone (test_known_exceptions_are_still_real says so), so that the test then guards it.
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_PRIVATE: set[tuple[str, str, str]] = set()  # (importer, module, private name)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def imports_of(name: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in ``name``'s source."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    here = name if is_package(name) else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("sad_eval")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            if not base.startswith("sad_eval"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                # `from sad_eval import data` imports the module sad_eval.data
                out.append((sub, None, node.lineno) if sub in MODULES else (base, a.name, node.lineno))
    return out


def layer_of(name: str) -> tuple[str, int]:
    best = None
    for label, level, prefixes in LAYERS:
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and (best is None or len(p) > len(best[0])):
                best = (p, label, level)
    assert best is not None, f"{name} is in no layer: add it to LAYERS in {__file__}"
    return best[1], best[2]


@functools.lru_cache(maxsize=None)
def graph() -> dict[str, frozenset[str]]:
    g: dict[str, set[str]] = {m: set() for m in MODULES}
    for m in MODULES:
        for target, _, _ in imports_of(m):
            while target not in MODULES and "." in target:  # `import sad_eval.x.y` of an attribute
                target = target.rpartition(".")[0]
            if target != m and target in MODULES:
                g[m].add(target)
    return {m: frozenset(t) for m, t in g.items()}


def test_every_module_is_in_a_layer():
    for m in MODULES:
        layer_of(m)


def test_no_import_cycles():
    # the known upward arrows close a cycle through the harness; they are reported by the next test
    g = {m: {t for t in ts if (m, t) not in KNOWN_UPWARD} for m, ts in graph().items()}
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m)
    # inside one package its __init__ and its modules are one unit: the package re-exports its modules,
    # and a module may ask the package to finish registering (e.g. envs.spec -> envs -> envs.*_spec)
    def inside_one_package(c: list[str]) -> bool:
        return any(is_package(p) and all(x == p or x.startswith(p + ".") for x in c) for p in c)

    real = [c for c in cycles if not inside_one_package(c)]
    assert not real, "import cycles:\n" + "\n".join(" -> ".join(c) for c in real)


def test_no_arrow_from_a_lower_layer_to_a_higher_one():
    bad = []
    for m in MODULES:
        mine, level = layer_of(m)
        for target in graph()[m]:
            theirs, their_level = layer_of(target)
            upward = their_level > level or (their_level == level and theirs != mine)
            if upward and (m, target) not in KNOWN_UPWARD:
                bad.append(f"{m} ({mine}) imports {target} ({theirs})")
    assert not bad, "\n".join(sorted(bad))


def test_no_module_imports_another_modules_private_names():
    bad = []
    for m in MODULES:
        for target, name, line in imports_of(m):
            if name and name.startswith("_") and not name.startswith("__") and target != m \
                    and (m, target, name) not in KNOWN_PRIVATE:
                bad.append(f"{m}:{line} imports {target}.{name}")
    assert not bad, "\n".join(sorted(bad))


def test_known_exceptions_are_still_real():
    """An allow-listed arrow that no longer exists must leave the list (so the test guards it)."""
    g = graph()
    assert {(a, b) for a, b in KNOWN_UPWARD if b not in g.get(a, ())} == set()
    private = {(m, t, n) for m in MODULES for t, n, _ in imports_of(m) if n}
    assert KNOWN_PRIVATE <= private
