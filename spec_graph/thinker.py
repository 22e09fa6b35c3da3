"""Run the graph on two models: :class:`SpeculativeThinker` (its result: :class:`~spec_graph.result.SpecResult`)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from spec_graph.config import SpeculativeThinkingConfig, resolve_config
from spec_graph.errors import RunCancelledError, SpeculativeThinkingError, describe
from spec_graph.generators.base import Generator
from spec_graph.generators.grammar import Grammar
from spec_graph.generators.resolve import resolve_generator
from spec_graph.graph.builder import build_graph, recursion_limit
from spec_graph.graph.state import EventCallback, SpecContext
from spec_graph.policies import TriggerPolicy
from spec_graph.result import THINK_END, SpecResult, split_reasoning

__all__ = ["THINK_END", "SpecResult", "SpeculativeThinker", "normalize_messages", "split_reasoning"]

ROLES = ("system", "developer", "user", "assistant", "tool")


def normalize_messages(prompt: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A question or a list of ``{"role", "content"}`` messages, checked, as plain dicts.

    Raises ``ValueError``/``TypeError`` naming the message and the problem: an empty question
    or list, an unknown role, content that is not a string or not valid UTF-8, or a
    conversation that does not end with a user (or tool) message.
    """
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, (bytes, Mapping)) or not isinstance(prompt, Sequence):
        msg = f"expected a question (str) or a list of messages, got {type(prompt).__name__}"
        raise TypeError(msg)
    messages: list[Any] = [dict(m) if isinstance(m, Mapping) else m for m in prompt]
    if not messages:
        msg = "the message list is empty: give at least one user message"
        raise ValueError(msg)
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            msg = f"message {i} is a {type(m).__name__}; expected a mapping with role and content"
            raise TypeError(msg)
        if m.get("role") not in ROLES:
            msg = f"message {i} has role {m.get('role')!r}; expected one of {', '.join(ROLES)}"
            raise ValueError(msg)
        content = m.get("content")
        if not isinstance(content, str):
            msg = f"message {i} has content of type {type(content).__name__}; expected str (text only)"
            raise TypeError(msg)
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as exc:
            msg = f"message {i} is not valid UTF-8 text ({exc.reason} at position {exc.start})"
            raise ValueError(msg) from exc
    if messages[-1]["role"] not in ("user", "tool"):
        msg = (
            f"the conversation ends with a {messages[-1]['role']} message; it must end with the "
            "user's question (or a tool result) for the assistant to answer"
        )
        raise ValueError(msg)
    if not any(m["content"].strip() for m in messages if m["role"] in ("user", "tool")):
        msg = "the question is empty"
        raise ValueError(msg)
    return messages


