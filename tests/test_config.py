from pathlib import Path

import pytest

from pipeline.cli.options import build_parser, settings_values
from pipeline.config import (
    DEFAULT_TEXT_PROMPT,
    DEFAULT_VOICE_PROMPT,
    ConfigError,
    InferSettings,
    resolve_bench_settings,
    resolve_settings,
)
from pipeline.stream.protocol import PromptError, require_prompt


def parse(*argv: str) -> tuple[dict[str, object], Path | None]:
    ns = build_parser().parse_args(["infer", *argv])
    return settings_values(ns), ns.config


def test_defaults() -> None:
    s = resolve_settings(*parse())
    assert s == InferSettings()
    assert (s.voice_prompt, s.text_prompt) == (DEFAULT_VOICE_PROMPT, DEFAULT_TEXT_PROMPT)
    assert (s.profile, s.pace, s.prefix, s.overwrite) == ("personaplex", "none", "", False)
    assert s.handshake_timeout_s >= 120  # a loaded GPU server may take minutes


def test_command_line_beats_file_beats_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'root = "data"\ntasks = ["user_interruption"]\nprefix = "clean_"\noverwrite = true\n'
        'voice = "NATM1.pt"\ntext_prompt = "file prompt"\nstall_timeout_s = 5\n'
        '[text_prompts]\nuser_interruption = "You are a wise and friendly teacher."\n'
    )
    s = resolve_settings(*parse("--config", str(cfg), "--prefix", "", "--text-prompt", "cli"))
    assert s.root == tmp_path / "data"  # relative to the file
    assert s.tasks == ("user_interruption",)
    assert s.prefix == ""  # command line wins
    assert s.overwrite is True and s.voice_prompt == "NATM1.pt"  # file wins over defaults
    assert s.text_prompt == "cli"
    assert s.stall_timeout_s == 5.0
    assert s.text_prompt_for("user_interruption") == "You are a wise and friendly teacher."
    assert s.text_prompt_for("background_speech") == "cli"
    assert s.handshake_timeout_s == InferSettings().handshake_timeout_s


def test_per_task_prompts_merge_with_file(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('[text_prompts]\nicc_backchannel = "from file"\nuser_backchannel = "file b"\n')
    s = resolve_settings(*parse("--config", str(cfg), "--task-text-prompt", "user_backchannel=cli"))
    assert s.text_prompts == {"icc_backchannel": "from file", "user_backchannel": "cli"}
    with pytest.raises(ConfigError, match="unknown task 'user_backchanel'"):
        resolve_settings(*parse("--task-text-prompt", "user_backchanel=typo"))


def test_server_spellings_and_repeatable_task() -> None:
    for flag in ("--server", "--server-ip", "--server_ip"):
        values, _ = parse(flag, "gpu1:9000", "--task", "a", "--task", "b")
        assert values["server"] == "gpu1:9000" and values["tasks"] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("bogus = 1\n", "unknown key 'bogus'"),
        ("overwrite = 'yes'\n", "overwrite must be true or false"),
        ("stall_timeout_s = 'x'\n", "stall_timeout_s must be a number"),
        ("profile = 'gpt'\n", "profile 'gpt' is unknown"),
        ("text_prompt = '  '\n", "empty"),
        ("root = \n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        resolve_settings({}, cfg)


def test_missing_file_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_settings({}, Path("/nonexistent/run.toml"))
    with pytest.raises(ConfigError, match="empty text prompt"):
        resolve_settings(*parse("--text-prompt", ""))
    # the moshi profile sends no prompt, so an empty one is fine there
    assert resolve_settings(*parse("--text-prompt", "", "--profile", "moshi")).text_prompt == ""
    with pytest.raises(ConfigError, match="must be > 0"):
        resolve_settings(*parse("--stall-timeout", "0"))


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (("--text-prompt", " "), "text_prompt"),
        (("--task-text-prompt", "user_interruption="), "text_prompts.user_interruption"),
        (("--voice", ""), "voice_prompt"),
    ],
)
def test_empty_prompts_break_the_protocol_rule_and_name_the_key(
    argv: tuple[str, ...], key: str
) -> None:
    with pytest.raises(PromptError) as rule:
        require_prompt(key, "")
    with pytest.raises(ConfigError, match="empty") as exc:
        resolve_settings(*parse(*argv))
    assert str(exc.value).startswith(f"{key} is empty")
    assert str(rule.value) in str(exc.value)  # the protocol's words, plus the flag to fix it
    assert "give a non-empty --" in str(exc.value)


