"""Draw the trace of one real run: docs/images/trace-example.html and .png.

Runs the embedded pair (SmolLM2-135M-Instruct writes, Qwen2.5-Coder-0.5B-Instruct steps in)
greedily with the ``non_reasoning`` preset: the target writes a short opening, then a stretch at
every step boundary. About a minute on 2 CPU cores.

    python examples/trace_example.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from spec_graph import SpeculativeThinker
from spec_graph.viz import save_trace

QUESTION = "A baker made 18 muffins and sold 11 of them. Then she made 6 more. How many muffins does she have now?"


def main(out: Path) -> None:
    thinker = SpeculativeThinker("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", config="non_reasoning")
    result = thinker.run(QUESTION, max_new_tokens=96, temperature=0, opening_tokens=16, probe_tokens=12)
    print(result.text)
    print(result.output_tokens, f"target share {result.target_share:.0%}", result.finish_reason)
    out.mkdir(parents=True, exist_ok=True)
    title = f"Q: {QUESTION}"
    for suffix in (".html", ".png"):
        print("wrote", save_trace(result, out / f"trace-example{suffix}", title=title))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "images")
