"""One sample on one server: skip if complete, load, stream with retries, write, record."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from pipeline.config import InferSettings, flag_for
from pipeline.dataset.audio import InputAudio, InputAudioError, load_input
from pipeline.dataset.discovery import Sample
from pipeline.digest import file_sha256
from pipeline.results.locks import SampleLock
from pipeline.results.outputs import (
    align_output,
    inspect_outputs,
    remove_leftovers,
    set_aside_previous,
    set_aside_stale,
    write_outputs,
)
from pipeline.results.records import Attempt, RunRecords, SampleRecord
from pipeline.run import fingerprint
from pipeline.run.slots import ServerSlot
from pipeline.stream.protocol import FRAME_SECONDS, PROFILE_SPECS, Float32Array, session_url
from pipeline.stream.session import (
    ConnectError,
    ProfileMismatch,
    SessionError,
    SessionResult,
    Timeouts,
    run_session,
)

log = logging.getLogger("pipeline")
RETRY_WAIT_MAX_S = 30


Stage = Literal["connect", "session"]


def connect_policy(s: InferSettings, rec: SampleRecord) -> AsyncRetrying:
    """A refused connection or one closed before the handshake: reconnect with backoff."""
    return AsyncRetrying(
        stop=stop_after_attempt(s.connect_retries + 1),
        wait=wait_exponential(multiplier=s.retry_backoff_s, max=RETRY_WAIT_MAX_S),
        retry=retry_if_exception_type(ConnectError),
        before_sleep=_note_retry("connect", rec),
        reraise=True,
    )


def session_policy(s: InferSettings, rec: SampleRecord) -> AsyncRetrying:
    """A session that failed after its handshake: a new session, at once, a few times."""
    return AsyncRetrying(
        stop=stop_after_attempt(s.sample_retries + 1),
        retry=retry_if_exception(
            lambda e: (
                isinstance(e, SessionError) and not isinstance(e, ConnectError | ProfileMismatch)
            )
        ),
        before_sleep=_note_retry("session", rec),
        reraise=True,
    )


def _note_retry(stage: Stage, rec: SampleRecord) -> Callable[[RetryCallState], None]:
    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, SessionError)  # the policies retry nothing else
        rec.attempts.append(Attempt(stage, state.attempt_number, exc.kind, str(exc)))
        log.warning(
            "%s: %s attempt %d failed (%s); retrying", rec.key, stage, state.attempt_number, exc
        )

    return note


def with_hint(exc: SessionError) -> str:
    """The session's reason plus the setting that governs it, where one does."""
    hints = {
        "handshake_timeout": f"raise {flag_for('handshake_timeout_s')} or check the server",
        "stall": f"raise {flag_for('stall_timeout_s')} if the server is this slow",
        "profile_mismatch": f"pass {flag_for('profile')} moshi for an upstream moshi server",
    }
    hint = hints.get(exc.kind)
    return f"{exc.reason}; {hint}" if hint else exc.reason


def _lag_fields(result: SessionResult) -> dict[str, float] | None:
    lag = result.lag
    if lag is None:
        return None
    return {
        "p50_s": round(lag.p50_s, 4),
        "p95_s": round(lag.p95_s, 4),
        "max_s": round(lag.max_s, 4),
    }


