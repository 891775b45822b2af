"""Import rules of the code base, checked on the source (AST), so a layering leak fails CI.

Layers only look down: ``shared`` is ordered layers -> attention -> blocks -> models ->
engine -> cli -> example tasks -> bench (:data:`SHARED_LAYERS`), and each vertical sits on
``shared`` without knowing the others. Inside a vertical, library modules (data, transforms,
model, metrics, task, ...) never import the vertical's commands (:data:`COMMANDS`), and reach
``shared`` no higher than the engine; commands may use ``shared.cli``; only ``bench.py`` uses
``shared.bench``. No module imports another module's private (``_name``) names. Each rule is a
function of the import edges (a-f below), run on the code base and on planted imports.

Function-local imports count like top-level ones: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERTICALS = ("medical", "remote_sensing", "video_sr")
PACKAGES = ("shared", *VERTICALS)

# Rank of each module of ``shared``; a module imports only modules of its rank or below. Every
# module must be listed (a new one fails ``test_every_shared_module_has_a_layer``), so the
# order is decided when the module is written, not discovered later.
SHARED_LAYERS: dict[str, int] = {
    # 0 layers: primitives with no knowledge of the blocks.
    "shared.layers": 0,
    "shared.memory": 0,
    "shared.matching": 0,  # counts parameters of networks its callers build
    # 1 attention
    "shared.attention": 1,
    # 2 blocks, and the configs that compose them into stages.
    "shared.blocks": 2,
    "shared.config": 2,
    # 3 backbone/classifier, the adapters that expose them (timm, smp, ResNet conversion), the
    # training monitors that read their attention layers, and the ``shared`` facade that
    # exports all of these (it must not pull in the engine).
    "shared": 3,
    "shared.backbone": 3,
    "shared.classifier": 3,
    "shared.convert": 3,
    "shared.monitors": 3,
    "shared.smp_encoder": 3,
    "shared.timm_models": 3,
    # 4 engine (every module of shared.engine)
    "shared.engine": 4,
    # 5 cli: the TaskSpec chassis
    "shared.cli": 5,
    # 6 the chassis' own example tasks, built on it like a vertical (the bench measures them).
    "shared.toy": 6,
    "shared.toy_image": 6,
    # 7 bench (every module of shared.bench)
    "shared.bench": 7,
}
LAYER_NAMES = ("layers", "attention", "blocks", "models", "engine", "cli", "toy", "bench")

COMMANDS = ("cli", "upscale", "predict", "bench", "demo", "evaluate", "release")
"""Vertical modules that run a command; everything else in a vertical is library code."""
HIGHEST_SHARED_FOR = {"library": 4, "command": 5, "bench": 7}
"""The highest ``shared`` layer each kind of vertical module may import."""


@dataclass(frozen=True)
class Edge:
    """One imported module (and the name taken from it, for ``from m import name``)."""

    source: str
    file: Path
    line: int
    target: str
    name: str | None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


MODULES = {_module_name(p) for p in _files()}


def _edges(path: Path, text: str | None = None) -> list[Edge]:
    """Every import in ``path`` (or in ``text`` posing as it), as absolute module names."""
    source = _module_name(path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    text = path.read_text(encoding="utf-8") if text is None else text
    edges = []
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            edges += [Edge(source, path, node.lineno, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up ``level - 1`` packages from this module's package
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:  # ``from . import engine``: the module itself
                    edges.append(Edge(source, path, node.lineno, submodule, None))
                else:
                    edges.append(Edge(source, path, node.lineno, base, alias.name))
    return edges


EDGES = [edge for path in _files() for edge in _edges(path)]


def _top(module: str) -> str:
    return module.split(".")[0]


def _shared_layer(module: str) -> int | None:
    """The layer of a ``shared`` module: its own entry, else its subpackage's (``shared.engine``
    for ``shared.engine.io``). The facade ``shared`` ranks only itself, so an unlisted module
    has no layer."""
    if module in SHARED_LAYERS:
        return SHARED_LAYERS[module]
    parts = module.split(".")
    for end in range(len(parts) - 1, 1, -1):
        if ".".join(parts[:end]) in SHARED_LAYERS:
            return SHARED_LAYERS[".".join(parts[:end])]
    return None


def _vertical_kind(module: str) -> str:
    leaf = module.split(".")[-1]
    if leaf == "bench":
        return "bench"
    return "command" if leaf in COMMANDS else "library"


def _where(edge: Edge) -> str:
    return f"{edge.file.relative_to(ROOT)}:{edge.line}: {edge.source} imports {edge.target}"


def test_the_scan_sees_the_code_base() -> None:
    """The rules below are only as good as the scan: it must find the known modules and edges."""
    assert {"shared.engine.io", "medical.prepare", "video_sr.upscale"} <= MODULES
    found = {(e.source, e.target, e.name) for e in EDGES}
    assert ("shared.bench.cli", "shared.bench.engine", None) in found  # from . import engine
    assert ("medical.cli", "medical.prepare", "prepare_dataset") in found  # in a function
    assert ("video_sr.upscale", "shared.memory", "peak_memory") in found


def test_every_shared_module_has_a_layer() -> None:
    missing = sorted(m for m in MODULES if _top(m) == "shared" and _shared_layer(m) is None)
    assert not missing, f"give these modules a layer in SHARED_LAYERS: {missing}"


def shared_imports_a_vertical(edges: list[Edge]) -> list[str]:
    """(a) ``shared`` knows nothing of any domain."""
    return [_where(e) for e in edges if _top(e.source) == "shared" and _top(e.target) in VERTICALS]


def vertical_imports_another(edges: list[Edge]) -> list[str]:
    """(b) Verticals import ``shared``, never each other."""
    return [
        _where(e)
        for e in edges
        if _top(e.source) in VERTICALS
        and _top(e.target) in VERTICALS
        and _top(e.target) != _top(e.source)
    ]


def shared_looks_up(edges: list[Edge]) -> list[str]:
    """(c) A ``shared`` module imports nothing of a higher layer."""
    bad = []
    for e in edges:
        if _top(e.source) != "shared" or _top(e.target) != "shared":
            continue
        low, high = _shared_layer(e.source), _shared_layer(e.target)
        if high is not None and low is not None and high > low:
            bad.append(f"{_where(e)} ({LAYER_NAMES[low]} -> {LAYER_NAMES[high]})")
    return bad


def library_imports_a_command(edges: list[Edge]) -> list[str]:
    """(d) A vertical's library modules never import its command modules."""
    return [
        _where(e)
        for e in edges
        if _top(e.source) in VERTICALS
        and _vertical_kind(e.source) == "library"
        and _top(e.target) == _top(e.source)
        and e.target.split(".")[-1] in COMMANDS
    ]


