"""The chat model's constructor checks and its LangChain model profile, read without loading a model.

- :func:`check_model_spec`: ``small_model``/``target_model`` must be something
  :func:`~spec_graph.generators.resolve.resolve_generator` accepts; another chat model (say
  ``ChatOpenAI``) is rejected when the model is built, naming what is accepted.
- :func:`check_model_kwargs`: ``model_kwargs`` only where they can be applied (models given by
  name or URL).
- :func:`chat_profile`: ``BaseChatModel.profile`` (langchain-core's ``ModelProfile``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.language_models import ModelProfile

from spec_graph.generators.base import capabilities_of
from spec_graph.generators.resolve import ACCEPTED, is_generator

__all__ = ["chat_profile", "check_model_kwargs", "check_model_spec", "context_window"]


def _is_reusable_object(spec: Any) -> bool:
    """Whether ``spec`` is a loaded object the resolver reuses (looked at, nothing loaded)."""
    if isinstance(spec, tuple):
        return len(spec) == 2
    llm = getattr(spec, "llm", None)  # ChatHuggingFace(llm=HuggingFacePipeline(...))
    if llm is not None:
        return getattr(llm, "pipeline", None) is not None
    pipe = getattr(spec, "pipeline", None)  # HuggingFacePipeline
    if pipe is not None and hasattr(pipe, "model"):
        return True
    return type(spec).__module__.startswith("transformers.pipelines") and hasattr(spec, "model")


def check_model_spec(spec: Any) -> Any:
    """Return ``spec`` if it can be a model (``None`` is the default model); else raise ``ValueError``.

    Nothing is loaded: strings and paths are resolved on the first call.
    """
    if spec is None or isinstance(spec, str | Path) or is_generator(spec) or _is_reusable_object(spec):
        return spec
    kind = type(spec).__name__
    why = ""
    if hasattr(spec, "invoke") and hasattr(spec, "bind_tools"):  # a LangChain chat model
        why = " (another chat model cannot be driven token by token; give a served model's URL instead)"
    elif getattr(spec, "llm", None) is not None:
        why = f" (it wraps a {type(spec.llm).__name__}, not a local HuggingFacePipeline)"
    msg = f"cannot use a {kind} as a model{why}: give {ACCEPTED}"
    raise ValueError(msg)


def check_model_kwargs(model_kwargs: dict[str, Any] | None, *specs: Any) -> None:
    """Raise ``ValueError`` when ``model_kwargs`` are set but a model is a loaded object (they would be ignored)."""
    if not model_kwargs:
        return
    loaded = [type(s).__name__ for s in specs if not isinstance(s, str | Path)]
    if loaded:
        msg = (
            f"model_kwargs apply to models given by name, folder, hub id or server URL; a loaded "
            f"{loaded[0]} was given: set such options when you load it"
        )
        raise ValueError(msg)


def _config_json(spec: Any) -> dict[str, Any] | None:
    """The ``config.json`` of a model given by name or folder, if it is on disk (no download)."""
    from spec_graph import models

    name = str(spec)
    folder = models.cache_dir() / name if models.is_embedded(name) else Path(name).expanduser()
    path = folder / "config.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def context_window(spec: Any) -> int | None:
    """A model's context window, where it can be read without loading weights (else ``None``)."""
    if isinstance(spec, str | Path):
        config: Any = _config_json(spec) if not str(spec).startswith(("http://", "https://")) else None
        value = (config or {}).get("max_position_embeddings")
    else:
        holder = getattr(getattr(spec, "llm", spec), "pipeline", spec)
        model = spec[0] if isinstance(spec, tuple) else getattr(holder, "model", None)
        value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def _constrains_json(spec: Any) -> bool:
    """Whether structured output constrains this model: local (a grammar) or served (``response_format``)."""
    if not is_generator(spec):
        return True  # a name, folder, hub id or server URL, or a loaded transformers model
    from spec_graph.generators.remote import RemoteGenerator

    return capabilities_of(spec).grammar or isinstance(spec, RemoteGenerator)


def chat_profile(small: Any, target: Any, *, reasoning: bool | None) -> ModelProfile:
    """The chat model's profile: what it does whatever the pair, and the pair's input limit.

    ``max_input_tokens`` is the smaller context window of the two models, when both can be read
    without loading them (embedded names and folders on disk, loaded objects).
    """
    profile = ModelProfile(
        text_inputs=True,
        image_inputs=False,
        audio_inputs=False,
        video_inputs=False,
        pdf_inputs=False,
        text_outputs=True,
        image_outputs=False,
        # True: <think> reasoning comes out separately (additional_kwargs["reasoning_content"]).
        reasoning_output=reasoning is True,
        # bind_tools: the Qwen/Hermes <tool_call> format parsed into tool_calls, streamed as
        # tool_call_chunks (spec_graph.tools).
        tool_calling=True,
        tool_choice=True,
        tool_call_streaming=True,
        # with_structured_output(method="json_schema") writes under the schema's grammar (local
        # models) or asks the server for it (response_format); a model that can do neither (a
        # scripted one) is only prompted for JSON.
        structured_output=_constrains_json(small) and _constrains_json(target),
        temperature=True,
    )
    windows = [context_window(small), context_window(target)]
    if all(w is not None for w in windows):
        profile["max_input_tokens"] = min(w for w in windows if w is not None)
    return profile
