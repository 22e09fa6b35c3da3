"""``spec-graph run``: bad options give one line and exit status 2, before any model loads."""

from __future__ import annotations

import pytest

from spec_graph.cli import build_parser, main
from spec_graph.cli.run import PAIR_DEFAULTS
from spec_graph.models import DEFAULT_PAIR, PAIRS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "-1"], "argument --temperature: expected a temperature between 0"),
        (["--max-new-tokens", "0"], "argument --max-new-tokens: expected a whole number >= 1"),
        (["--policy", "bogus"], "argument --policy: unknown policy 'bogus'"),
        (["--policy", "uncertainty:2"], "argument --policy: Value error, a top1 threshold is a probability"),
        (["--pair", "huge"], "argument --pair: invalid choice: 'huge'"),
        (["--dtype", "int3"], "argument --dtype: invalid choice: 'int3'"),
        (["--quantize", "int4"], "argument --quantize: invalid choice: 'int4'"),
    ],
)
def test_bad_option_is_one_line_and_exit_status_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", *args, "What is 2 + 2?"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "bogus"], "unknown preset 'bogus'"),
        (["--preset", "/no/such/config.yml"], "config file '/no/such/config.yml' does not exist"),
    ],
)
def test_bad_preset_is_one_line_and_exit_status_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *args, "What is 2 + 2?"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spec-graph run: error:") and message in err[0]


def test_pairs_and_their_presets() -> None:
    args = build_parser().parse_args(["run", "q"])
    assert args.pair == DEFAULT_PAIR == "qwen"
    assert PAIRS["qwen"] == ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
    assert PAIRS["tiny"] == ("smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")
    assert set(PAIR_DEFAULTS) == set(PAIRS)
    tiny = build_parser().parse_args(["run", "--pair", "tiny", "--policy", "uncertainty:0.5", "q"])
    assert tiny.pair == "tiny" and tiny.policy == "uncertainty:0.5"
