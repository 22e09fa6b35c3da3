"""Bad input, faults inside a run, cancellation and resume, with scripted generators."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from types import GeneratorType
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from spec_graph import ScriptedGenerator, SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.errors import RunCancelledError, SpeculativeThinkingError
from spec_graph.generators.base import GenerateRequest, Segment, Span
from spec_graph.generators.hf import HFGenerator
from spec_graph.generators.scripted import EOS, ScriptedSession

SMALL_TEXT = ["Step one.\n\n", " Wait, that is wrong.", " Step two.\n\n", " So done." + EOS]
TARGET_TEXT = [" Let me redo it:"]


def make(cfg: SpeculativeThinkingConfig | None = None, **kw: Any) -> SpeculativeThinker:
    small = ScriptedGenerator.from_responses(SMALL_TEXT, name="small")
    target = ScriptedGenerator.from_responses(TARGET_TEXT, name="target")
    return SpeculativeThinker(small, target, cfg or SpeculativeThinkingConfig(probe_tokens=4), **kw)


def calls(gen: object) -> list[dict[str, Any]]:
    """The calls a scripted generator was asked."""
    assert isinstance(gen, ScriptedGenerator)
    return gen.calls


# -- 1. bad input: one test per case of docs/reliability.md --------------------------------------
@pytest.mark.parametrize(
    ("prompt", "error", "match"),
    [
        ([], ValueError, "message list is empty"),
        ("", ValueError, "question is empty"),
        ("   ", ValueError, "question is empty"),
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
            ValueError,
            "ends with a assistant",
        ),
        ([{"role": "system", "content": "be brief"}], ValueError, "ends with a system"),
        ([{"role": "wizard", "content": "hi"}], ValueError, "role 'wizard'"),
        ([{"content": "hi"}], ValueError, "role None"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}], TypeError, "content of type list"),
        ([{"role": "user", "content": 42}], TypeError, "content of type int"),
        ([{"role": "user", "content": None}], TypeError, "content of type NoneType"),
        ([{"role": "user", "content": "bad \udcff byte"}], ValueError, "not valid UTF-8"),
        (b"bytes", TypeError, "got bytes"),
        ({"role": "user", "content": "hi"}, TypeError, "got dict"),
        (["just a string"], TypeError, "message 0 is a str"),
    ],
)
def test_bad_messages_fail_before_any_model_work(prompt: Any, error: type[Exception], match: str) -> None:
    thinker = make()
    with pytest.raises(error, match=match):
        thinker.run(prompt)
    assert calls(thinker.small) == calls(thinker.target) == []  # nothing was generated


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": -5}, "max_new_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": 1e9}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"probe_tokens": 0}, "probe_tokens"),
        ({"time_budget": -1.0}, "time_budget"),
        ({"reflection_keywords": ()}, "reflection_keywords"),
        ({"reflection_keywords": ("",)}, "reflection_keywords"),
        ({"reflection_keywords": ("yes",)}, "affirmation_keywords"),
        ({"trigger_strings": ("",)}, "trigger_strings"),
        ({"trigger_strings": ()}, "trigger_strings"),
        ({"recap_tokens": 300}, "recap_tokens"),
        ({"no_such_field": 1}, "no_such_field"),
    ],
)
def test_bad_parameters_fail_before_any_model_work(overrides: dict[str, Any], match: str) -> None:
    thinker = make()
    with pytest.raises(ValidationError, match=match):
        thinker.run("q", **overrides)
    assert calls(thinker.small) == []


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="reasoning"):
        SpeculativeThinker(ScriptedGenerator.from_responses(["a"]), ScriptedGenerator.from_responses(["b"]), "fast")


def test_empty_stop_string_is_rejected() -> None:
    with pytest.raises(ValueError, match="stop strings must not be empty"):
        make().run("q", stop=[""])


def test_missing_model_path_fails_at_construction(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HFGenerator(str(tmp_path / "no-such-model"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HFGenerator("./weights.gguf")


def test_loaded_model_without_tokenizer_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="needs its tokenizer"):
        HFGenerator(object())


def test_not_a_generator_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"expected a Generator|cannot use a int as a model"):
        SpeculativeThinker(42, ScriptedGenerator.from_responses(["b"]))  # type: ignore[arg-type]


# -- 2. faults inside a run --------------------------------------------------------------------
class Failing(ScriptedGenerator):
    """A scripted model whose ``fail_at``-th call raises (a model error, OOM, a dead server)."""

    def __init__(self, responses: list[str], fail_at: int, exc: Exception) -> None:
        items = list(responses)
        super().__init__(lambda _t, i: items[min(i, len(items) - 1)], name="failing")
        self.fail_at, self.exc = fail_at, exc

    def start(self, messages: Any) -> ScriptedSession:
        outer = self

        class Session(ScriptedSession):
            def generate(self, trace: Sequence[Span], request: GenerateRequest) -> Segment:
                if len(outer.calls) == outer.fail_at:
                    if request.on_text is not None:
                        request.on_text(" half-writ")  # streamed before the failure
                    outer.calls.append({"trace": "", "max_tokens": 0, "stop_at_trigger": True})
                    raise outer.exc
                return super().generate(trace, request)

        return Session(self, 1)


@pytest.mark.parametrize("exc", [RuntimeError("CUDA out of memory"), ConnectionError("server gone")])
def test_a_failing_model_ends_the_run_with_the_partial_trace(exc: Exception) -> None:
    small = Failing(SMALL_TEXT, fail_at=2, exc=exc)  # fails on its third call
    target = ScriptedGenerator.from_responses(TARGET_TEXT)
    thinker = SpeculativeThinker(small, target, SpeculativeThinkingConfig(probe_tokens=4))
    with pytest.raises(SpeculativeThinkingError, match=type(exc).__name__) as info:
        thinker.run("q")
    err = info.value
    assert err.__cause__ is exc
    assert err.partial is not None
    assert err.partial.text == "Step one.\n\n Let me redo it:"  # everything before the failing step
    assert err.partial.finish_reason == "error"
    assert err.partial.output_tokens == {"small": 3, "target": 4}
    assert err.partial.interventions[0]["target_text"] == " Let me redo it:"
    assert err.unsaved_text == " half-writ"


def test_a_failing_model_in_streaming_raises_with_the_partial_trace() -> None:
    small = Failing(SMALL_TEXT, fail_at=2, exc=RuntimeError("boom"))
    thinker = SpeculativeThinker(
        small, ScriptedGenerator.from_responses(TARGET_TEXT), SpeculativeThinkingConfig(probe_tokens=4)
    )
    seen: list[str] = []
    with pytest.raises(SpeculativeThinkingError) as info:
        for event in thinker.stream("q"):
            if event["type"] == "text":
                seen.append(event["text"])
    assert info.value.partial is not None
    assert "".join(seen).startswith(info.value.partial.text)


async def test_a_failing_model_in_async_raises_with_the_partial_trace() -> None:
    small = Failing(SMALL_TEXT, fail_at=0, exc=RuntimeError("boom"))
    thinker = SpeculativeThinker(small, ScriptedGenerator.from_responses(TARGET_TEXT))
    with pytest.raises(SpeculativeThinkingError) as info:
        await thinker.arun("q")
    assert info.value.partial is not None and info.value.partial.text == ""


# -- cancellation ------------------------------------------------------------------------------
class Slow(ScriptedGenerator):
    """Writes one token every ``delay`` seconds, holding a lock like a shared local model."""

    def __init__(self, delay: float) -> None:
        super().__init__(lambda _t, _i: " tick" * 500 + EOS, name="slow")
        self.lock = threading.Lock()
        self.delay = delay

    def start(self, messages: Any) -> ScriptedSession:
        outer = self

        class Session(ScriptedSession):
            def generate(self, trace: Sequence[Span], request: GenerateRequest) -> Segment:
                inner = request.on_text

                def on_text(piece: str) -> None:
                    time.sleep(outer.delay)
                    if inner is not None:
                        inner(piece)

                request.on_text = on_text
                with outer.lock:
                    return super().generate(trace, request)

        return Session(self, 1)


def test_time_budget_stops_cleanly_with_finish_time() -> None:
    small = Slow(0.01)  # 100 tokens a second
    thinker = SpeculativeThinker(
        small, ScriptedGenerator.from_responses(TARGET_TEXT), SpeculativeThinkingConfig(time_budget=0.2)
    )
    t0 = time.monotonic()
    result = thinker.run("q")
    assert time.monotonic() - t0 < 1.0
    assert result.finish_reason == "time"
    assert result.text.startswith(" tick")  # the partial text is returned
    assert 0 < result.num_output_tokens < 100


def test_leaving_a_stream_early_cancels_the_run_and_frees_the_model() -> None:
    small = Slow(0.01)
    thinker = SpeculativeThinker(
        small, ScriptedGenerator.from_responses(TARGET_TEXT), SpeculativeThinkingConfig(max_new_tokens=400)
    )
    stream = thinker.stream("q")
    for i, _event in enumerate(stream):
        if i == 3:
            break
    assert isinstance(stream, GeneratorType)
    stream.close()
    assert small.lock.acquire(timeout=2), "the run must release the model soon after cancellation"
    small.lock.release()


async def test_cancelling_an_async_run_releases_the_model_and_leaves_no_state() -> None:
    small = Slow(0.01)
    thinker = SpeculativeThinker(
        small, ScriptedGenerator.from_responses(TARGET_TEXT), SpeculativeThinkingConfig(max_new_tokens=60)
    )
    task = asyncio.create_task(thinker.arun("q"))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert small.lock.acquire(timeout=2)
    small.lock.release()
    small.delay = 0.0
    again = await thinker.arun("q")  # a fresh run is unaffected
    assert again.text == " tick" * 60 and again.finish_reason == "length"


def test_cancel_event_raises_run_cancelled_with_partial() -> None:
    cancel = threading.Event()
    small = Slow(0.0)

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "text" and event["text"] == " tick":
            cancel.set()

    thinker = SpeculativeThinker(small, ScriptedGenerator.from_responses(TARGET_TEXT))
    with pytest.raises(RunCancelledError) as info:
        thinker.run("q", cancel=cancel, on_event=on_event)
    assert info.value.partial is not None


# -- 3. resume from a checkpoint ---------------------------------------------------------------
def test_a_run_interrupted_by_an_exception_resumes_to_the_same_text() -> None:
    cfg = SpeculativeThinkingConfig(probe_tokens=4)
    uninterrupted = make(cfg).run("q").text

    saver = InMemorySaver()
    small = Failing(SMALL_TEXT, fail_at=2, exc=RuntimeError("killed"))
    thinker = SpeculativeThinker(small, ScriptedGenerator.from_responses(TARGET_TEXT), cfg, checkpointer=saver)
    with pytest.raises(SpeculativeThinkingError):
        thinker.run("q", thread_id="t1")

    # A new process: fresh models (the scripts continue from the text, like a greedy model would).
    class Continue(ScriptedGenerator):
        pass

    full = "".join(SMALL_TEXT).replace(EOS, "")

    def small_script(trace: str, _i: int) -> str:
        rest = {"Step one.\n\n": " Wait, that is wrong.", "Step one.\n\n Let me redo it:": " Step two.\n\n"}
        if trace in rest:
            return rest[trace]
        return " So done." + EOS if trace.endswith("\n\n") else full

    resumed_thinker = SpeculativeThinker(
        Continue(small_script), ScriptedGenerator.from_responses(TARGET_TEXT), cfg, checkpointer=saver
    )
    resumed = resumed_thinker.resume("t1")
    assert resumed.text == uninterrupted
    assert resumed.finish_reason == "eos"


def test_resume_of_an_unknown_thread_is_an_error() -> None:
    with pytest.raises(ValueError, match="no run is checkpointed"):
        make(checkpointer=InMemorySaver()).resume("nope")


# -- reuse of a kept probe's leftover --------------------------------------------------------------
def test_probe_leftover_is_reused_not_rewritten() -> None:
    """A neutral probe cut at its first boundary hands its tail to the next probe."""
    doc = "A b.\n\nC d.\n\nE f g h i j.\n\nK." + EOS
    cfg = SpeculativeThinkingConfig(probe_tokens=6, max_new_tokens=40)

    def run(reuse: bool) -> tuple[Any, ScriptedGenerator]:
        small = ScriptedGenerator.from_document(doc, name="small")
        small.supports_prefix = reuse
        result = SpeculativeThinker(small, ScriptedGenerator.from_responses([" T"]), cfg).run("q")
        return result, small

    plain, plain_small = run(False)
    reused, reused_small = run(True)
    assert reused.text == plain.text == doc.replace(EOS, "")
    assert reused.output_tokens == plain.output_tokens
    assert reused.generated_tokens["small"] < plain.generated_tokens["small"]
    assert reused.generated_tokens["small"] == reused.output_tokens["small"]  # nothing written twice
    assert len(reused_small.calls) == len(plain_small.calls)


# -- fallback to the small model when the target fails -------------------------------------------
def test_target_failure_stops_the_run_by_default() -> None:
    target = Failing(TARGET_TEXT, fail_at=0, exc=ConnectionError("server gone"))
    thinker = SpeculativeThinker(
        ScriptedGenerator.from_responses(SMALL_TEXT), target, SpeculativeThinkingConfig(probe_tokens=4)
    )
    with pytest.raises(SpeculativeThinkingError, match="ConnectionError") as info:
        thinker.run("q")
    assert info.value.partial is not None and info.value.partial.text == "Step one.\n\n"


def test_target_fallback_goes_on_with_the_small_model_and_records_it() -> None:
    target = Failing(TARGET_TEXT, fail_at=0, exc=ConnectionError("server gone"))
    cfg = SpeculativeThinkingConfig(probe_tokens=4, target_fallback=True)
    result = SpeculativeThinker(ScriptedGenerator.from_responses(SMALL_TEXT), target, cfg).run("q")
    assert result.finish_reason == "eos"
    assert result.text == "Step one.\n\n Wait, that is wrong. Step two.\n\n So done."  # the small model alone
    assert result.output_tokens.get("target", 0) == 0
    assert len(result.fallbacks) == 1
    assert result.fallbacks[0]["node"] == "target_intervene"
    assert "ConnectionError: server gone" in result.fallbacks[0]["error"]
    assert len(target.calls) == 1  # never asked again after the failure


def test_target_fallback_in_the_opening() -> None:
    target = Failing(TARGET_TEXT, fail_at=0, exc=TimeoutError("hung"))
    cfg = SpeculativeThinkingConfig.preset("non_reasoning", target_fallback=True, max_new_tokens=30)
    result = SpeculativeThinker(ScriptedGenerator.from_responses(SMALL_TEXT), target, cfg).run("q")
    assert result.fallbacks and result.fallbacks[0]["char_position"] == 0
    assert result.text.startswith("Step one.")
    assert result.output_tokens.get("target", 0) == 0
