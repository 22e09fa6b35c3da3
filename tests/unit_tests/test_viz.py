"""spec_graph.viz: the trace of a run (HTML, images) and the graph pictures, with scripted models."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spec_graph import ScriptedGenerator, SpecResult, SpeculativeThinker
from spec_graph.graph import build_graph
from spec_graph.viz import (
    GRAPH_END,
    GRAPH_START,
    check_docs,
    graph_mermaid,
    main,
    mermaid_block,
    png_graph_digest,
    render_trace,
    save_trace,
    update_docs,
)
from spec_graph.viz.figure import layout
from spec_graph.viz.trace import trace_of

ROOT = Path(__file__).resolve().parents[2]
RECAP = "Let me check whether there are some wrong steps:"


def run_with_everything() -> SpecResult:
    """A run with a small-model step, a kept target intervention, an injected recap and a takeover."""
    small = ScriptedGenerator.from_responses(
        ["Step one.\n\n", "Wait, no.", "Step two.\n\n", "Hmm.", "Done.<eos>"], name="small"
    )
    target = ScriptedGenerator.from_responses(["Wait, <b>fix</b> & go.\n\n(more)", "Recap: fine.\n\n(more)"])
    return SpeculativeThinker(small, target).run(
        "q", temperature=0, probe_tokens=5, negative_threshold=1, recap_tokens=4, max_new_tokens=60
    )


@pytest.fixture(scope="module")
def result() -> SpecResult:
    r = run_with_everything()
    assert [s["author"] for s in r.spans] == ["small", "target", "small", "injected", "target", "small"]
    assert [i["kind"] for i in r.interventions] == ["intervention", "takeover"]
    return r


def spans_of(page: str, css: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(rf'<span class="{css}" title="[^"]*">(.*?)</span>', page, re.S)]


# -- render_trace ------------------------------------------------------------------------------
def test_target_stretches_are_highlighted(result: SpecResult) -> None:
    page = render_trace(result)
    assert spans_of(page, "sg-target") == [s["text"] for s in result.spans if s["author"] == "target"]
    assert spans_of(page, "sg-small") == [s["text"] for s in result.spans if s["author"] == "small"]


def test_injected_text_is_marked(result: SpecResult) -> None:
    page = render_trace(result)
    assert spans_of(page, "sg-injected") == [RECAP]
    assert 'title="injected · recap_prompt"' in page


def test_interventions_are_marked_where_they_start(result: SpecResult) -> None:
    page = render_trace(result)
    markers = re.findall(r'<span class="sg-marker sg-(\w+)" id="sg-iv-(\d)" title="([^"]*)">\d</span>', page)
    assert [(kind, number) for kind, number, _ in markers] == [("intervention", "1"), ("takeover", "2")]
    first = html.unescape(markers[0][2])
    assert "#1 intervention (reflection)" in first
    assert "small model's probe: 'Wait, no.'" in first
    assert "target wrote: 'Wait, <b>fix<'" in first
    assert "kept: target" in first
    # The text before each marker is exactly the text before its char_position.
    pre = page.split('<pre class="sg-text">')[1].split("</pre>")[0]
    for number, item in enumerate(result.interventions, 1):
        before = pre.split(f'id="sg-iv-{number}"')[0]
        before = re.sub(r'<span class="sg-marker[^>]*>\d+</span>', "", before[: before.rfind("<span")])
        assert html.unescape(re.sub(r"<[^>]+>", "", before)) == result.text[: item["char_position"]]


def test_text_is_escaped(result: SpecResult) -> None:
    page = render_trace(result)
    assert "<b>fix" not in page
    assert "&lt;b&gt;fix&lt;" in page


def test_whole_text_in_order(result: SpecResult) -> None:
    page = render_trace(result)
    pre = page.split('<pre class="sg-text">')[1].split("</pre>")[0]
    pre = re.sub(r'<span class="sg-marker[^>]*>\d+</span>', "", pre)
    assert html.unescape(re.sub(r"<[^>]+>", "", pre)) == result.text


def test_stats_and_list(result: SpecResult) -> None:
    page = render_trace(result, title="A <run>")
    assert "<h3>A &lt;run&gt;</h3>" in page
    assert f"target share {result.target_share:.0%}" in page
    assert "2 interventions" in page
    assert page.count("<li>") == 2


def test_standalone_and_fragment(result: SpecResult) -> None:
    page = render_trace(result)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    fragment = render_trace(result, standalone=False)
    assert fragment.startswith("<style>") and "<html" not in fragment
    assert fragment.strip() in page


def test_accepts_to_dict_and_json(result: SpecResult) -> None:
    assert render_trace(json.loads(json.dumps(result.to_dict()))) == render_trace(result)


def test_text_cut_at_a_stop_string() -> None:
    small = ScriptedGenerator.from_responses(["One two STOP three four.<eos>"], name="small")
    target = ScriptedGenerator.from_responses(["unused"])
    r = SpeculativeThinker(small, target).run("q", temperature=0, stop=["STOP"])
    page = render_trace(r)
    assert "STOP" not in page and "three" not in page
    assert "".join(s["text"] for s in trace_of(r).spans) == r.text == "One two "


def test_no_interventions() -> None:
    small = ScriptedGenerator.from_responses(["Just the small model.<eos>"], name="small")
    r = SpeculativeThinker(small, ScriptedGenerator.from_responses(["unused"])).run("q", temperature=0)
    page = render_trace(r)
    assert "0 interventions" in page and "sg-list" not in page.split("</style>")[1]
    assert spans_of(page, "sg-small") == ["Just the small model."]


def test_bad_input() -> None:
    with pytest.raises(TypeError):
        render_trace("not a result")
    with pytest.raises(ValueError, match="author"):
        render_trace({"spans": [{"text": "x"}]})


# -- images --------------------------------------------------------------------------------------
def test_layout_wraps_at_spaces_and_places_markers(result: SpecResult) -> None:
    lines, markers = layout(trace_of(result), width=12)
    rows = ["".join(text for _, text in line) for line in lines]
    assert all(len(row.rstrip()) <= 12 for row in rows)
    assert rows[0] == "Step one."
    assert "".join(rows).replace(" ", "") == result.text.replace("\n", "").replace(" ", "")
    row, col = markers[1]
    assert rows[row][col:].startswith("Wait,")
    row, col = markers[2]
    assert rows[row][col:].startswith("Recap:")


def test_save_trace_formats(result: SpecResult, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    html_path = save_trace(result, tmp_path / "t.html", title="t")
    assert html_path.read_text(encoding="utf-8") == render_trace(result, title="t")
    png = save_trace(result, tmp_path / "t.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    svg = save_trace(result, tmp_path / "t.svg", width=40).read_text(encoding="utf-8")
    assert "<svg" in svg
    with pytest.raises(ValueError, match="html"):
        save_trace(result, tmp_path / "t.txt")


def test_long_trace_is_cut_in_the_picture(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    text = "".join(f"Line {i} of a long answer.\n\n" for i in range(40)) + "<eos>"
    small = ScriptedGenerator.from_document(text, name="small")
    r = SpeculativeThinker(small, ScriptedGenerator.from_responses(["x"])).run(
        "q", temperature=0, max_new_tokens=400, probe_tokens=3
    )
    from spec_graph.viz import trace_figure

    fig = trace_figure(r, max_lines=10)
    assert any("more lines not shown" in t.get_text() for t in fig.texts)


# -- the graph pictures --------------------------------------------------------------------------
def test_mermaid_is_the_compiled_graphs() -> None:
    assert graph_mermaid() == build_graph().get_graph().draw_mermaid().rstrip("\n") + "\n"
    assert mermaid_block().startswith("```mermaid\n") and mermaid_block().endswith("```\n")


def test_update_and_check_docs(tmp_path: Path) -> None:
    for name in ("README.md", "docs/how-it-works.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# t\n\n{GRAPH_START}\n```mermaid\ngraph TD;\n  a --> b;\n```\n{GRAPH_END}\n")
    problems = check_docs(tmp_path, png=False)
    assert len(problems) == 2 and "differs" in problems[0]
    assert len(update_docs(tmp_path, png=False)) == 2
    assert check_docs(tmp_path, png=False) == []
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# t\n\n") and graph_mermaid() in text
    assert update_docs(tmp_path, png=False) == []  # idempotent


def test_missing_markers_fail(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("no markers\n")
    (tmp_path / "docs/how-it-works.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="one graph block"):
        check_docs(tmp_path, png=False)


def test_png_carries_the_graph_digest(tmp_path: Path) -> None:
    pytest.importorskip("pygraphviz")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs/how-it-works.md", tmp_path / "docs/how-it-works.md")
    assert check_docs(tmp_path) == ["docs/images/graph.png: missing"]
    assert update_docs(tmp_path) == [tmp_path / "docs/images/graph.png"]
    png = (tmp_path / "docs/images/graph.png").read_bytes()
    assert png.startswith(b"\x89PNG") and png_graph_digest(png)
    assert check_docs(tmp_path) == []
    assert png_graph_digest(b"\x89PNG\r\n\x1a\n" + png[8:].replace(b"tEXtspec-graph", b"tEXtother-graph")) is None


def test_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == graph_mermaid()
    assert main(["--check", "--root", str(ROOT)]) == 0
    (tmp_path / "docs").mkdir()
    for name in ("README.md", "docs/how-it-works.md"):
        (tmp_path / name).write_text(f"{GRAPH_START}\n{GRAPH_END}\n")
    assert main(["--check", "--no-png", "--root", str(tmp_path)]) == 1
    assert "--update-docs" in capsys.readouterr().err
    assert main(["--update-docs", "--no-png", "--root", str(tmp_path)]) == 0
    assert main(["--check", "--no-png", "--root", str(tmp_path)]) == 0


def test_python_dash_m_checks_the_docs() -> None:
    """``python -m spec_graph.viz --check`` (the package's ``__main__``) runs and agrees with the docs."""
    proc = subprocess.run(
        [sys.executable, "-m", "spec_graph.viz", "--check", "--no-png", "--root", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
