from pathlib import Path

import pytest

from pipeline.dataset.discovery import KNOWN_TASKS, DatasetError, Sample, discover, select_tasks


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
    assert s.key == "user_backchannel/1 (clean_)"  # unique beside the main pass
    assert samples[0].key != Sample("user_backchannel", "1", s.folder).key


def test_both_runs_two_passes_per_v15_folder_and_one_per_v10_folder(tmp_path: Path) -> None:
    make_tree(tmp_path, {"user_backchannel": ["2", "1"], "icc_backchannel": ["7"]})
    got = [(s.task, s.sample_id, s.prefix) for s in discover(tmp_path, prefix="both")]
    assert got == [
        ("user_backchannel", "1", ""),
        ("user_backchannel", "1", "clean_"),
        ("user_backchannel", "2", ""),
        ("user_backchannel", "2", "clean_"),
        ("icc_backchannel", "7", ""),  # v1.0 has no clean input
    ]


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


def test_an_output_root_mirrors_the_dataset_tree(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    make_tree(data, {"user_backchannel": ["1"]})
    (sample,) = discover(data, output_root=out)
    assert sample.input_path == data / "user_backchannel" / "1" / "input.wav"
    assert sample.output_path == out / "user_backchannel" / "1" / "output.wav"
    assert sample.text_path == out / "user_backchannel" / "1" / "output_text.json"
    assert sample.key == "user_backchannel/1"  # the same sample, wherever its outputs go
    (beside,) = discover(data)
    assert beside.output_folder == beside.folder


@pytest.mark.parametrize("inside", [".", "user_backchannel/out"])
def test_an_output_root_inside_the_dataset_is_refused(tmp_path: Path, inside: str) -> None:
    make_tree(tmp_path, {"user_backchannel": ["1"]})
    with pytest.raises(DatasetError, match="lies inside the dataset root"):
        discover(tmp_path, output_root=tmp_path / inside)


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
