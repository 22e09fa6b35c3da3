"""Speculative Thinking inside a larger LangGraph graph with a ``messages`` state.

Two ways in, both nodes that read the state's messages and append one ``AIMessage``:

- :func:`chat_model_node` calls a :class:`~spec_graph.chat_model.SpeculativeThinkingChatModel`.
  The speculative-thinking graph runs inside the model call (a leaf run, like any chat model);
  its tokens reach the parent's ``stream_mode="messages"`` through the usual callbacks.
- :func:`subgraph_node` runs the compiled speculative-thinking graph itself as a subgraph of the
  parent: its nodes (``small_generate``, ``classify_step``, ...) show up in traces, in
  ``stream(..., subgraphs=True)`` and in the parent's checkpoints. It sets the inner recursion
  limit from the token budget (a subgraph otherwise inherits the parent's limit and fails long
  runs), and reports the text as a chat-model run so ``stream_mode="messages"`` sees the tokens.

Both forward the run's intervention events to the parent's ``stream_mode="custom"``.

Example:
    >>> from langgraph.graph import START, MessagesState, StateGraph  # doctest: +SKIP
    >>> llm = SpeculativeThinkingChatModel(temperature=0, max_tokens=256)  # doctest: +SKIP
    >>> g = StateGraph(MessagesState)  # doctest: +SKIP
    >>> g.add_node("think", subgraph_node(llm))  # doctest: +SKIP
    >>> g.add_edge(START, "think")  # doctest: +SKIP
    >>> for msg, meta in g.compile().stream({"messages": [("user", "2+2?")]}, stream_mode="messages"):
    ...     print(msg.content, end="")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, LLMResult
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.runnables.config import get_callback_manager_for_config
from langgraph.config import get_stream_writer

from spec_graph._streaming import Assembler
from spec_graph.chat_model import SpeculativeThinkingChatModel, speculation_events
from spec_graph.graph.builder import build_graph, recursion_limit
from spec_graph.graph.state import SpecContext
from spec_graph.policies import TriggerPolicy
from spec_graph.result import SpecResult

__all__ = ["chat_model_node", "subgraph_node"]


def _messages_of(state: Any, key: str) -> list[BaseMessage]:
    value = state.get(key) if isinstance(state, dict) else getattr(state, key, None)
    if not value:
        msg = f"the state has no messages under {key!r}"
        raise ValueError(msg)
    return convert_to_messages(value)


def _writer() -> Any:
    try:
        return get_stream_writer()
    except RuntimeError:  # called outside a graph: nowhere to send events
        return lambda _event: None


def chat_model_node(
    model: SpeculativeThinkingChatModel,
    *,
    messages_key: str = "messages",
    events: Collection[str] = ("intervention",),
    name: str = "speculative_thinking",
) -> RunnableLambda[Any, dict[str, Any]]:
    """A node that answers the state's messages with ``model`` and appends its ``AIMessage``.

    Args:
        model: the chat model.
        messages_key: the state key holding the messages (with an ``add_messages`` reducer).
        events: event types forwarded to ``stream_mode="custom"`` (``"intervention"``,
            ``"text"``); empty for none.
        name: the node runnable's name.

    Returns:
        A runnable (sync and async) to pass to ``StateGraph.add_node``.
    """

    def node(state: Any, config: RunnableConfig) -> dict[str, Any]:
        messages = _messages_of(state, messages_key)
        with speculation_events(_writer(), events):
            message = model.invoke(messages, config)
        return {messages_key: [message]}

    async def anode(state: Any, config: RunnableConfig) -> dict[str, Any]:
        messages = _messages_of(state, messages_key)
        with speculation_events(_writer(), events):
            message = await model.ainvoke(messages, config)
        return {messages_key: [message]}

    return RunnableLambda(node, afunc=anode, name=name)


CANCEL_KEY = "spec_graph_cancel"
"""``config["configurable"][CANCEL_KEY]``: a :class:`threading.Event` that, once set, ends the
subgraph node's run at the next token (:class:`~spec_graph.errors.RunCancelledError`)."""


