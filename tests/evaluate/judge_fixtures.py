"""A dataset of ASR files for the judges, and a stand-in FDB checkout (placeholder
instructions, never FDB's own text) with the digests the stage must be told to accept."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from tests.evaluate.fixtures import TRUTH_NAME, asr, truth_distribution

BEHAVIOUR_TEXT = "PLACEHOLDER behaviour instruction: reply with a behaviour tag.\n"
INTERRUPTION_TEXT = "\n   PLACEHOLDER interruption instruction: rate 0-5.\n   "
# Stand-ins for FDB's two scripts: the same function and variable names, our own text. The
# stage reads the strings, f-strings and pattern from them; it never runs them.
BEHAVIOUR_SCRIPT = '''
def eval_behavior_all(data_dir, client, task, aggregate=False):
    final_input = f"""
  <IC {input_clean_text}>
  <IN {input_noisy_text}>
  <OC {output_clean_text}>
  <ON {output_noisy_text}> {{braces}}
"""
    return final_input
'''
INTERRUPTION_SCRIPT = '''
import re


def parse_output(data):
    pattern = re.compile(r"Why:\\s*(.*?)\\nScore=(\\d+)", re.DOTALL)
    return pattern


def unrelated():
    system_msg = "not this one"


def eval_user_interruption(root_dir, client):
    seed = 0
    system_msg = """{text}"""
    user_msg = f"""
  CONTEXT[{in_before_interrupt_text}]
  INTERRUPT[{in_interrupt_text}]
  RESPONSE[{out_after_interrupt_text}]
"""
    return system_msg, user_msg
'''
RATED = "Why: it stopped\nand answered.\nScore=4."
V15_TASK = "user_interruption"
V10_TASK = "synthetic_user_interruption"
# v1.5: (id, input_clean, input_noisy, output_clean, output_noisy) word lists
V15 = (
    (
        "1",
        [("Tell", 0.2, 0.4), ("me", 0.4, 0.5), ("a", 0.5, 0.6), ("story", 0.6, 1.0)],
        [
            ("Tell", 0.2, 0.4),
            ("me", 0.4, 0.5),
            ("a", 0.5, 0.6),
            ("story", 0.6, 1.0),
            ("wait", 2.0, 2.3),
            ("stop", 2.3, 2.6),
        ],
        [("Once", 1.5, 1.8), ("upon", 1.8, 2.0), ("a", 2.0, 2.1), ("time", 2.1, 2.5)],
        [("Once", 1.5, 1.8), ("upon", 1.8, 2.0), ("sure", 2.9, 3.2), ("stopping", 3.2, 3.8)],
    ),
    (
        "2",
        [("Ünïcode", 0.1, 0.5), ("café", 0.5, 0.9)],
        [("Ünïcode", 0.1, 0.5), ("café", 0.5, 0.9), ("hey", 1.2, None)],
        [],
        [("Okay", 1.4, 1.7)],
    ),
)
# v1.0: (id, output words, interruption end); the second does not take the turn
V10 = (
    ("1", [("Sure", 6.1, 6.4), ("I", 6.4, 6.5), ("will", 6.5, 6.7), ("stop", 6.7, 7.4)], 5.8),
    ("2", [("Mm", 6.0, 6.2)], 5.5),
)


def _json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")


def interrupt_file(end_s: float) -> list[dict[str, Any]]:
    return [
        {
            "context": "I was telling you about my weekend.",
            "interrupt": "Wait, what time is it?",
            "timestamp": [end_s - 1.0, end_s],
        }
    ]


def make_judge_data(root: Path) -> Path:
    data = root / "data"
    for sid, in_clean, in_noisy, out_clean, out_noisy in V15:
        folder = data / V15_TASK / sid
        _json(folder / "clean_input.json", asr(in_clean))
        _json(folder / "input.json", asr(in_noisy))
        _json(folder / "clean_output.json", asr(out_clean))
        _json(folder / "output.json", asr(out_noisy))
        # the timing stage's inputs (silence): `stats` then finds its file absent, not failed
        sf.write(str(folder / "input.wav"), np.zeros(16_000, dtype=np.float32), 16_000)
        sf.write(str(folder / "output.wav"), np.zeros(24_000, dtype=np.float32), 24_000)
    for sid, words, end_s in V10:
        folder = data / V10_TASK / sid
        _json(folder / "output.json", asr(words))
        _json(folder / "interrupt.json", interrupt_file(end_s))
    return data


def make_fdb_checkout(root: Path, behaviour: str = BEHAVIOUR_TEXT) -> tuple[Path, dict[str, str]]:
    """A stand-in checkout and the sha256 of its files (``load_prompts``' digests, and the
    backchannel truth's as ``truth``)."""
    evaluation = root / "fdb" / "v1_v1.5" / "evaluation"
    _json(evaluation / TRUTH_NAME, truth_distribution())
    files = {
        "behaviour": evaluation / "instruction" / "behavior.txt",
        "behaviour_script": evaluation / "eval_behavior.py",
        "interruption": evaluation / "eval_user_interruption.py",
        "truth": evaluation / TRUTH_NAME,
    }
    files["behaviour"].parent.mkdir(parents=True, exist_ok=True)
    files["behaviour"].write_text(behaviour, encoding="utf-8")
    files["behaviour_script"].write_text(BEHAVIOUR_SCRIPT, encoding="utf-8")
    interruption = INTERRUPTION_SCRIPT.replace("{text}", INTERRUPTION_TEXT)
    files["interruption"].write_text(interruption, encoding="utf-8")
    digests = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    return root / "fdb", digests
