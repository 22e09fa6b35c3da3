"""dtype and quantization: names checked everywhere a user gives them, int8 layers, ``auto``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from spec_graph.generators import precision
from spec_graph.generators.int8 import KERNEL_ROWS, Int8WeightLinear, quantize_linears
from spec_graph.generators.precision import DTYPES, QUANTIZATIONS, check_dtype, check_quantization, resolve_dtype

DTYPE_LIST = "choose one of auto, float32, bfloat16, float16"
QUANT_LIST = "choose one of none, int8"


# -- the names ---------------------------------------------------------------------------------
def test_valid_names() -> None:
    assert DTYPES == ("auto", "float32", "bfloat16", "float16")
    assert QUANTIZATIONS == ("none", "int8")
    assert [check_dtype(d) for d in DTYPES] == list(DTYPES)
    assert check_dtype(None) == "auto"
    assert check_dtype(torch.bfloat16) == "bfloat16"
    assert check_quantization(None) == "none"
    assert check_quantization("int8") == "int8"


@pytest.mark.parametrize("bad", ["fp32", "float64", "BFLOAT16", "", torch.float64, 32])
def test_unknown_dtype_is_a_one_line_error_naming_the_valid_ones(bad: Any) -> None:
    with pytest.raises(ValueError, match=f"unknown dtype .*: {DTYPE_LIST}$") as info:
        check_dtype(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", ["int4", "INT8", "fp8", ""])
def test_unknown_quantization_is_a_one_line_error_naming_the_valid_ones(bad: str) -> None:
    with pytest.raises(ValueError, match=f"unknown quantization '{bad}': {QUANT_LIST}$") as info:
        check_quantization(bad)
    assert "\n" not in str(info.value)


def test_importing_precision_does_not_import_torch() -> None:
    code = "import sys, spec_graph.generators.precision, spec_graph.cli._options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- auto ----------------------------------------------------------------------------------------
def test_resolve_dtype_names_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_dtype("float32", "cpu") is torch.float32
    assert resolve_dtype("float16", "cpu") is torch.float16
    assert resolve_dtype(torch.bfloat16, "cpu") is torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") is torch.bfloat16
    assert resolve_dtype(None, torch.device("cpu")) is torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") is torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_dtype("auto", "cuda") is torch.float32
    with pytest.raises(ValueError, match=DTYPE_LIST):
        resolve_dtype("double", "cpu")


def test_default_dtype_is_auto() -> None:
    from spec_graph.generators.hf import default_dtype

    assert default_dtype("cpu") is resolve_dtype("auto", "cpu")


# -- int8 layers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [1, 3, KERNEL_ROWS + 9])  # the int8 kernel, then the dequantized matmul
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_linear_matches_the_float_layer(rows: int, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48, bias=True).to(dtype)
    q = Int8WeightLinear(linear)
    x = torch.randn(2, rows, 64, dtype=dtype)
    with torch.inference_mode():
        want, got = linear(x).float(), q(x)
    assert got.shape == (2, rows, 48)
    assert got.dtype == dtype
    assert (got.float() - want).abs().max() / want.abs().max() < 0.03
    assert q.qweight.dtype == torch.int8
    assert q.weight.shape == linear.weight.shape
    step = linear.weight.float().abs().max() / 127  # one int8 step of the row with the largest weight
    assert (q.weight.float() - linear.weight.float()).abs().max() <= 1.5 * step  # half a step + bf16 rounding


def test_quantize_linears_replaces_every_linear_and_keeps_the_original_untouched() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Sequential(nn.Linear(32, 8, bias=False)))
    first = model[0]
    assert isinstance(first, nn.Linear)
    before = first.weight.clone()
    out = precision.quantize(model, "int8", "cpu")
    assert out is model
    assert isinstance(model[0], Int8WeightLinear)
    assert isinstance(model[2][0], Int8WeightLinear)
    assert model[2][0].bias is None
    assert "int8" in repr(model[0])
    assert precision.quantize(nn.Linear(2, 2), "none", "cpu").__class__ is nn.Linear
    assert before.shape == (32, 16)
    assert quantize_linears(nn.ReLU()).__class__ is nn.ReLU


def test_schemes() -> None:
    assert precision.scheme_for("int8", "cpu") == "int8-weight"
    assert precision.scheme_for("int8", "cuda") == "int8-torchao-weight"
    assert precision.scheme_for("none", "cuda") is None
    with pytest.raises(ValueError, match="unknown quantization scheme 'int4'"):
        precision.apply_scheme(nn.Linear(2, 2), "int4")


def test_torchao_dynamic_scheme_runs_on_the_cpu() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64))
    x = torch.randn(3, 64)
    want = model(x).detach()
    precision.apply_scheme(model, "int8-torchao-dynamic")
    with torch.inference_mode():
        got = model(x)
    assert (got - want).abs().max() / want.abs().max() < 0.05


def test_missing_torchao_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(ImportError, match=r"needs the torchao package .*pip install 'torchao"):
        precision.apply_scheme(nn.Linear(2, 2), "int8-torchao-weight")


# -- where users give the names -------------------------------------------------------------------
def test_hf_generator_checks_names_before_loading() -> None:
    from spec_graph.generators.hf import HFGenerator

    with pytest.raises(ValueError, match=DTYPE_LIST):
        HFGenerator("smollm2-135m-instruct", dtype="float64")
    with pytest.raises(ValueError, match=QUANT_LIST):
        HFGenerator("smollm2-135m-instruct", quantization="int4")
    gen = HFGenerator("smollm2-135m-instruct", dtype="bfloat16", quantization="int8")
    assert gen.quantization == "int8"
    assert gen._model is None  # nothing loaded
    with pytest.raises(ValueError, match="applies to models loaded by name or path"):
        HFGenerator(nn.Linear(2, 2), tokenizer=object(), quantization="int8")  # type: ignore[arg-type]


def test_load_pretrained_checks_names_before_loading() -> None:
    from spec_graph.generators.hf import load_pretrained

    with pytest.raises(ValueError, match=QUANT_LIST):
        load_pretrained("/does/not/exist", quantization="int16")
    with pytest.raises(ValueError, match=DTYPE_LIST):
        load_pretrained("/does/not/exist", dtype="half")


def test_resolve_generator_checks_names_and_passes_them_on() -> None:
    from spec_graph.generators import ScriptedGenerator
    from spec_graph.generators.resolve import resolve_generator

    with pytest.raises(ValueError, match=DTYPE_LIST):
        resolve_generator("smollm2-135m-instruct", dtype="fp16")
    with pytest.raises(ValueError, match=QUANT_LIST):
        resolve_generator(ScriptedGenerator.from_responses(["x"]), quantization="q4")
    gen = resolve_generator("smollm2-135m-instruct", quantization="int8")
    assert gen.quantization == "int8"  # type: ignore[attr-defined]
    assert resolve_generator("smollm2-135m-instruct") is not gen  # the cache key holds the quantization


def test_chat_model_checks_names_at_construction() -> None:
    from spec_graph.chat_model import SpeculativeThinkingChatModel

    with pytest.raises(ValueError, match=DTYPE_LIST):
        SpeculativeThinkingChatModel(dtype="float64")
    with pytest.raises(ValueError, match=QUANT_LIST):
        SpeculativeThinkingChatModel(quantization="int4")
    llm = SpeculativeThinkingChatModel.from_model_ids(
        "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", dtype="bfloat16", quantization="int8"
    )
    small, target = llm._generators()  # generators only: no weights load
    assert small.quantization == target.quantization == "int8"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "bad"),
    [
        (["run", "--dtype", "float64", "q"], "argument --dtype: invalid choice: 'float64'"),
        (["run", "--quantize", "int4", "q"], "argument --quantize: invalid choice: 'int4'"),
        (["eval", "--dtype", "fp32"], "argument --dtype: invalid choice: 'fp32'"),
        (["eval", "--quantize", "int4"], "argument --quantize: invalid choice: 'int4'"),
    ],
)
def test_cli_rejects_unknown_values_with_status_2(
    argv: list[str], bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from spec_graph.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"spec-graph {argv[0]}: error: {bad}")
    assert "auto" in last or "int8" in last


def test_cli_error_has_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spec_graph", "eval", "--quantize", "int4"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # after argparse's usage lines
    assert re.fullmatch(
        r"spec-graph eval: error: argument --quantize: invalid choice: 'int4' \(choose from '?none'?, '?int8'?\)"
        r"( \(see spec-graph eval --help\))?",
        last,
    )


def test_eval_config_checks_and_records_the_settings(tmp_path: Path) -> None:
    from spec_graph.eval.harness import EvalConfig

    with pytest.raises(ValueError, match=f"invalid evaluation settings: unknown dtype 'fp32': {DTYPE_LIST}$"):
        EvalConfig(dtype="fp32")
    with pytest.raises(ValueError, match=QUANT_LIST):
        EvalConfig(quantization="int4")
    meta = EvalConfig(dtype="float32", quantization="int8").meta(3)
    assert (meta["dtype"], meta["resolved_dtype"], meta["quantization"]) == ("float32", "float32", "int8")
    assert EvalConfig().meta(1)["resolved_dtype"] == str(resolve_dtype("auto", "cpu")).removeprefix("torch.")


def test_eval_resume_compares_the_precision(tmp_path: Path) -> None:
    from spec_graph.eval.harness import EvalConfig, _check_resume

    old = EvalConfig(dtype="float32").meta(3)
    for key in ("dtype", "resolved_dtype", "quantization"):  # a run written before these settings existed
        old.pop(key)
    (tmp_path / "run.json").write_text(json.dumps(old))
    _check_resume(tmp_path, EvalConfig(dtype="float32").meta(3), overwrite=False)  # old runs were float32
    with pytest.raises(ValueError, match=r"quantization: 'none' -> 'int8'"):
        _check_resume(tmp_path, EvalConfig(dtype="float32", quantization="int8").meta(3), overwrite=False)
    with pytest.raises(ValueError, match=r"resolved_dtype: 'float32' -> 'bfloat16'"):
        _check_resume(tmp_path, EvalConfig(dtype="bfloat16").meta(3), overwrite=False)


def test_eval_cli_applies_the_settings_to_both_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from spec_graph.cli import evaluate as cli
    from spec_graph.eval import harness
    from spec_graph.eval.systems import Generation, SampleOptions

    loads: list[tuple[str, dict[str, Any]]] = []

    class Echo:
        def __init__(self, name: str) -> None:
            self.name = name

        def prepare(self) -> None:
            pass

        def generate(self, messages: Any, options: SampleOptions) -> Generation:
            return Generation("\\boxed{0}", "eos", {"small": 1})

    def fake_resolve(model: Any, **load: Any) -> Any:
        loads.append((model, load))
        return model

    monkeypatch.setattr("spec_graph.generators.resolve.resolve_generator", fake_resolve)
    monkeypatch.setattr(harness, "make_system", lambda name, small, target, overrides=None: Echo(name))
    argv = ["--limit", "1", "--systems", "small,target", "--quantize", "int8", "--dtype", "bfloat16"]
    assert cli.main([*argv, "--out", str(tmp_path), "--no-progress", "--no-plots"]) == 0
    assert [load for _, load in loads] == [{"dtype": "bfloat16", "quantization": "int8"}] * 2
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["dtype"], run["quantization"]) == ("bfloat16", "int8")
    assert "--quantize int8 --dtype bfloat16" in run["extra"]["command"]
    assert "bfloat16, int8 weights." in (tmp_path / "results.md").read_text()
    capsys.readouterr()
