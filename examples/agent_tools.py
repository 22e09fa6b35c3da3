"""An agent with tools on speculative thinking: a calculator and a unit converter.

Plain script of examples/agent_tools.ipynb (built from this file by
examples/build_notebooks.py). A few minutes on 2 CPU cores (the Qwen2.5-Coder pair, 0.5B small
and 1.5B target):

    python examples/agent_tools.py
"""

# %% [markdown]
# # An agent that calls tools, with two models writing
#
# `SpeculativeThinkingChatModel.bind_tools` gives the tools to both models (through the Qwen
# chat template's `tools` argument) and parses their `<tool_call>` blocks into
# `AIMessage.tool_calls`, so `langchain.agents.create_agent` works as with any chat model. The
# small Qwen2.5-Coder-0.5B writes; where it is unsure of a token (`uncertainty:0.5`) the
# 1.5B writes the next stretch, tool-call JSON included.
#
# The agent gets a word problem that needs both tools: convert a length, then compute.

# %%
import ast
import operator

from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from spec_graph import SpeculativeThinkingChatModel, SpeculativeThinkingConfig
from spec_graph.chat_model import speculation_events

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_LENGTH_IN_METERS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "km": 1000.0, "in": 0.0254, "ft": 0.3048, "mi": 1609.344}


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / and parentheses, e.g. "(3 + 4) * 2"."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise ValueError(f"unsupported expression: {expression!r}")

    result = value(ast.parse(expression, mode="eval").body)
    return f"{result:g}"


def convert_length(value: float, from_unit: str, to_unit: str) -> str:
    """Convert a length between units: m, cm, mm, km, in, ft, mi."""
    return f"{value * _LENGTH_IN_METERS[from_unit] / _LENGTH_IN_METERS[to_unit]:g} {to_unit}"


llm = SpeculativeThinkingChatModel(
    small_model="qwen2.5-coder-0.5b-instruct",
    target_model="qwen2.5-coder-1.5b-instruct",
    config=SpeculativeThinkingConfig.preset("non_reasoning", opening=False),  # the small model starts
    policy="uncertainty:0.5",
    temperature=0,
    max_tokens=128,
)
agent = create_agent(llm, tools=[calculator, convert_length])

# %% [markdown]
# ## Running the agent, keeping who wrote what
#
# `speculation_events` hands every text piece the models write to a callback, with its
# author; a callback handler starts a new list at each model call, so we can print each model
# turn with the target's stretches in `[brackets]`, tool-call JSON included.

# %%
turns: list[list[dict]] = []


class NewTurn(BaseCallbackHandler):
    def on_chat_model_start(self, serialized, messages, **kwargs):
        turns.append([])


question = (
    "A rope is 12 ft long. Convert 12 ft to meters with the convert_length tool, then use the "
    "calculator to multiply that length by 3. How many meters are 3 such ropes?"
)
with speculation_events(lambda event: turns[-1].append(event), types=("text",)):
    result = agent.invoke({"messages": [HumanMessage(question)]}, config={"callbacks": [NewTurn()]})

# %%
for i, pieces in enumerate(turns, 1):
    text = "".join(
        p["text"] if p["author"] == "small" else f"[{p['text']}]" for p in pieces if p["author"] != "injected"
    )
    print(f"--- model turn {i} (target in [brackets]) ---\n{text}\n")

# %%
for message in result["messages"]:
    if isinstance(message, AIMessage):
        stats = message.response_metadata["speculative_thinking"]
        calls = [(c["name"], c["args"]) for c in message.tool_calls]
        print(f"AI: {message.content!r} calls={calls} tokens={stats['output_tokens']}")
    elif isinstance(message, ToolMessage):
        print(f"tool {message.name}: {message.content}")
    else:
        print(f"{message.type}: {message.content}")
