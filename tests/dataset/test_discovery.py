from pathlib import Path

import pytest

from pipeline.dataset.discovery import KNOWN_TASKS, DatasetError, discover, select_tasks


def make_tree(root: Path, layout: dict[str, list[str]]) -> None:
    for task, ids in layout.items():
        for sample_id in ids:
            (root / task / sample_id).mkdir(parents=True)
            (root / task / sample_id / "input.wav").write_bytes(b"")


def test_default_is_every_known_task_present_in_known_order(tmp_path: Path) -> None:
    make_tree(tmp_path, {"background_speech": ["1"], "user_interruption": ["1"], "notes": ["x"]})
    assert select_tasks(tmp_path, ()) == ["user_interruption", "background_speech"]


def test_natural_deterministic_order_and_paths(tmp_path: Path) -> None:
    make_tree(tmp_path, {"user_backchannel": ["10", "2", "1", "a3", "a10"]})
    (tmp_path / "user_backchannel" / ".hidden").mkdir()
    samples = discover(tmp_path, prefix="clean_")
    assert [s.sample_id for s in samples] == ["1", "2", "10", "a3", "a10"]
    s = samples[0]
    assert s.input_path == tmp_path / "user_backchannel" / "1" / "clean_input.wav"
    assert s.output_path.name == "clean_output.wav"
    assert s.text_path.name == "clean_output_text.json"
    assert s.key == "user_backchannel/1"


def test_v10_tasks_are_known(tmp_path: Path) -> None:
    make_tree(tmp_path, {"candor_turn_taking": ["3"], "icc_backchannel": ["1"]})
    assert [s.task for s in discover(tmp_path)] == ["candor_turn_taking", "icc_backchannel"]
    assert "synthetic_user_interruption" in KNOWN_TASKS


def test_sample_without_input_is_still_listed(tmp_path: Path) -> None:
    (tmp_path / "talking_to_other" / "7").mkdir(parents=True)
    samples = discover(tmp_path)
    assert len(samples) == 1 and not samples[0].input_path.exists()


def test_requested_tasks_keep_order_and_dedupe(tmp_path: Path) -> None:
    make_tree(tmp_path, {"user_interruption": ["1"], "background_speech": ["1"]})
    got = select_tasks(tmp_path, ["background_speech", "user_interruption", "background_speech"])
    assert got == ["background_speech", "user_interruption"]


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no known task folder"):
        discover(tmp_path)
    make_tree(tmp_path, {"user_interruption": ["1"]})
    with pytest.raises(DatasetError, match="unknown task 'user_interuption'"):
        discover(tmp_path, ["user_interuption"])
    with pytest.raises(DatasetError, match="background_speech does not exist"):
        discover(tmp_path, ["background_speech"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        discover(tmp_path / "file")


def test_a_root_missing_inside_an_apptainer_image_names_the_bind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APPTAINER_CONTAINER", raising=False)
    monkeypatch.delenv("SINGULARITY_CONTAINER", raising=False)
    with pytest.raises(DatasetError) as plain:
        discover(tmp_path / "nope")
    assert "--bind" not in str(plain.value)
    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/cpu.sif")
    with pytest.raises(DatasetError, match=r"does not exist.*apptainer run --bind DIR"):
        discover(tmp_path / "nope")
