r"""The OpenAI-compatible generator against fake servers (stdlib http.server in a thread; no models).

The fake "model" continues a fixed document from wherever the prompt's trace is, in the scripted
tokenizer's word-like tokens (like :meth:`ScriptedGenerator.from_document`), so a run with the
fake served target must equal the same run with a scripted target. Faults are planned per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from spec_graph import ScriptedGenerator, SpeculativeThinker, SpeculativeThinkingConfig
from spec_graph.errors import SpeculativeThinkingError
from spec_graph.generators.base import GenerateRequest, Span
from spec_graph.generators.remote import (
    RemoteGenerator,
    RemoteGeneratorError,
    TraceIds,
    normalize_base_url,
    tokenizer_key,
)
from spec_graph.generators.scripted import EOS, scripted_tokens

TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
MARK = "<assistant>"
MESSAGES = [{"role": "user", "content": "question"}]
DOC = "First we add two and two.\n\nWait, check the number again.\n\nSo the answer is 4." + EOS
FILLER = " x"

TRANSFORMERS_FIELDS = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "stream", "stream_options",
    "logprobs", "suffix", "n", "echo", "user", "frequency_penalty", "presence_penalty", "best_of",
    "logit_bias", "generation_config",
}  # fmt: skip


# -- the fake server ---------------------------------------------------------------------------
class FakeServer:
    """An OpenAI-compatible completions server that continues ``document``.

    ``engine="transformers"`` keeps stop strings in the text and answers 422 to unknown fields
    (as ``transformers serve`` does); ``engine="vllm"`` strips them (unless asked to keep them)
    and names them in ``stop_reason``. ``faults`` is consumed one per completions request:
    ``"ok"``, ``"500"``, ``"503"``, ``"400"``, ``"context"`` (a 400 about the context length),
    ``"hang"``, ``"drop:N"`` (N tokens, then the connection closes), ``"error_event"``.
    """

    def __init__(
        self,
        document: str = DOC,
        *,
        engine: str = "transformers",
        faults: list[str] | None = None,
        default_fault: str = "ok",
        piece_delay: float = 0.0,
        model_name: str = "fake-model",
    ) -> None:
        self.document, self.engine, self.piece_delay, self.model_name = document, engine, piece_delay, model_name
        self.faults = list(faults or [])
        self.default_fault = default_fault
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner = "vllm" if server.engine == "vllm" else "local"
                server._json(self, 200, {"object": "list", "data": [{"id": server.model_name, "owned_by": owner}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    fault = server.faults.pop(0) if server.faults else server.default_fault
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    server._answer(self, body, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- answers -----------------------------------------------------------------------------
    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def generate(self, body: dict[str, Any]) -> tuple[list[str], str, str | None, int, int]:
        """``(pieces, finish_reason, matched stop, completion tokens, prompt tokens)``."""
        if "messages" in body:  # chat: the trace is a final assistant message to continue
            last = body["messages"][-1]
            trace = last["content"] if last["role"] == "assistant" and body.get("continue_final_message") else ""
            prompt = "".join(m["content"] for m in body["messages"])
        else:
            prompt = body["prompt"]
            trace = "" if isinstance(prompt, list) else prompt.rsplit(MARK, 1)[1]
        text = self.document[len(trace) :] if self.document.startswith(trace) else FILLER * 64
        stops = body.get("stop") or []
        out: list[str] = []
        finish, matched, count = "length", None, 0
        for tok in scripted_tokens(text):
            if count >= body["max_tokens"]:
                break
            count += 1
            if tok == EOS:
                finish = "stop"
                break
            out.append(tok)
            gen = "".join(out)
            hit = next((s for s in stops if gen.find(s, max(0, len(gen) - len(tok) - len(s) + 1)) >= 0), None)
            if hit is not None:
                finish, matched = "stop", hit
                if self.engine == "vllm" and not body.get("include_stop_str_in_output"):
                    cut = gen.find(hit, max(0, len(gen) - len(tok) - len(hit) + 1))
                    keep = gen[:cut]
                    out = scripted_tokens(keep) if keep else []
                break
        n_prompt = len(prompt) if isinstance(prompt, list) else len(scripted_tokens(prompt))
        return out, finish, matched, count, n_prompt

    def _answer(self, h: BaseHTTPRequestHandler, body: dict[str, Any], fault: str) -> None:
        if fault in ("500", "503"):
            self._json(h, int(fault), {"error": "the engine fell over"})
            return
        if fault == "400":
            self._json(h, 400, {"error": "bad request: temperature must be a number"})
            return
        if fault == "context":
            self._json(h, 400, {"error": "This model's maximum context length is 2048 tokens"})
            return
        if fault == "hang":
            self._stop.wait(30)
            return
        if self.engine == "transformers" and set(body) - TRANSFORMERS_FIELDS:
            self._json(h, 422, {"detail": f"Unexpected fields in the request: {set(body) - TRANSFORMERS_FIELDS}"})
            return
        pieces, finish, matched, count, n_prompt = self.generate(body)
        usage = {"prompt_tokens": n_prompt, "completion_tokens": count, "total_tokens": n_prompt + count}
        stop_reason = matched if self.engine == "vllm" else None
        chat = "messages" in body

        def part(text: str) -> dict[str, Any]:
            return {"delta": {"content": text}} if chat else {"text": text}

        if not body.get("stream"):
            out = {"message": {"role": "assistant", "content": "".join(pieces)}} if chat else part("".join(pieces))
            choice = {"index": 0, **out, "finish_reason": finish}
            if self.engine == "vllm":
                choice["stop_reason"] = stop_reason
            self._json(h, 200, {"object": "text_completion", "choices": [choice], "usage": usage})
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()  # HTTP/1.0: the body ends when the connection closes

        def event(payload: Any) -> None:
            h.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            h.wfile.flush()

        drop = int(fault.split(":")[1]) if fault.startswith("drop:") else None
        for i, piece in enumerate(pieces):
            if drop is not None and i == drop:
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault == "error_event" and i == 1:
                event({"error": "CUDA out of memory"})
                return
            event_choice: dict[str, Any] = {"index": 0, **part(piece)}
            if body.get("logprobs"):
                top = {piece: -0.5, "other": -0.25}
                event_choice["logprobs"] = {"tokens": [piece], "token_logprobs": [-0.5], "top_logprobs": [top]}
            event({"object": "text_completion", "choices": [event_choice]})
            if self.piece_delay:
                time.sleep(self.piece_delay)
        if self.engine == "vllm":
            event({"choices": [{"index": 0, **part(""), "finish_reason": finish, "stop_reason": stop_reason}]})
            event({"choices": [], "usage": usage})
            h.wfile.write(b"data: [DONE]\n\n")
        else:
            event({"choices": [{"index": 0, **part(""), "finish_reason": finish}], "usage": usage})


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as srv:
        yield srv


def remote(srv: FakeServer, **kw: Any) -> RemoteGenerator:
    opts: dict[str, Any] = {"chat_template": TEMPLATE, "retries": 2, "backoff": 0.01, "timeout": 5.0, **kw}
    return RemoteGenerator(srv.model_name, base_url=srv.url, **opts)


def span(text: str, author: str = "small", key: str | None = "scripted-words", ids: list[int] | None = None) -> Span:
    return Span(author=author, reason="generate", text=text, token_ids=ids or [], tokenizer=key, boundary=False)  # type: ignore[typeddict-item]


def req(max_tokens: int = 50, **kw: Any) -> GenerateRequest:
    return GenerateRequest(max_tokens=max_tokens, **kw)


# -- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:8000", "http://h:8000/v1"),
        ("http://h:8000/", "http://h:8000/v1"),
        ("http://h:8000/v1/", "http://h:8000/v1"),
        ("h:8000", "http://h:8000/v1"),
        ("https://api.example.com/openai/v1", "https://api.example.com/openai/v1"),
    ],
)
def test_base_url_is_normalized(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://wrong:1/v1")
    monkeypatch.setenv("SPEC_GRAPH_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    monkeypatch.setenv("SPEC_GRAPH_MODEL", "fake-model")
    gen = RemoteGenerator(chat_template=TEMPLATE)
    assert gen.base_url == server.url and gen.model == "fake-model"
    gen.start(MESSAGES).generate([], req(3))
    assert server.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in repr(gen) and "sk-secret" not in str(vars(gen).get("url"))


def test_missing_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SPEC_GRAPH_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="SPEC_GRAPH_BASE_URL"):
        RemoteGenerator("m", chat_template=TEMPLATE)
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        RemoteGenerator("m", base_url="http://h", prompt_format="ids")


def test_model_name_is_asked_from_the_server(server: FakeServer) -> None:
    gen = RemoteGenerator(base_url=server.url, chat_template=TEMPLATE)
    assert gen.model == "fake-model" and gen.models() == ["fake-model"]
    assert gen.tokenizer_key == f"remote:{server.url}#fake-model"  # no tokenizer: unique to server and model


def test_a_template_or_tokenizer_is_needed_for_completions(server: FakeServer) -> None:
    gen = RemoteGenerator("fake-model", base_url=server.url, tokenizer=False)
    with pytest.raises(ValueError, match="chat template"):
        gen.start(MESSAGES)


# -- requests ----------------------------------------------------------------------------------
def test_request_body(server: FakeServer) -> None:
    gen = remote(server)
    session = gen.start(MESSAGES)
    session.generate([span("First we")], req(7, stop=("END",), temperature=0.0, top_p=0.9, seed=5))
    body = server.requests[-1]
    assert body["prompt"] == "<user>question<assistant>First we"  # own template + trace text
    assert body["max_tokens"] == 7 and body["temperature"] == 0.0 and body["seed"] == 5
    assert body["stop"] == ["\n\n", "END"]  # triggers (the call stops at one) + user stops
    assert "top_p" not in body  # greedy: top_p means nothing
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    session.generate([span("First we")], req(7, stop_at_trigger=False, temperature=0.7, top_p=0.9, seed=5))
    body = server.requests[-1]
    assert "stop" not in body and body["top_p"] == 0.9 and body["seed"] == 6  # a fresh seed per call
    assert "top_k" not in body  # transformers serve would answer 422


def test_streams_text_and_stops_at_the_trigger(server: FakeServer) -> None:
    pieces: list[str] = []
    seg = remote(server).start(MESSAGES).generate([], req(50, on_text=pieces.append))
    assert seg.text == "First we add two and two.\n\n" and seg.finish_reason == "trigger"
    assert pieces == scripted_tokens(seg.text)
    assert seg.num_tokens == len(pieces)  # the server's count (placeholder ids without a tokenizer)
    assert seg.token_ids == [-1] * len(pieces)
    assert seg.first_boundary == (len(pieces), len(seg.text))
    assert seg.prefill_tokens > 0


def test_length_eos_and_user_stop(server: FakeServer) -> None:
    session = remote(server).start(MESSAGES)
    seg = session.generate([], req(3))
    assert (seg.text, seg.finish_reason, seg.num_tokens) == ("First we add", "length", 3)
    trace = [span(DOC.removesuffix(EOS).removesuffix(" 4."))]
    seg = session.generate(trace, req(50))
    assert (seg.text, seg.finish_reason, seg.num_tokens) == (" 4.", "eos", 2)  # end of turn is a token
    seg = session.generate([span("First we")], req(50, stop=("two",), stop_at_trigger=False))
    assert (seg.text, seg.finish_reason) == (" add two", "stop")  # the stop text stays, as locally


def test_stop_string_stripped_by_the_server_is_put_back() -> None:
    with FakeServer(engine="vllm") as srv:
        gen = remote(srv, engine="generic")  # no extension fields: vLLM strips the stop string
        seg = gen.start(MESSAGES).generate([], req(50))
        assert "include_stop_str_in_output" not in srv.requests[-1]
        assert seg.text == "First we add two and two.\n\n" and seg.finish_reason == "trigger"
        auto = remote(srv)  # engine="auto" finds vLLM and asks it to keep the stop string
        seg2 = auto.start(MESSAGES).generate([], req(50, top_k=5, temperature=0.5))
        assert auto.engine == "vllm" and srv.requests[-1]["include_stop_str_in_output"] is True
        assert srv.requests[-1]["top_k"] == 5
        assert seg2.text.endswith("\n\n") and seg2.finish_reason == "trigger"


def test_trigger_completed_across_the_seam_ends_the_call(server: FakeServer) -> None:
    r"""The trace ends with ".\n" and the model writes "\n...": the boundary is its first token."""
    pieces: list[str] = []
    trace = [span("First we add two and two.\n")]
    server.document = "First we add two and two.\n\n Wait more words here"
    seg = remote(server).start(MESSAGES).generate(trace, req(50, on_text=pieces.append))
    # scripted tokens: "\n" then " Wait"...: the server does not know, we cut after "\n"
    assert seg.text == "\n" and seg.finish_reason == "trigger" and pieces == ["\n"]
    assert seg.first_boundary == (1, 1)


def test_probe_records_its_first_boundary_only(server: FakeServer) -> None:
    seg = remote(server).start(MESSAGES).generate([span("First we add")], req(8, stop_at_trigger=False))
    assert seg.text == " two and two.\n\nWait, check the number"
    assert seg.finish_reason == "length" and seg.num_tokens == 8
    n_tok, n_chr = seg.first_boundary  # type: ignore[misc]
    assert seg.text[:n_chr] == " two and two.\n\n" and n_tok == len(scripted_tokens(" two and two.\n\n"))


def test_without_streaming(server: FakeServer) -> None:
    pieces: list[str] = []
    session = remote(server, stream=False).start(MESSAGES)
    seg = session.generate([], req(50, on_text=pieces.append))
    assert seg.text == "First we add two and two.\n\n" and seg.finish_reason == "trigger"
    assert pieces == [seg.text] and seg.num_tokens == len(scripted_tokens(seg.text))
    seg = session.generate([span("First we add")], req(8, stop_at_trigger=False))
    assert seg.first_boundary is not None and seg.text[: seg.first_boundary[1]] == " two and two.\n\n"


def test_logprobs_when_asked(server: FakeServer) -> None:
    seg = remote(server, logprobs=True).start(MESSAGES).generate([], req(3))
    assert server.requests[-1]["logprobs"] == 1 and seg.logprobs == [-0.5, -0.5, -0.5]
    assert remote(server).start(MESSAGES).generate([], req(3)).logprobs is None


def test_logprobs_per_request_with_top1_probabilities(server: FakeServer) -> None:
    """A policy asks for a probe's probabilities per request; the server's top token gives top-1."""
    seg = remote(server).start(MESSAGES).generate([], req(3, logprobs=True))
    assert server.requests[-1]["logprobs"] == 1
    assert seg.logprobs == [-0.5, -0.5, -0.5]
    assert seg.top1_probs == pytest.approx([math.exp(-0.25)] * 3)
    assert seg.entropies is None  # a server gives only its top tokens


@pytest.mark.parametrize("stream", [True, False])
def test_chat_api_continues_the_assistant_message(stream: bool) -> None:
    with FakeServer(engine="vllm") as srv:
        session = remote(srv, api="chat", stream=stream).start(MESSAGES)
        seg = session.generate([span("First we")], req(50))
        body = srv.requests[-1]
        assert body["messages"] == [*MESSAGES, {"role": "assistant", "content": "First we"}]
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert (seg.text, seg.finish_reason) == (" add two and two.\n\n", "trigger")
        session.generate([], req(2))
        assert srv.requests[-1]["messages"] == MESSAGES and "continue_final_message" not in srv.requests[-1]


def test_deadline_and_cancel_before_the_call(server: FakeServer) -> None:
    session = remote(server).start(MESSAGES)
    assert session.generate([], req(5, deadline=time.monotonic() - 1)).finish_reason == "time"
    cancel = threading.Event()
    cancel.set()
    assert session.generate([], req(5, cancel=cancel)).finish_reason == "cancelled"
    assert server.requests == []


def test_deadline_during_the_stream_keeps_the_text() -> None:
    with FakeServer(piece_delay=0.05) as srv:
        seg = remote(srv).start(MESSAGES).generate([], req(50, deadline=time.monotonic() + 0.12))
    assert seg.finish_reason == "time" and 1 <= seg.num_tokens < 6
    assert "First we add two and two.".startswith(seg.text)


def mocked(handler: Any, **kw: Any) -> RemoteGenerator:
    """A generator whose requests go to ``handler`` (an ``httpx.MockTransport``), no socket."""
    import httpx

    gen = RemoteGenerator("m", base_url="http://test", chat_template=TEMPLATE, engine="generic", **kw)
    gen.server._client = httpx.Client(transport=httpx.MockTransport(handler))
    return gen


def test_server_sent_events_are_read_as_the_spec_says() -> None:
    """Comments, other fields, ``data:`` without a space, one event over two ``data`` lines (httpx-sse)."""
    import httpx

    stream = (
        ": keep-alive\n\n"
        'event: message\ndata:{"choices": [{"index": 0, "text": "First"}]}\n\n'
        'data: {"choices": [{"index": 0,\ndata: "text": " we"}]}\n\n'
        'data: {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]}\n\n'
        "data: [DONE]\n\n"
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=stream)

    seg = mocked(handler).start(MESSAGES).generate([], req(2))
    assert (seg.text, seg.finish_reason, seg.num_tokens) == ("First we", "length", 2)
    assert seen[0].headers["accept"] == "text/event-stream"


def test_a_json_answer_to_a_streamed_request_is_read_whole() -> None:
    import httpx

    answer = {
        "choices": [{"index": 0, "text": "First we", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    seg = mocked(lambda _request: httpx.Response(200, json=answer)).start(MESSAGES).generate([], req(2))
    assert (seg.text, seg.finish_reason, seg.num_tokens) == ("First we", "length", 2)


def test_an_unreadable_event_is_retried() -> None:
    import httpx

    bodies = ["data: {not json\n\n", 'data: {"choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}]}\n\n']

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=bodies.pop(0))

    seg = mocked(handler, backoff=0.0).start(MESSAGES).generate([], req(5))
    assert (seg.text, seg.finish_reason) == ("ok", "eos") and bodies == []


# -- faults ------------------------------------------------------------------------------------
def test_5xx_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    with FakeServer(faults=["500", "503"]) as srv, caplog.at_level(logging.WARNING):
        seg = remote(srv, api_key="sk-secret-123").start(MESSAGES).generate([], req(50))
    assert seg.text == "First we add two and two.\n\n" and len(srv.requests) == 3
    assert "retry 2 of 2" in caplog.text and "sk-secret" not in caplog.text


def test_5xx_after_the_retries_raises() -> None:
    srv = FakeServer(default_fault="500")
    with srv, pytest.raises(RemoteGeneratorError, match=r"HTTP 500.*after 3 attempts") as info:
        remote(srv, retries=2).start(MESSAGES).generate([], req(50))
    assert len(srv.requests) == 3 and info.value.status == 500 and info.value.retryable


def test_4xx_is_not_retried() -> None:
    with FakeServer(faults=["400"]) as srv, pytest.raises(RemoteGeneratorError, match="HTTP 400") as info:
        remote(srv).start(MESSAGES).generate([], req(50))
    assert len(srv.requests) == 1 and not info.value.retryable


def test_unknown_fields_are_refused_by_transformers_serve(server: FakeServer) -> None:
    with pytest.raises(RemoteGeneratorError, match=r"422.*Unexpected fields"):
        remote(server, extra_body={"top_k": 3}).start(MESSAGES).generate([], req(5))


def test_full_context_ends_the_call() -> None:
    with FakeServer(faults=["context"]) as srv:
        seg = remote(srv).start(MESSAGES).generate([], req(50))
    assert (seg.text, seg.finish_reason) == ("", "context")


def test_a_hanging_server_times_out_then_raises() -> None:
    with FakeServer(default_fault="hang") as srv:
        t0 = time.monotonic()
        with pytest.raises(RemoteGeneratorError, match=r"timeout.*after 2 attempts"):
            remote(srv, timeout=0.2, retries=1).start(MESSAGES).generate([], req(50))
        assert time.monotonic() - t0 < 3
    assert len(srv.requests) == 2


def test_a_hanging_server_past_the_deadline_is_a_time_stop() -> None:
    with FakeServer(default_fault="hang") as srv:
        seg = remote(srv, timeout=5).start(MESSAGES).generate([], req(50, deadline=time.monotonic() + 0.3))
    assert seg.finish_reason == "time" and seg.text == ""


@pytest.mark.parametrize("fault", ["drop:3", "error_event"])
def test_a_cut_stream_continues_from_what_was_received(fault: str) -> None:
    pieces: list[str] = []
    with FakeServer(faults=[fault]) as srv:
        seg = remote(srv).start(MESSAGES).generate([], req(50, on_text=pieces.append))
    assert seg.text == "First we add two and two.\n\n" and seg.finish_reason == "trigger"
    assert "".join(pieces) == seg.text  # nothing streamed twice
    received = "".join(scripted_tokens(DOC)[: int(fault[5:]) if fault.startswith("drop") else 1])
    again = srv.requests[1]
    assert again["prompt"].endswith(MARK + received)  # the retry continues after the received text
    assert again["max_tokens"] == 50 - len(scripted_tokens(received))


def test_a_cut_stream_after_the_retries_carries_the_partial_text() -> None:
    with FakeServer(faults=["drop:2"], default_fault="500") as srv, pytest.raises(RemoteGeneratorError) as info:
        remote(srv, retries=1).start(MESSAGES).generate([], req(50))
    assert info.value.partial_text == "First we" and len(info.value.partial_token_ids) == 2


def test_connection_refused_is_retried_then_raises() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gen = RemoteGenerator("m", base_url=f"http://127.0.0.1:{port}", chat_template=TEMPLATE, backoff=0.01, retries=2)
    with pytest.raises(RemoteGeneratorError, match=r"ConnectError.*after 3 attempts"):
        gen.start(MESSAGES).generate([], req(5))


# -- the graph with a served target ------------------------------------------------------------
CFG = SpeculativeThinkingConfig(
    probe_tokens=3,
    verify_tokens=4,
    max_new_tokens=60,
    temperature=0.0,
    reflection_keywords=("Wait",),
    verification_keywords=("check",),
)


def test_run_with_a_served_target_equals_the_scripted_pair(server: FakeServer) -> None:
    small = ScriptedGenerator.from_document(DOC, name="small")
    scripted = SpeculativeThinker(small, ScriptedGenerator.from_document(DOC, name="target"), CFG).run(MESSAGES)
    served = SpeculativeThinker(small, remote(server), CFG).run(MESSAGES)
    assert served.text == scripted.text == DOC.removesuffix(EOS)
    assert served.finish_reason == scripted.finish_reason == "eos"
    assert served.output_tokens == scripted.output_tokens
    assert [(i["kind"], i["target_text"]) for i in served.interventions] == [
        (i["kind"], i["target_text"]) for i in scripted.interventions
    ]
    assert any(i["kind"] == "intervention" for i in served.interventions)


@pytest.mark.parametrize("fault", ["500", "hang"])
def test_run_fails_with_the_partial_trace_intact(fault: str) -> None:
    small = ScriptedGenerator.from_document(DOC, name="small")
    with FakeServer(default_fault=fault) as srv:
        thinker = SpeculativeThinker(small, remote(srv, timeout=0.2, retries=1), CFG)
        with pytest.raises(SpeculativeThinkingError) as info:
            thinker.run(MESSAGES)
    assert isinstance(info.value.__cause__, RemoteGeneratorError)
    partial = info.value.partial
    assert partial is not None and partial.finish_reason == "error"
    assert partial.text == "First we add two and two.\n\n"  # what the small model wrote before the target failed
    assert partial.text == "".join(s["text"] for s in partial.spans)


@pytest.mark.parametrize("fault", ["500", "hang"])
def test_with_fallback_the_run_goes_on_with_the_small_model(fault: str) -> None:
    small = ScriptedGenerator.from_document(DOC, name="small")
    cfg = CFG.model_copy(update={"target_fallback": True})
    with FakeServer(default_fault=fault) as srv:
        result = SpeculativeThinker(small, remote(srv, timeout=0.2, retries=1), cfg).run(MESSAGES)
    assert result.finish_reason == "eos"
    assert result.text == DOC.removesuffix(EOS)  # the small model wrote everything
    assert result.output_tokens.get("target", 0) == 0
    assert len(result.fallbacks) == 1 and "RemoteGeneratorError" in result.fallbacks[0]["error"]


# -- concurrency -------------------------------------------------------------------------------
def test_threads_share_one_generator_within_the_concurrency_limit() -> None:
    with FakeServer(piece_delay=0.01) as srv:
        gen = remote(srv, max_concurrency=3)
        small = ScriptedGenerator.from_document(DOC, name="small")
        thinker = SpeculativeThinker(small, gen, CFG)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: thinker.run(MESSAGES), range(8)))
    assert {r.text for r in results} == {DOC.removesuffix(EOS)}
    assert 2 <= srv.max_in_flight <= 3


async def test_arun_shares_one_generator(server: FakeServer) -> None:
    """Async runs go through threads (graph nodes are synchronous): one generator, one client, for all."""
    gen = remote(server)
    small = ScriptedGenerator.from_document(DOC, name="small")
    results = await asyncio.gather(*(SpeculativeThinker(small, gen, CFG).arun(MESSAGES) for _ in range(4)))
    assert {r.text for r in results} == {DOC.removesuffix(EOS)}
    gen.close()


async def test_arun_retries_a_failing_server() -> None:
    small = ScriptedGenerator.from_document(DOC, name="small")
    with FakeServer(faults=["500"]) as srv:
        result = await SpeculativeThinker(small, remote(srv), CFG).arun(MESSAGES)
    assert result.text == DOC.removesuffix(EOS) and result.output_tokens.get("target", 0) > 0


# -- tokenizers: keys, ids and the seam --------------------------------------------------------
def seam_tokenizer() -> Any:
    r"""A hand-made BPE where ".\n" + "\nWait" is [".\n", "\nWait"] but ".\n\nWait" is [".\n\n", "Wait"]."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,?!\n<>|_")
    merged = [".\n", ".\n\n", "Wa", "Wai", "Wait", "\nWait"]
    vocab = {tok: i for i, tok in enumerate(["<eos>", *chars, *merged])}
    merges = [(".", "\n"), (".\n", "\n"), ("W", "a"), ("Wa", "i"), ("Wai", "t"), ("\n", "Wait")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")  # type: ignore[no-untyped-call,unused-ignore]
    fast.chat_template = TEMPLATE
    return fast


def test_seam_is_retokenized_like_the_whole_text() -> None:
    tok = seam_tokenizer()

    def enc(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    own, foreign = "So 4.\n", "\nWait"
    pieces, whole = enc(own) + enc(foreign), enc(own + foreign)
    assert pieces != whole, "the hand-made case must merge at the seam"
    key = tokenizer_key(tok)
    trace_ids = TraceIds(enc, tok.decode, key)
    trace = [span(own, "target", key, enc(own)), span(foreign, "small", "another", [7, 8])]
    assert trace_ids(trace) == whole
    # same-tokenizer spans pass their ids unchanged (as the local generator does)
    assert TraceIds(enc, tok.decode, key)([span(own, "target", key, [1, 2, 3])]) == [1, 2, 3]


def test_ids_prompt_is_built_like_the_local_generator(server: FakeServer) -> None:
    tok = seam_tokenizer()
    gen = RemoteGenerator("fake-model", base_url=server.url, tokenizer=tok, prompt_format="ids")
    session = gen.start(MESSAGES)
    own = gen.encode("So 4.\n")
    trace = [span("So 4.\n", "target", gen.tokenizer_key, own), span("\nWait", "small", "another", [1])]
    session.generate(trace, req(3))
    prompt = server.requests[-1]["prompt"]
    assert prompt == gen.encode("<user>question<assistant>") + gen.encode("So 4.\n\nWait")
    assert session.prompt_tokens == len(gen.encode("<user>question<assistant>"))


def test_text_prompt_joins_the_seam_for_the_server(server: FakeServer) -> None:
    gen = RemoteGenerator("fake-model", base_url=server.url, tokenizer=seam_tokenizer())
    gen.start(MESSAGES).generate([span("So 4.\n", "target"), span("\nWait", "small")], req(3))
    assert server.requests[-1]["prompt"].endswith("So 4.\n\nWait")  # the server tokenizes it whole


def test_tokenizer_key_and_ids_match_the_local_generator(server: FakeServer) -> None:
    from spec_graph.generators.tokens import tokenizer_key as hf_key  # what HFGenerator.tokenizer_key computes

    tok = seam_tokenizer()
    gen = RemoteGenerator("fake-model", base_url=server.url, tokenizer=tok)
    assert gen.tokenizer_key == hf_key(tok)  # a local model with this tokenizer takes our ids as they are
    server.document = "First we add two and two.\n\nWait." + EOS
    session = gen.start(MESSAGES)
    seg = session.generate([], req(50, stop_at_trigger=False))
    assert seg.finish_reason == "eos" and seg.token_ids[-1] == tok.eos_token_id
    head = gen.encode("First we add two and two.\n\n")
    assert seg.token_ids[: seg.first_boundary[0]] == head  # type: ignore[index]
    assert seg.token_ids == [*head, *gen.encode("Wait."), tok.eos_token_id]


def test_context_window_clips_the_call(server: FakeServer) -> None:
    gen = RemoteGenerator("fake-model", base_url=server.url, tokenizer=seam_tokenizer(), context_window=40)
    session = gen.start(MESSAGES)  # 25 prompt tokens (one a character)
    seg = session.generate([], req(50, stop_at_trigger=False))
    assert seg.finish_reason == "context" and server.requests[-1]["max_tokens"] == 40 - session.prompt_tokens
    with pytest.raises(ValueError, match="context window"):
        RemoteGenerator("fake-model", base_url=server.url, tokenizer=seam_tokenizer(), context_window=10).start(
            MESSAGES
        )