def test_the_prompt_rule_is_the_protocols(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[tuple[str, str]] = []

    def rule(name: str, value: str) -> None:
        checked.append((name, value))
        if value == "forbidden":
            raise PromptError(f"{name} says no")

    monkeypatch.setattr("pipeline.config.require_prompt", rule)
    s = resolve_settings(*parse("--task-text-prompt", "user_backchannel=b"))
    assert sorted(checked) == [
        ("text_prompt", s.text_prompt),
        ("text_prompts.user_backchannel", "b"),
        ("voice_prompt", s.voice_prompt),
    ]
    with pytest.raises(ConfigError, match=r"text_prompts\.background_speech says no"):
        resolve_settings(*parse("--task-text-prompt", "background_speech=forbidden"))


def test_toml_aliases_and_bench_choices(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('voice = "NATM0.pt"\nserver_ip = "h:1"\ntask = "user_interruption"\n')
    s = resolve_settings({}, cfg)
    assert (s.voice_prompt, s.server, s.tasks) == ("NATM0.pt", "h:1", ("user_interruption",))
    cfg.write_text('runtime = "podman"\n')
    with pytest.raises(ConfigError, match="runtime 'podman' is unknown"):
        resolve_bench_settings({}, cfg)
    cfg.write_text('prefix = "dirty_"\n')
    with pytest.raises(ConfigError, match="prefix 'dirty_' is unknown"):
        resolve_settings({}, cfg)


@pytest.mark.parametrize("command", ["infer", "bench"])
def test_a_voice_that_names_no_voice_file_is_refused_by_both_commands(command: str) -> None:
    from pipeline.config import resolve_bench_settings

    resolve = resolve_settings if command == "infer" else resolve_bench_settings
    values = settings_values(build_parser().parse_args([command, "--voice", "NATF2"]))
    with pytest.raises(ConfigError, match=r"'NATF2' is not a voice file.*\.pt"):
        resolve(values)
    # a name the server's folder may hold passes (only `bench`, which serves it, checks it
    # exists); the moshi profile sends no voice at all
    ok = settings_values(build_parser().parse_args([command, "--voice", "mine.WAV"]))
    assert resolve(ok).voice_prompt == "mine.WAV"
    moshi = settings_values(
        build_parser().parse_args([command, "--voice", "x", "--profile", "moshi"])
    )
    assert resolve(moshi).profile == "moshi"


def test_hf_home_beats_the_built_in_cache_and_loses_to_an_explicit_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clusters point HF_HOME at scratch: a run that names no cache uses it; --hf-cache or the
    file's hf_cache still win over it."""
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    assert resolve_bench_settings({}).hf_cache == Path("~/.cache/huggingface").expanduser()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # as huggingface_hub reads it
    assert resolve_bench_settings({}).hf_cache == tmp_path / "xdg" / "huggingface"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "scratch"))
    assert resolve_bench_settings({}).hf_cache == tmp_path / "scratch"
    cfg = tmp_path / "run.toml"
    cfg.write_text('hf_cache = "from-file"\n')
    assert resolve_bench_settings({}, cfg).hf_cache == tmp_path / "from-file"
    given = {"hf_cache": str(tmp_path / "given")}
    assert resolve_bench_settings(given, cfg).hf_cache == tmp_path / "given"


@pytest.mark.parametrize("server_args", [["--device=cuda"], ["--device", "cuda:1"]])
def test_a_cpu_server_asked_for_another_device_is_a_usage_error(server_args: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"gpus 'none' runs a server on the CPU.*--device cuda"):
        resolve_bench_settings({"gpus": "none", "server_args": server_args})
    ok = resolve_bench_settings({"gpus": "none", "server_args": ["--device=cpu"]})
    assert ok.server_device() == "cpu"
    assert resolve_bench_settings({"gpus": "0", "server_args": server_args}).server_device()