def subgraph_node(
    model: SpeculativeThinkingChatModel,
    *,
    graph: Any = None,
    messages_key: str = "messages",
    events: Collection[str] = ("intervention",),
    stop: Sequence[str] | None = None,
    name: str = "speculative_thinking",
) -> RunnableLambda[Any, dict[str, Any]]:
    """A node that runs the compiled speculative-thinking graph as a subgraph of the parent.

    The models, configuration, stop strings and output conventions (content, reasoning,
    usage and metadata) are those of ``model``; the graph runs in the node with the parent's
    config (callbacks, checkpointer, ``subgraphs=True`` streaming) and a recursion limit of
    :func:`~spec_graph.graph.recursion_limit` for the token budget. A policy object set on the
    model is used; an event under ``config["configurable"][CANCEL_KEY]`` cancels the run.

    Args:
        model: supplies the two models and the settings.
        graph: a compiled graph from :func:`~spec_graph.graph.build_graph` (default: a new one).
        messages_key: the state key holding the messages (with an ``add_messages`` reducer).
        events: event types forwarded to ``stream_mode="custom"`` (``"intervention"``,
            ``"text"``); empty for none.
        stop: stop strings added to the model's.
        name: the chat-model run's name in callbacks and traces.

    Returns:
        A runnable to pass to ``StateGraph.add_node``.
    """
    inner = graph if graph is not None else build_graph(name=name)
    extra_stop = list(stop or [])

    def node(state: Any, config: RunnableConfig) -> dict[str, Any]:
        messages = _messages_of(state, messages_key)
        plan = model._plan(messages, extra_stop, {})
        small_gen, target_gen = model._generators()
        writer = _writer()
        # The ls_* keys (provider, model, temperature, ...) in the run's metadata, as a chat model
        # call puts them: LangGraph's messages stream and LangSmith read them there.
        ls_params = model._get_ls_params(stop=list(plan.stop))
        manager = get_callback_manager_for_config({**config, "metadata": {**config.get("metadata", {}), **ls_params}})
        (run_manager,) = manager.on_chat_model_start(
            model._serialized,
            [messages],
            invocation_params={**model._identifying_params, "stop": list(plan.stop)},
            name=name,
            batch_size=1,
        )
        message_id = f"lc_run--{run_manager.run_id}"
        assembler = Assembler(plan.stop, reasoning=model.reasoning, in_reasoning=plan.in_reasoning)
        chunks: list[ChatGenerationChunk] = []

        def emit(new: list[ChatGenerationChunk]) -> None:
            for chunk in new:
                chunk.message.id = message_id
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                chunks.append(chunk)

        def on_event(event: dict[str, Any]) -> None:
            if event.get("type") in events:
                writer(event)
            if event.get("type") == "text":
                emit(assembler.feed(str(event["author"]), str(event["text"])))

        own = model.policy if isinstance(model.policy, TriggerPolicy) else None  # the model's policy object
        cancel = (config.get("configurable") or {}).get(CANCEL_KEY)
        ctx = SpecContext.open(
            small_gen, target_gen, plan.messages, plan.config, stop=plan.stop, on_event=on_event, cancel=cancel,
            policy=own,
        )  # fmt: skip
        inner_config: dict[str, Any] = {**config, "recursion_limit": recursion_limit(plan.config.max_new_tokens)}
        inner_config.pop("run_id", None)
        t0 = time.perf_counter()
        try:
            final = inner.invoke({"messages": plan.messages}, config=inner_config, context=ctx)
            result = SpecResult.from_state(
                final,
                wall_seconds=time.perf_counter() - t0,
                stop=plan.stop,
                prompt_tokens=ctx.prompt_tokens,
            )
            emit([*assembler.finish(result), model._final_chunk(result, assembler)])
            message = generate_from_stream(iter(chunks)).generations[0].message
        except BaseException as exc:
            run_manager.on_llm_error(exc)
            raise
        finally:
            ctx.close()
        assert isinstance(message, AIMessage)
        message.id = message_id
        run_manager.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]))
        return {messages_key: [message]}

    return RunnableLambda(node, name=name)
