"""A small evaluation run: `spec-graph eval` on 2 MultiArith problems, its table and plot.

Plain script of examples/evaluation.ipynb (built from this file by
examples/build_notebooks.py). About a minute on 2 CPU cores:

    python examples/evaluation.py
"""

# %% [markdown]
# # Evaluation
#
# `spec-graph eval` answers a math set with several *systems* built from one pair of models
# (the small model alone, the target alone, speculative thinking, token-level speculative
# decoding), grades every answer and writes a table and plots. See `docs/evaluation.md` for
# every option.
#
# This run is deliberately tiny (2 MultiArith problems, 24 new tokens, three systems) so that it
# finishes in about a minute on a CPU; with such a budget the answers are cut before they
# finish, so the accuracies say nothing. Raise `--limit` and `--max-new-tokens` (e.g. 10 and
# 256) for a meaningful comparison.
#
# The embedded pair are instruct models, so speculative thinking runs in the `non_reasoning`
# mode (the target writes an opening, then a stretch at every step boundary). The preset's
# 100-token opening would fill this whole budget, so a YAML file shortens the target's stretches
# to 8 tokens: any `spec:<file>.yaml` takes our configuration fields (or the reference code's
# keys).

# %%
import json
import subprocess
import sys
from pathlib import Path

OUT = Path("runs") / "eval-example"
SYSTEMS = "small,target,spec:runs/short_stretches.yaml"
OUT.parent.mkdir(exist_ok=True)
Path("runs/short_stretches.yaml").write_text("not_reasoning: true\nopening: true\nopening_tokens: 8\nprobe_tokens: 8\n")
command = [
    sys.executable, "-m", "spec_graph", "eval",  # the `spec-graph` command, from this Python
    "--dataset", "multiarith",
    "--limit", "2",
    "--max-new-tokens", "24",
    "--systems", SYSTEMS,
    "--out", str(OUT),
    "--no-progress",
]  # fmt: skip
print(" ".join(["spec-graph", *command[3:]]))
run = subprocess.run(command, capture_output=True, text=True, check=False)
print(run.stdout.splitlines()[0] if run.stdout else "")
if run.returncode != 0:
    raise RuntimeError(f"spec-graph eval failed ({run.returncode}):\n{run.stderr[-3000:]}")

# %% [markdown]
# Running the same command again resumes: answers already in `records.jsonl` are skipped (and
# more systems or problems only add the missing answers).
#
# ## The table

# %%
table = (OUT / "results.md").read_text()
if "ipykernel" in sys.modules:
    from IPython.display import Markdown, display

    display(Markdown(table))
else:
    print(table)

# %% [markdown]
# ## The plots
#
# Accuracy against speed, one point per system (up and right is better; the Pareto front is
# dashed), and the average output length split into the small model's and the target's tokens.

# %%
plots = [OUT / "accuracy_vs_speed.png", OUT / "output_length.png"]
if "ipykernel" in sys.modules:
    from IPython.display import Image, display

    for plot in plots:
        display(Image(filename=str(plot)))
else:
    print("plots:", *[str(p.resolve()) for p in plots])

# %% [markdown]
# ## Per-answer records
#
# `records.jsonl` has one line per answer: what was graded, the tokens each model wrote,
# speed, and where the target stepped in.

# %%
for line in (OUT / "records.jsonl").read_text().splitlines():
    record = json.loads(line)
    if record["system"] not in SYSTEMS.split(","):  # the folder may hold more from earlier runs
        continue
    print(
        f"{record['system']:<32} problem {record['id']}: gold {record['gold']!r:>6}, "
        f"graded {record['extracted']!r:>8}, correct {record['correct']}, "
        f"{record['output_tokens']} tokens, target share {record['target_share']:.0%}, "
        f"{record['interventions']} interventions"
    )
