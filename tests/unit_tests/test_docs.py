"""The docs against the code: the graph pictures, the API reference, the parameter table, the
example notebooks against their scripts, and langgraph.json."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import spec_graph
from spec_graph.graph import build_graph
from spec_graph.viz import DOC_FILES, GRAPH_PNG, check_docs, graph_mermaid, mermaid_block

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api"


# -- the graph picture ---------------------------------------------------------------------------
def test_docs_diagram_is_the_code_graph() -> None:
    """Fails when the graph changed and the docs were not redrawn: run
    ``python -m spec_graph.viz --update-docs``."""
    assert check_docs(ROOT) == []


@pytest.mark.parametrize("name", DOC_FILES)
def test_each_doc_embeds_the_generated_block(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    assert text.count(mermaid_block(graph_mermaid())) == 1
    # Every node and every labelled edge of the compiled graph is in the embedded text.
    drawable = build_graph().get_graph()
    for node in drawable.nodes:
        assert f"\t{node}" in text
    for edge in drawable.edges:
        if edge.data:
            assert f"{edge.source} -. &nbsp;{edge.data}&nbsp; .-> {edge.target};" in text


def test_png_is_current() -> None:
    assert (ROOT / GRAPH_PNG).read_bytes().startswith(b"\x89PNG")
    assert not [p for p in check_docs(ROOT) if p.startswith(GRAPH_PNG)]


# -- references and install instructions --------------------------------------------------------
def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "examples").glob("*.md"))]


TEST_PATH = re.compile(r"\btests/[\w/.-]+\.py\b")


def test_every_cited_test_file_exists() -> None:
    missing = [
        f"{page.relative_to(ROOT)}: {cited}"
        for page in doc_pages()
        for cited in TEST_PATH.findall(page.read_text(encoding="utf-8"))
        if not (ROOT / cited).is_file()
    ]
    assert missing == [], f"these pages cite test files that do not exist: {missing}"


def test_cited_test_paths_are_found() -> None:
    assert TEST_PATH.findall("see `tests/unit_tests/test_docs.py` and tests/a/b_c.py.") == [
        "tests/unit_tests/test_docs.py",
        "tests/a/b_c.py",
    ]


def test_install_instructions_work_from_a_clone() -> None:
    """The package is not on PyPI: no page may tell to ``pip install spec-graph``."""
    unpublished = re.compile(r"pip install (-U )?['\"]?spec[-_]graph\b")
    sources = [*doc_pages(), *sorted((ROOT / "spec_graph").rglob("*.py"))]
    assert [str(p.relative_to(ROOT)) for p in sources if unpublished.search(p.read_text(encoding="utf-8"))] == []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install from a clone", 1)[1].split("\n## ", 1)[0]
    commands = re.search(r"```bash\n(.*?)```", install, re.S)
    assert commands is not None
    steps = commands.group(1)
    order = [
        steps.find(s)
        for s in ("git clone ", "cd ", "python3 -m venv .venv", ". .venv/bin/activate", "pip install -e .")
    ]
    assert -1 not in order and order == sorted(order), steps


# -- the API reference ---------------------------------------------------------------------------
def documented() -> set[str]:
    names = set()
    for page in API.glob("*.md"):
        names |= set(re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), re.M))
    return names


@pytest.mark.parametrize(
    "module",
    [
        "spec_graph",
        "spec_graph.generators",
        "spec_graph.graph",
        "spec_graph.errors",
        "spec_graph.config",
        "spec_graph.policies",
        "spec_graph.policy_config",
    ],
)
def test_api_reference_covers_public_names(module: str) -> None:
    short = {name.rsplit(".", 1)[-1] for name in documented()}
    exported = set(importlib.import_module(module).__all__) - {"__version__", "describe"}
    assert exported - short == set(), f"add these to a page under docs/api/: {sorted(exported - short)}"


def test_api_reference_targets_exist() -> None:
    for dotted in documented():
        module, _, attr = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), attr), dotted


def test_every_api_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in API.glob("*.md"):
        assert f"api/{page.name}" in nav, page.name
    for page in (ROOT / "docs").glob("*.md"):
        assert f" {page.name}" in nav, page.name


# -- parameters ----------------------------------------------------------------------------------
def test_parameter_table_lists_every_config_field() -> None:
    text = (ROOT / "docs" / "how-it-works.md").read_text(encoding="utf-8")
    table = text.split("## Parameters", 1)[1].split("\n## ", 1)[0]
    missing = [f for f in spec_graph.SpeculativeThinkingConfig.model_fields if f"`{f}`" not in table]
    assert missing == [], f"document these in how-it-works.md's parameter table: {missing}"


# -- example notebooks ---------------------------------------------------------------------------
def _builder() -> ModuleType:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        return importlib.import_module("build_notebooks")
    finally:
        sys.path.pop(0)


def test_notebooks_match_their_scripts() -> None:
    """Fails when a script changed and its notebook was not rebuilt: run
    ``python examples/build_notebooks.py`` (``--execute`` to refresh the outputs)."""
    pytest.importorskip("nbformat")
    builder = _builder()
    for name in builder.NOTEBOOKS:
        script, notebook = ROOT / "examples" / f"{name}.py", ROOT / "examples" / f"{name}.ipynb"
        assert builder.script_cells(script) == builder.notebook_cells(notebook), name


def test_notebooks_have_no_errors_stored() -> None:
    for path in (ROOT / "examples").glob("*.ipynb"):
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert nb["metadata"]["kernelspec"]["name"] == "python3"
        for cell in nb["cells"]:
            for output in cell.get("outputs", []):
                assert output.get("output_type") != "error", path.name


# -- LangGraph Studio ----------------------------------------------------------------------------
def test_langgraph_json_points_at_a_compiled_graph() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert config["dependencies"] == ["."]
    for spec in config["graphs"].values():
        path, _, attr = spec.partition(":")
        module = path.removeprefix("./").removesuffix(".py").replace("/", ".")
        graph = getattr(importlib.import_module(module), attr)
        assert hasattr(graph, "get_graph") and hasattr(graph, "invoke")


def test_studio_graph_draws_like_the_graph() -> None:
    from spec_graph.studio import graph

    assert graph_mermaid(graph) == graph_mermaid(build_graph())


def test_studio_graph_runs_like_the_thinker() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from spec_graph.studio import _RUNS, StudioContext, build_studio_graph

    def models() -> tuple[spec_graph.ScriptedGenerator, spec_graph.ScriptedGenerator]:
        small = spec_graph.ScriptedGenerator.from_responses(
            ["12 * 7 is 74.\n\n", "Wait, maybe it is 74.", "So it is 84.<eos>"], name="small"
        )
        target = spec_graph.ScriptedGenerator.from_responses(["Wait, 12 * 7 = 84.\n\n(more)"], name="target")
        return small, target

    question = [{"role": "user", "content": "What is 12 * 7?"}]
    expected = spec_graph.SpeculativeThinker(*models()).run(question, temperature=0, probe_tokens=7)
    small, target = models()
    # StudioContext declares its models as str (Studio's form); from Python a Generator works too.
    context = StudioContext(
        small_model=small,  # type: ignore[arg-type]
        target_model=target,  # type: ignore[arg-type]
        preset="reasoning",
        overrides={"probe_tokens": 7},
    )
    state = build_studio_graph().invoke({"messages": question}, context=context)
    assert "".join(s["text"] for s in state["spans"]) == expected.text
    assert state["interventions"] == expected.interventions
    assert not _RUNS  # finalize closed the run's sessions

    # Interrupted after the target's stretch and resumed with a new context (as Studio does):
    # the sessions are rebuilt from the checkpointed text.
    app = build_studio_graph().builder.compile(checkpointer=InMemorySaver(), interrupt_after=["target_intervene"])
    small, target = models()
    settings = {"small_model": small, "target_model": target, "preset": "reasoning", "overrides": {"probe_tokens": 7}}
    thread = {"configurable": {"thread_id": "t"}}
    partial = app.invoke({"messages": question}, thread, context=dict(settings))
    assert "".join(s["text"] for s in partial["spans"]) == "12 * 7 is 74.\n\nWait, 12 * 7 = 84.\n\n"
    final = app.invoke(None, thread, context=dict(settings))
    assert "".join(s["text"] for s in final["spans"]) == expected.text
    assert not _RUNS
