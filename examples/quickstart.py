"""Quickstart: the chat model in a chain, streaming with authors, and the picture of a run.

Plain script of examples/quickstart.ipynb (the notebook is built from this file by
examples/build_notebooks.py). Runs the embedded pair on a CPU in about a minute:

    python examples/quickstart.py
"""

# %% [markdown]
# # Quickstart
#
# Speculative thinking lets a small model write and hands the pen to a larger *target* model
# at the hard steps. Here the small model is SmolLM2-135M-Instruct and the target
# Qwen2.5-Coder-0.5B-Instruct, both embedded in spec-graph (fetched from PyPI and converted
# into `~/.cache/spec-graph` on the first run, a few minutes; seconds afterwards).
#
# Both are instruct models, not reasoning models, so we use the `non_reasoning` preset: the
# target writes a short opening, then a stretch at every step boundary (`"\n\n"`). The token
# budgets are tiny so that this runs in about a minute on a laptop CPU, which also means the
# answers are cut off before they finish; raise `max_tokens` for whole answers.

# %%
import sys

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from spec_graph import SpeculativeThinker, SpeculativeThinkingChatModel, SpeculativeThinkingConfig
from spec_graph.viz import render_trace, save_trace

IN_NOTEBOOK = "ipykernel" in sys.modules
config = SpeculativeThinkingConfig.preset("non_reasoning", opening_tokens=8, probe_tokens=8)
llm = SpeculativeThinkingChatModel(
    small_model="smollm2-135m-instruct",
    target_model="qwen2.5-coder-0.5b-instruct",
    config=config,
    temperature=0,
    max_tokens=24,
)

# %% [markdown]
# ## The chat model in a chain
#
# `SpeculativeThinkingChatModel` is a LangChain chat model: it goes into any chain.

# %%
prompt = ChatPromptTemplate.from_messages([("system", "You are a careful math tutor."), ("user", "{question}")])
chain = prompt | llm | StrOutputParser()
answer = chain.invoke({"question": "Ann has 4 apples and buys 7 more. How many apples does she have?"})
print(answer)

# %% [markdown]
# ## Streaming, with the author of each piece
#
# Each streamed chunk carries its author in `response_metadata["authors"]`: `["small"]`,
# `["target"]` or `["injected"]`. The last chunk carries the statistics.

# %%
last = None
for chunk in llm.stream("A train travels 60 km in 1.5 hours. What is its average speed?"):
    for author in chunk.response_metadata.get("authors", []):
        if author != last:  # a new line whenever the pen changes hands
            print(f"\n[{author}] ", end="")
            last = author
        print(chunk.content, end="", flush=True)
    if chunk.chunk_position == "last":
        stats = chunk.response_metadata["speculative_thinking"]
print()
print("tokens kept:", stats["output_tokens"], f"- target share {stats['target_share']:.0%}")
print("who wrote what:", [(s["author"], s["reason"], s["chars"]) for s in stats["spans"]])

# %% [markdown]
# ## The picture of a run
#
# `SpeculativeThinker` gives the whole result: spans, interventions, tokens and time per
# model. `spec_graph.viz.render_trace` draws it: the target's stretches highlighted, a numbered
# marker where it stepped in (hover it for details); `save_trace` writes HTML or PNG.

# %%
thinker = SpeculativeThinker(llm.small_model, llm.target_model, config=config)
result = thinker.run("What is 15 + 27? Explain briefly.", max_new_tokens=24, temperature=0)
for item in result.interventions:
    print(item["kind"], item["category"], "at char", item["char_position"], repr(item["target_text"]))
if IN_NOTEBOOK:
    from IPython.display import HTML, display

    display(HTML(render_trace(result, standalone=False)))
else:
    print("wrote", save_trace(result, "quickstart-trace.html"))
