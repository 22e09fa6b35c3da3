"""Speculative thinking as the reasoning step of a LangGraph workflow.

Plain script of examples/agent_workflow.ipynb (built from this file by
examples/build_notebooks.py). About a minute on 2 CPU cores:

    python examples/agent_workflow.py
"""

# %% [markdown]
# # Speculative thinking inside an agent workflow
#
# Here the chat model is the **reasoning step** of a workflow: a node that thinks, followed by
# ordinary nodes that act on its answer. (It can also call tools itself: `bind_tools` and
# `create_agent` work, see examples/agent_tools.py.)
#
# The workflow below: `think` answers with speculative thinking, `extract` pulls the final
# number out of the answer, and when there is none `ask_again` asks once more for just the
# number. `subgraph_node` runs the speculative-thinking graph as a real subgraph of the
# workflow, so its own steps appear in the stream; `chat_model_node` would run it as one
# chat-model call instead.
#
# The token budget is tiny (40) so that this runs in about a minute on a CPU: the answer is
# usually cut before its end, so the extracted number may well be wrong. Raise `max_tokens`
# for whole answers.

# %%
import re

from langgraph.graph import END, START, MessagesState, StateGraph

from spec_graph import SpeculativeThinkingChatModel, SpeculativeThinkingConfig, subgraph_node

llm = SpeculativeThinkingChatModel(
    small_model="smollm2-135m-instruct",
    target_model="qwen2.5-coder-0.5b-instruct",
    config=SpeculativeThinkingConfig.preset("non_reasoning", opening_tokens=8, probe_tokens=8),
    temperature=0,
    max_tokens=40,
)


class State(MessagesState):
    answer: str | None
    attempts: int


def extract(state: State) -> dict:
    """The last number of the last answer, if any."""
    numbers = re.findall(r"-?\d+(?:\.\d+)?", state["messages"][-1].content)
    return {"answer": numbers[-1] if numbers else None, "attempts": state.get("attempts", 0) + 1}


def route(state: State) -> str:
    return "done" if state["answer"] is not None or state["attempts"] >= 2 else "ask_again"


def ask_again(state: State) -> dict:
    return {"messages": [("user", "Give only the final number.")]}


workflow = StateGraph(State)
workflow.add_node("think", subgraph_node(llm))  # the reasoning step: speculative thinking
workflow.add_node("extract", extract)
workflow.add_node("ask_again", ask_again)
workflow.add_edge(START, "think")
workflow.add_edge("think", "extract")
workflow.add_conditional_edges("extract", route, {"done": END, "ask_again": "ask_again"})
workflow.add_edge("ask_again", "think")
app = workflow.compile()
print(app.get_graph().draw_mermaid())

# %% [markdown]
# ## Running it, streaming tokens and interventions
#
# `stream_mode="messages"` carries the answer's tokens (each chunk with its author),
# `"custom"` the speculative-thinking events (here: each time the target steps in), and
# `"updates"` what every workflow node returned, and `"values"` the whole state after each
# step (we keep the last one).

# %%
question = "Tom has 3 boxes with 5 pencils each. How many pencils does he have?"
final, last = None, None
for mode, data in app.stream(
    {"messages": [("user", question)], "attempts": 0},
    stream_mode=["messages", "custom", "updates", "values"],
):
    if mode == "messages":
        chunk, meta = data
        author = (chunk.response_metadata.get("authors") or [last])[0]
        if chunk.content:
            if author != last:  # a new line whenever the pen changes hands
                print(f"\n[{author}] ", end="")
                last = author
            print(chunk.content, end="", flush=True)
    elif mode == "custom" and data.get("type") == "intervention":
        print(f"\n>> target steps in: {data['kind']} ({data['category']}) at char {data['char_position']}")
    elif mode == "updates":
        for node, update in data.items():
            if node == "extract":
                print(f"\n>> extract: answer={update['answer']!r} after {update['attempts']} attempt(s)")
    elif mode == "values":
        final = data

# %% [markdown]
# ## The final state

# %%
for message in final["messages"]:
    print(f"{message.type:>5}: {message.content!r}")
print("answer:", final["answer"])
usage = final["messages"][-1].usage_metadata
stats = final["messages"][-1].response_metadata["speculative_thinking"]
print("tokens:", usage["output_tokens"], "by model:", stats["output_tokens"])
print(f"target share {stats['target_share']:.0%}, interventions {stats['interventions']}")
