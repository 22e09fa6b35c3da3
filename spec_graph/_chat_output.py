"""The chat model's last chunk: usage, finish reason and the speculation statistics of a run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from langchain_core.messages import AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk

from spec_graph._call_plan import PROVIDER
from spec_graph._streaming import Assembler
from spec_graph.thinker import THINK_END, SpecResult

__all__ = ["STATS_KEY", "final_chunk", "reasoning_tokens", "speculation_stats"]

STATS_KEY = "speculative_thinking"
"""The ``response_metadata`` key holding the speculation statistics (final chunk only)."""
_FINISH = {"eos": "stop", "stop": "stop", "length": "length", "time": "time"}

CountTokens = Callable[[str, str], int]
"""``count_tokens(author, text)``: tokens of ``text`` in the tokenizer of the model ``author``."""


def final_chunk(
    result: SpecResult, assembler: Assembler, *, model_name: str, models: tuple[str, str], count_tokens: CountTokens
) -> ChatGenerationChunk:
    """Usage and response metadata, once, with ``chunk_position="last"``.

    Args:
        result: the finished run.
        assembler: the stream parser that turned the run into chunks (it knows whether there was reasoning).
        model_name: the ``model_name`` reported.
        models: the display names of the small and the target model.
        count_tokens: counts the tokens of a piece of a span, for a span cut at ``</think>``.
    """
    input_tokens = int(result.prompt_tokens.get("target", result.prompt_tokens.get("small", 0)))
    output_tokens = int(result.num_output_tokens)
    totals = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    # A cast: mypy (python_version 3.10) reads langchain's ``typing.NotRequired`` keys as required.
    usage = cast("UsageMetadata", {**totals, "total_tokens": input_tokens + output_tokens})
    if assembler.think.saw_reasoning:
        usage["output_token_details"] = {"reasoning": reasoning_tokens(result, assembler.think.mode, count_tokens)}
    message = AIMessageChunk(
        content="",
        usage_metadata=usage,
        response_metadata={
            "model_name": model_name,
            "finish_reason": _FINISH.get(result.finish_reason, result.finish_reason),
            "model_provider": PROVIDER,
            STATS_KEY: speculation_stats(result, *models),
        },
        chunk_position="last",
    )
    return ChatGenerationChunk(message=message)


def reasoning_tokens(result: SpecResult, mode: str, count_tokens: CountTokens) -> int:
    """Kept tokens written before ``</think>`` (all of them when the run ended while thinking)."""
    end = result.text.find(THINK_END)
    if end < 0 or mode in ("reasoning", "reasoning_lead"):
        return int(result.num_output_tokens)
    tokens, pos = 0, 0
    for span in result.spans:
        start, pos = pos, pos + len(span["text"])
        if span["author"] == "injected" or start >= end:
            continue
        if pos <= end:
            tokens += len(span["token_ids"])
        else:
            tokens += count_tokens(span["author"], span["text"][: end - start])
    return min(tokens, int(result.num_output_tokens))


def speculation_stats(result: SpecResult, small_name: str, target_name: str) -> dict[str, Any]:
    """The ``response_metadata["speculative_thinking"]`` of a run: tokens, interventions, time, spans."""
    kinds = Counter(i["kind"] for i in result.interventions)
    categories = Counter(i["category"] for i in result.interventions if i["kind"] == "intervention")
    return {
        "small_model": small_name,
        "target_model": target_name,
        "finish_reason": result.finish_reason,
        "output_tokens": dict(result.output_tokens),
        "generated_tokens": dict(result.generated_tokens),
        "prefill_tokens": dict(result.prefill_tokens),
        "prompt_tokens": dict(result.prompt_tokens),
        "interventions": dict(categories),
        "openings": kinds["opening"],
        "verifications": kinds["verification"],
        "takeovers": kinds["takeover"],
        "fallbacks": [dict(f) for f in result.fallbacks],
        "target_share": result.target_share,
        "model_seconds": dict(result.model_seconds),
        "wall_seconds": result.wall_seconds,
        "tokens_per_second": result.tokens_per_second,
        "spans": [{"author": s["author"], "reason": s["reason"], "chars": len(s["text"])} for s in result.spans],
    }
