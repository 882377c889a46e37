"""Checkpoints of the sidecar state in ``--state-dir``, written at each window close.

What survives a crash: per (model, version) the reference profile and its source,
the closed windows (sketches), the drift verdicts (so hysteresis does not re-alert),
the hook's per-instance drop counters, the pending predictions of the label join
(when the joiner can serialise itself) and the totals. What does not: the open window.

Format: one msgpack map (``v`` = :data:`FORMAT_VERSION`), written to a temporary file,
fsynced, then atomically renamed over ``state.msgpack`` (so a kill at any moment leaves
either the previous or the new checkpoint, never a torn one). A checkpoint that cannot
be read is moved aside to ``state.msgpack.corrupt`` and the sidecar starts empty, with a
warning: a bad file must never keep the service down.

Blocking: :meth:`Checkpointer.save` does file I/O; call it off the event loop.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from typing import Any

import msgpack

from driftcar.sidecar.state import ClosedWindow, StateStore

__all__ = ["Checkpointer", "FORMAT_VERSION", "FILENAME"]

log = logging.getLogger("driftcar.sidecar.checkpoint")
FORMAT_VERSION = 2
FILENAME = "state.msgpack"
#: refuse to read a checkpoint larger than this (a hostile or broken file must not exhaust memory)
MAX_BYTES = 2 * 1024**3


class Checkpointer:
    """Save/restore a :class:`StateStore` in ``directory``. Not thread-safe: one writer (the evaluator)."""

    def __init__(self, directory: str, store: StateStore):
        self.directory = directory
        self.store = store
        self.path = os.path.join(directory, FILENAME)
        self.saves = 0
        self.last_bytes = 0
        os.makedirs(directory, exist_ok=True)

    # ------------------------------------------------------------------ save
    def snapshot(self) -> dict:
        store = self.store
        models = []
        with store.lock:
            for state in store.models.values():
                if state.profile is None:
                    profile_blob = None
                else:
                    profile_blob = getattr(state, "_profile_blob", None)
                    if profile_blob is None or getattr(state, "_profile_blob_of", None) is not state.profile:
                        profile_blob = state.profile.to_bytes()
                        state._profile_blob, state._profile_blob_of = profile_blob, state.profile
                windows = [[w.start_ns, w.end_ns, w.rows, w.blob()] for w in list(state.closed)]
                cumulative = None
                if state.cumulative is not None:
                    cumulative = zlib.compress(state.cumulative.to_bytes(), 1)
                joiner_blob = None
                to_bytes = getattr(state.joiner, "to_bytes", None)
                if to_bytes is not None:
                    try:
                        joiner_blob = to_bytes()
                    except Exception:  # optional: the label buffer is best effort
                        joiner_blob = None
                models.append({
                    "model": state.model,
                    "version": state.version,
                    "profile": profile_blob,
                    "reference_source": state.reference_source,
                    "reference_file": state.reference_file,
                    "windows": windows,  # zlib(WindowSketch.to_bytes())
                    "cumulative": cumulative,
                    "verdicts": dict(state.verdicts),
                    "hook_dropped": dict(state.hook_dropped),
                    "rows_total": state.rows_total,
                    "batches_total": state.batches_total,
                    "joiner": joiner_blob,
                })
        return {"v": FORMAT_VERSION, "saved_unix_nano": time.time_ns(), "window_s": store.config.window_s,
                "models": models}

    def save(self) -> int:
        """Write the checkpoint atomically; returns its size in bytes."""
        data = msgpack.packb(self.snapshot(), use_bin_type=True)
        tmp = f"{self.path}.tmp.{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        try:
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
        self.saves += 1
        self.last_bytes = len(data)
        return len(data)

    # ------------------------------------------------------------------ restore
    def restore(self) -> int:
        """Load the checkpoint into the (empty) store; returns the number of models restored."""
        if not os.path.exists(self.path):
            return 0
        try:
            size = os.path.getsize(self.path)
            if size > MAX_BYTES:
                raise ValueError(f"checkpoint of {size} bytes is larger than {MAX_BYTES}")
            with open(self.path, "rb") as fh:
                data = msgpack.unpackb(fh.read(), raw=False, strict_map_key=False,
                                       ext_hook=_refuse_ext)
            if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
                raise ValueError(f"unknown checkpoint format {data.get('v') if isinstance(data, dict) else None!r}")
            restored = self._load(data)
        except Exception as exc:
            aside = self.path + ".corrupt"
            log.warning("cannot restore the checkpoint %s (%s: %s); moved to %s, starting empty",
                        self.path, type(exc).__name__, exc, aside)
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            with self.store.lock:
                self.store.models.clear()
            return 0
        log.info("restored %d model(s) from %s", restored, self.path)
        return restored

    def _load(self, data: dict[str, Any]) -> int:
        from driftcar.stats import Profile, WindowSketch

        store = self.store
        count = 0
        with store.lock:
            for entry in data.get("models", []):
                state = store.get_or_create(str(entry["model"]), str(entry["version"]))
                if entry.get("profile") is not None and state.reference_source != "file":
                    state.set_profile(Profile.from_bytes(entry["profile"]), entry.get("reference_source") or "batch",
                                      entry.get("reference_file"))
                if state.profile is not None and entry.get("reference_source") == state.reference_source:
                    for start, end, rows, blob in entry.get("windows", []):
                        # decoded lazily; check it is a sketch of this profile now, not at first use
                        window = ClosedWindow(int(start), int(end), int(rows), profile=state.profile, blob=blob)
                        state.closed.append(window)
                    if state.closed:
                        state.closed[-1].sketch  # noqa: B018 (validates one blob eagerly)
                    if entry.get("cumulative"):
                        state.cumulative = WindowSketch.from_bytes(zlib.decompress(entry["cumulative"]),
                                                                   state.profile)
                    state.verdicts = {str(k): bool(v) for k, v in (entry.get("verdicts") or {}).items()}
                state.hook_dropped = {str(k): int(v) for k, v in (entry.get("hook_dropped") or {}).items()}
                state.rows_total = int(entry.get("rows_total", 0))
                state.batches_total = int(entry.get("batches_total", 0))
                blob = entry.get("joiner")
                from_bytes = getattr(type(state.joiner), "from_bytes", None)
                if blob and from_bytes is not None:
                    try:
                        state.joiner = from_bytes(blob)
                    except Exception as exc:
                        log.warning("label buffer of %s@%s not restored: %s", state.model, state.version, exc)
                count += 1
        return count


def _refuse_ext(code: int, data: bytes):
    raise ValueError("extension types are not allowed in a checkpoint")