class SampleRunner:
    """Streams samples (and the warm-up) to server slots with one run's settings."""

    def __init__(self, settings: InferSettings, records: RunRecords) -> None:
        self.settings = settings
        self.records = records
        # what determines the outputs (fingerprint.output_settings); set once servers are known
        self.output_settings: dict[str, Any] = fingerprint.output_settings(
            settings, settings.voice_prompt, None
        )
        self.spec = PROFILE_SPECS[settings.profile]
        self.timeouts = Timeouts(
            connect_s=settings.connect_timeout_s,
            handshake_s=settings.handshake_timeout_s,
            stall_s=settings.stall_timeout_s,
        )

    async def session(
        self,
        slot: ServerSlot,
        frames: Float32Array,
        text_prompt: str,
        *,
        realtime: bool = False,
        rec: SampleRecord | None = None,
    ) -> SessionResult:
        """One session on ``slot``; counts it on the slot at the handshake (and notes its index
        in ``rec``). The warm-up and every sample go through here."""
        s = self.settings
        url = session_url(slot.url, s.profile, s.voice_prompt, text_prompt)

        def handshake() -> None:
            if rec is not None:
                rec.session_index = slot.sessions
            slot.sessions += 1

        return await run_session(
            url,
            frames,
            self.spec,
            realtime=realtime,
            encoder=s.encoder,
            timeouts=self.timeouts,
            insecure=s.insecure,
            on_handshake=handshake,
        )

    async def _stream(
        self, slot: ServerSlot, sample: Sample, audio: InputAudio, rec: SampleRecord
    ) -> SessionResult:
        """The sample's sessions under both retry policies. ServerGone (from ``slot.ready``)
        is neither policy's to retry: it leaves at once."""
        prompt = self.settings.text_prompt_for(sample.task)
        realtime = self.settings.pace == "realtime"
        async for outer in session_policy(self.settings, rec):
            with outer:
                async for inner in connect_policy(self.settings, rec):
                    with inner:
                        await slot.ready()
                        return await self.session(
                            slot, audio.frames(), prompt, realtime=realtime, rec=rec
                        )
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(self, sample: Sample, slot: ServerSlot) -> SampleRecord:
        """The sample's record; raises ServerGone when its server is gone for good."""
        t0 = time.perf_counter()
        rec = SampleRecord.of(sample, slot.name)
        try:
            sample.output_folder.mkdir(parents=True, exist_ok=True)  # an output root's mirror
            with SampleLock(sample) as held:
                if not held:
                    rec.status, rec.error = "held", "another live run holds this sample's lock"
                    log.warning("%s: another run is on it; left to that run", sample.key)
                else:
                    await self._run_locked(slot, sample, rec)
        except OSError as exc:  # the lock file: a folder that is gone or not writable
            rec.fail("write", f"cannot write in {sample.output_folder}: {exc}")
        rec.wall_s = round(time.perf_counter() - t0, 3)
        return rec

    async def _run_locked(self, slot: ServerSlot, sample: Sample, rec: SampleRecord) -> None:
        removed = remove_leftovers(sample)
        if removed:
            log.info("%s: removed %d leftover temporary file(s)", sample.key, len(removed))
        settings_doc = fingerprint.for_task(self.output_settings, self.settings, sample.task)
        settings_sha256 = fingerprint.digest(settings_doc)
        try:
            if self._skip(sample, rec, settings_sha256):
                rec.status = "skipped"
            else:
                await self._produce(slot, sample, rec, settings_doc, settings_sha256)
                rec.status, rec.error_kind, rec.error = "ok", None, None
        except InputAudioError as exc:
            rec.fail("input", str(exc))
        except SessionError as exc:
            rec.fail(exc.kind, with_hint(exc))
            rec.frames_sent, rec.frames_received = exc.frames_sent, exc.frames_received
        except OSError as exc:  # writing outputs: disk full, permissions
            rec.fail("write", f"cannot write outputs in {sample.output_folder}: {exc}")

    def _skip(self, sample: Sample, rec: SampleRecord, settings_sha256: str) -> bool:
        """Complete and not to be redone. An output of other settings is set aside and redone
        (or kept, when the settings ask); an incomplete or stale one is set aside."""
        if not sample.input_path.is_file():
            return False  # loading it fails the sample with the reason
        found = inspect_outputs(sample, file_sha256(sample.input_path), settings_sha256)
        if found.state != "incomplete" and self.settings.overwrite:
            return False  # asked for: redone in place, whatever made the outputs
        if found.state == "complete":
            return True
        if found.state == "other_settings":
            if self.settings.keep_other_settings:
                rec.note = "kept: other settings"
                return True
            moved = set_aside_previous(sample, found.settings_sha256)
            rec.note = "redone: settings changed"
            log.warning(
                "%s: its outputs were made with other settings; moved them to %s and redoing",
                sample.key,
                moved.name,
            )
            return False
        stale = set_aside_stale(sample)  # a partial, stale or foreign output must not be scored
        if stale is not None:
            log.warning("%s: moved an incomplete or stale output to %s", sample.key, stale.name)
        return False

    async def _produce(
        self,
        slot: ServerSlot,
        sample: Sample,
        rec: SampleRecord,
        settings_doc: dict[str, Any],
        settings_sha256: str,
    ) -> None:
        audio = load_input(sample.input_path)
        rec.duration_s = round(audio.duration_s, 3)
        rec.frames_expected = self.spec.expected_output_frames(audio.n_frames)
        result = await self._stream(slot, sample, audio, rec)
        rec.frames_sent, rec.frames_received = result.frames_sent, result.frames_received
        rec.lag = _lag_fields(result)
        rec.handshake_s = round(result.handshake_s, 3)
        rec.stream_s = round(result.stream_s, 3)
        rec.realtime_factor = round(result.stream_s / audio.duration_s, 3)
        prompted = self.spec.sends_prompts
        write_outputs(
            sample,
            align_output(result.audio, audio.length),
            result.pieces,
            {
                "run_id": self.records.run_id,
                "input_sha256": audio.sha256,
                "profile": self.settings.profile,
                "server": slot.url,
                "voice_prompt": self.settings.voice_prompt if prompted else None,
                "text_prompt": self.settings.text_prompt_for(sample.task) if prompted else None,
                "session_index": rec.session_index,
                "frames_sent": result.frames_sent,
                "frames_received": result.frames_received,
                "frame_seconds": FRAME_SECONDS,
                "settings": settings_doc,
                "settings_sha256": settings_sha256,
            },
        )