def private_name_crosses_a_module(edges: list[Edge]) -> list[str]:
    """(e) ``from m import _helper`` couples a module to another's internals: make it public.

    Only the project's own modules are scanned; tests are out of scope, as white-box tests may
    reach a helper directly without coupling two production modules. Third-party private
    modules are the library's business (smp documents ``encoders._base.EncoderMixin`` as the
    way to write an encoder).
    """
    return [
        f"{_where(e)}.{e.name}"
        for e in edges
        if e.name is not None
        and e.name.startswith("_")
        and not e.name.startswith("__")
        and _top(e.target) in PACKAGES
    ]


def vertical_reaches_too_high(edges: list[Edge]) -> list[str]:
    """(f) A vertical module reaches ``shared`` no higher than its kind allows.

    Library code uses ``shared`` up to the engine, commands up to the cli chassis, and only
    ``bench.py`` uses ``shared.bench``.
    """
    bad = []
    for e in edges:
        if _top(e.source) not in VERTICALS or _top(e.target) != "shared":
            continue
        kind, rank = _vertical_kind(e.source), _shared_layer(e.target)
        if rank is not None and rank > HIGHEST_SHARED_FOR[kind]:
            bad.append(f"{_where(e)} ({kind} module -> {LAYER_NAMES[rank]})")
    return bad


RULES = [
    shared_imports_a_vertical,
    vertical_imports_another,
    shared_looks_up,
    library_imports_a_command,
    private_name_crosses_a_module,
    vertical_reaches_too_high,
]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_the_code_base_keeps_the_rule(rule) -> None:
    bad = rule(EDGES)
    assert not bad, f"{rule.__doc__.splitlines()[0]}\n" + "\n".join(bad)


PLANTED = [
    ("shared/engine/planted.py", "from medical.data import read_labels", shared_imports_a_vertical),
    ("video_sr/planted.py", "import remote_sensing.data", vertical_imports_another),
    ("shared/blocks.py", "from .engine import InputError", shared_looks_up),
    ("shared/bench/planted.py", "from ..memory import peak_rss_mib", None),  # looks down: fine
    ("medical/metrics.py", "from .evaluate import evaluate_folders", library_imports_a_command),
    ("medical/predict.py", "from .normalization import tissue_mask", None),  # command -> library
    ("medical/planted.py", "from .prepare import _strided", private_name_crosses_a_module),
    (
        "video_sr/upscale.py",
        "from shared.bench.measure import peak_memory",
        vertical_reaches_too_high,
    ),
    ("video_sr/task.py", "from shared.cli import RunConfig", vertical_reaches_too_high),
    ("video_sr/bench.py", "from shared.bench import Report", None),
]


@pytest.mark.parametrize(("path", "code", "rule"), PLANTED, ids=[p[1] for p in PLANTED])
def test_a_planted_import_is_judged_right(path: str, code: str, rule) -> None:
    """Each rule catches a known-bad import, and no rule flags a known-good one."""
    edges = _edges(ROOT / path, code)
    caught = [r for r in RULES if r(edges)]
    assert caught == ([rule] if rule else [])