class SpeculativeThinker:
    """Speculative thinking with a small and a target model.

    Example:
        >>> from spec_graph import SpeculativeThinker  # doctest: +SKIP
        >>> thinker = SpeculativeThinker("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct",
        ...                              config="non_reasoning")  # doctest: +SKIP
        >>> result = thinker.run("What is 12 * 7?", max_new_tokens=128)  # doctest: +SKIP
        >>> result.answer, result.output_tokens, result.finish_reason  # doctest: +SKIP

    Args:
        small: the model that writes by default (a generator, embedded name, folder or hub id).
        target: the model that intervenes.
        config: a :class:`SpeculativeThinkingConfig`, a preset name, a YAML path or a dict.
        checkpointer: an optional LangGraph checkpointer for the compiled graph.
        policy: a :class:`~spec_graph.policies.TriggerPolicy` object (e.g. your own) used instead
            of the one ``config.policy`` describes.
    """

    def __init__(
        self,
        small: Generator | str | None = None,
        target: Generator | str | None = None,
        config: SpeculativeThinkingConfig | str | Mapping[str, Any] | None = None,
        *,
        checkpointer: Any = None,
        policy: TriggerPolicy | None = None,
    ) -> None:
        """Build the graph; models load on first use."""
        from spec_graph.models import DEFAULT_SMALL_MODEL, DEFAULT_TARGET_MODEL

        self.small = resolve_generator(small or DEFAULT_SMALL_MODEL)
        self.target = resolve_generator(target or DEFAULT_TARGET_MODEL)
        self.config = resolve_config(config)
        if policy is not None and not isinstance(policy, TriggerPolicy):
            msg = f"policy must implement spec_graph.policies.TriggerPolicy, got {type(policy).__name__}"
            raise TypeError(msg)
        self.policy = policy
        self.checkpointer = checkpointer
        self.graph = build_graph(checkpointer=checkpointer)

    def run(
        self,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        stop: Sequence[str] = (),
        on_event: EventCallback | None = None,
        thread_id: str | None = None,
        cancel: threading.Event | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        grammar: Grammar | None = None,
        response_format: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> SpecResult:
        """Answer ``prompt`` (a question or a message list).

        Args:
            prompt: the question, or ``{"role", "content"}`` messages ending with a user turn.
            stop: strings that end the run; the text is cut before the first one.
            on_event: called with each text piece (``{"type": "text", "author", "reason",
                "text"}``) and each intervention as they happen.
            thread_id: checkpoint thread (only with a checkpointer).
            cancel: set it from another thread to end the run at the next token
                (:class:`~spec_graph.errors.RunCancelledError`).
            tools: OpenAI-format tool schemas both models see in their prompts (the answer is
                text; :class:`~spec_graph.chat_model.SpeculativeThinkingChatModel` parses tool calls).
            grammar: every token either model writes fits it, e.g.
                ``Grammar.json_schema(schema)`` (:mod:`spec_graph.generators.grammar`; local models).
            response_format: an OpenAI ``response_format`` a served model is asked for where it can.
            **overrides: configuration fields for this run, e.g. ``max_new_tokens=256``.

        Raises:
            ValueError, TypeError: bad input, before any model work.
            SpeculativeThinkingError: a failure part-way; ``.partial`` holds what was written.
        """
        messages = normalize_messages(prompt)
        if any(not s for s in stop):
            msg = "stop strings must not be empty"
            raise ValueError(msg)
        run_config = self._run_config(thread_id)
        if thread_id is not None and self.graph.get_state(run_config).values:
            msg = (
                f"thread {thread_id!r} already holds a run; use a new thread_id "
                "(or resume(thread_id) to finish an interrupted run)"
            )
            raise ValueError(msg)
        cfg = resolve_config(self.config, **overrides) if overrides else self.config
        return self._invoke(
            {"messages": messages}, messages, run_config, stop, on_event, cfg, cancel, tools, grammar, response_format
        )

    def resume(
        self,
        thread_id: str,
        *,
        stop: Sequence[str] = (),
        on_event: EventCallback | None = None,
        **overrides: Any,
    ) -> SpecResult:
        """Finish a run that was interrupted (needs a checkpointer).

        The models' caches are rebuilt from the checkpointed text, so under greedy decoding
        the result equals that of an uninterrupted run. Pass the same ``stop`` and overrides.
        """
        run_config = self._run_config(thread_id)
        snapshot = self.graph.get_state(run_config)
        if not snapshot.values:
            msg = f"no run is checkpointed under thread {thread_id!r}"
            raise ValueError(msg)
        if not snapshot.next:  # already finished: nothing to do
            return SpecResult.from_state(snapshot.values, wall_seconds=0.0, stop=stop)
        cfg = resolve_config(self.config, **overrides) if overrides else self.config
        messages = list(snapshot.values["messages"])
        return self._invoke(None, messages, run_config, stop, on_event, cfg, None)

    def _run_config(self, thread_id: str | None) -> dict[str, Any]:
        if thread_id is None:
            return {}
        if self.checkpointer is None:
            msg = "thread_id needs a checkpointer: SpeculativeThinker(..., checkpointer=InMemorySaver())"
            raise ValueError(msg)
        return {"configurable": {"thread_id": thread_id}}

    def _invoke(
        self,
        payload: dict[str, Any] | None,
        messages: list[dict[str, Any]],
        run_config: dict[str, Any],
        stop: Sequence[str],
        on_event: EventCallback | None,
        cfg: SpeculativeThinkingConfig,
        cancel: threading.Event | None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        grammar: Grammar | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> SpecResult:
        own = self.policy if cfg.policy == self.config.policy else None  # a per-run policy wins
        unsaved: list[str] = []  # text streamed by the step in progress

        def on_text(event: dict[str, Any]) -> None:
            if event["type"] == "text":
                unsaved.append(event["text"])
            if on_event is not None:
                on_event(event)

        ctx = SpecContext.open(  # may raise: bad input, a policy the models cannot serve
            self.small, self.target, messages, cfg, stop=stop, on_event=on_text, cancel=cancel,
            policy=own, tools=tools, grammar=grammar,
            response_format=response_format,
        )  # fmt: skip
        run_config = {**run_config, "recursion_limit": recursion_limit(cfg.max_new_tokens)}
        prompt_tokens = ctx.prompt_tokens
        state: dict[str, Any] = {}
        t0 = time.perf_counter()
        try:
            # Stream the state after every step, so that a failure loses nothing already written.
            for values in self.graph.stream(payload, config=run_config, context=ctx, stream_mode="values"):
                state = values
                unsaved.clear()
        except Exception as exc:
            partial = SpecResult.from_state(
                state, wall_seconds=time.perf_counter() - t0, prompt_tokens=prompt_tokens, finish="error"
            )
            error = RunCancelledError if isinstance(exc, RunCancelledError) else SpeculativeThinkingError
            what = "was cancelled" if error is RunCancelledError else f"failed ({describe(exc)})"
            msg = f"the run {what} after {partial.num_output_tokens} tokens; .partial holds the text so far"
            unsaved_text = "".join(unsaved) or getattr(exc, "partial_text", "")
            raise error(msg, partial=partial, unsaved_text=unsaved_text) from exc
        finally:
            ctx.close()
        return SpecResult.from_state(
            state, wall_seconds=time.perf_counter() - t0, stop=stop, prompt_tokens=prompt_tokens
        )

    def _start_worker(
        self, prompt: str | Sequence[Mapping[str, Any]], put: Callable[[str, Any], None], kwargs: dict[str, Any]
    ) -> tuple[threading.Thread, threading.Event]:
        """Start :meth:`run` in a thread that hands ``put`` each event, then the result or the error.

        Returns the thread and the run's cancel event (the caller's ``cancel=``, or a new one).
        """
        user_cb = kwargs.pop("on_event", None)
        cancel: threading.Event = kwargs.pop("cancel", None) or threading.Event()

        def on_event(event: dict[str, Any]) -> None:
            if user_cb is not None:
                user_cb(event)
            put("event", event)

        def work() -> None:
            try:
                put("result", self.run(prompt, on_event=on_event, cancel=cancel, **kwargs))
            except BaseException as exc:  # handed to the consumer
                put("error", exc)

        worker = threading.Thread(target=work, name="spec-graph-run", daemon=True)
        worker.start()
        return worker, cancel

    def stream(self, prompt: str | Sequence[Mapping[str, Any]], **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield the run's events as they happen, then ``{"type": "result", "result": SpecResult}``.

        Events are those of ``on_event`` (text pieces with their author, interventions). The
        run happens in a worker thread; an exception there is raised here. Leaving the loop
        early (``close()``, ``break``) cancels the run at its next token and waits for it to end,
        so that the models are free when the generator is closed.
        """
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        worker, cancel = self._start_worker(prompt, lambda kind, item: events.put((kind, item)), kwargs)
        try:
            while True:
                kind, item = events.get()
                yield _handed(kind, item)
                if kind == "result":
                    break
        finally:
            cancel.set()
            if worker is not threading.current_thread():
                worker.join()  # one decode step at most

    async def astream(self, prompt: str | Sequence[Mapping[str, Any]], **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """:meth:`stream` for asyncio: the run in a worker thread, its events awaited without blocking the loop.

        Cancelling the consuming task (``asyncio.wait_for``, ``task.cancel()``) or closing the
        iterator early (``aclose()``, ``break``) cancels the run at its next token; the iterator
        ends only once the worker has stopped, so the models are free for the next call.
        """
        loop = asyncio.get_running_loop()
        items: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        arrived, ended = asyncio.Event(), asyncio.Event()
        waking = threading.Lock()
        wake_pending = [False]

        def wake() -> None:  # on the loop
            with waking:
                wake_pending[0] = False
            arrived.set()

        def put(kind: str, item: Any) -> None:  # in the worker
            items.put((kind, item))
            with waking:  # one wake-up at a time: a wake-up per token would starve the loop
                if wake_pending[0] and kind == "event":
                    return
                wake_pending[0] = True
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(wake)
                if kind != "event":
                    loop.call_soon_threadsafe(ended.set)

        worker, cancel = self._start_worker(prompt, put, kwargs)
        try:
            while True:
                try:
                    kind, item = items.get_nowait()
                except queue.Empty:
                    arrived.clear()
                    if items.empty():
                        await arrived.wait()
                    continue
                yield _handed(kind, item)
                if kind == "result":
                    break
        finally:
            cancel.set()
            await ended.wait()  # the worker stops at its next token
            worker.join()  # it has handed over its last item: it is returning

    async def arun(self, prompt: str | Sequence[Mapping[str, Any]], **kwargs: Any) -> SpecResult:
        """:meth:`run` in a worker thread; cancelling the task cancels the run at its next token."""
        cancel = kwargs.pop("cancel", None) or threading.Event()
        task = asyncio.ensure_future(asyncio.to_thread(self.run, prompt, cancel=cancel, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            cancel.set()
            with contextlib.suppress(BaseException):
                await task  # the worker stops at the next token and releases the models
            raise


def _handed(kind: str, item: Any) -> dict[str, Any]:
    """A worker's item as the stream's next event (``{"type": "result", ...}`` last); its error raised."""
    if kind == "error":
        raise item
    return item if kind == "event" else {"type": "result", "result": item}
