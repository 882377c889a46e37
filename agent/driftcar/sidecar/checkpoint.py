"""Checkpoints of the sidecar state in ``--state-dir``, written at each window close.

What survives a crash: per (model, version) the reference profile and its source,
the closed windows (sketches), the cumulative sketch behind the exported histograms,
the drift verdicts of the features and of the label (so hysteresis does not re-alert),
the hook's per-instance drop counters, the pending predictions of the label join (when
the joiner can serialise itself) and the totals. What does not: the open window.

Layout (every file written to a temporary name, fsynced, then renamed)::

    state.msgpack                 the index: format version, per model its metadata and the
                                  files below that hold its data (small; rewritten each close)
    profiles/<fingerprint>.bin    a reference profile, written once
    windows/<model key>/<start>.bin   one closed window (zlib'd sketch), written once
    cumulative/<model key>.bin    the cumulative sketch, rewritten each close

Each part of a model's state says what it keeps (:meth:`ModelState.saved` gathers them:
the reference's source, the verdicts, the golden-signal totals and hook counters, the label
buffer, and the profile, windows and cumulative sketch that serialise themselves); this module
only frames them: file names, the index, atomic writes, garbage collection, and reading back
(:meth:`ModelState.restore` decides what applies).

A closed window is written once in its life, so a close costs the new windows plus
the small index, not the whole state. The index is renamed last and only references
complete files; files it no longer references are deleted afterwards. A checkpoint
that cannot be read is moved aside (``state.msgpack.corrupt``) and the sidecar starts
empty with a warning: a bad file must never keep the service down.

Blocking: :meth:`Checkpointer.save` and :meth:`Checkpointer.restore` do file I/O; call
them off the event loop. One writer at a time (the evaluator).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any

import msgpack

from driftcar.sidecar.state import ClosedWindow, Saved, StateStore

__all__ = ["Checkpointer", "FORMAT_VERSION", "FILENAME"]

log = logging.getLogger("driftcar.sidecar.checkpoint")
FORMAT_VERSION = 3
FILENAME = "state.msgpack"
#: refuse to read any checkpoint file larger than this (a broken file must not exhaust memory)
MAX_FILE_BYTES = 1024**3


def _model_key(model: str, version: str) -> str:
    return hashlib.sha256(f"{model}\0{version}".encode()).hexdigest()[:24]


def _refuse_ext(code: int, data: bytes):
    raise ValueError("extension types are not allowed in a checkpoint")


class Checkpointer:
    """Save/restore a :class:`StateStore` in ``directory`` (layout in the module docstring)."""

    def __init__(self, directory: str, store: StateStore):
        self.directory = directory
        self.store = store
        self.path = os.path.join(directory, FILENAME)
        self.saves = 0
        self.bytes_written = 0
        self._written: set[str] = set()  # relative paths known to exist complete
        for sub in ("profiles", "windows", "cumulative"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)

    # ------------------------------------------------------------------ files
    def _write(self, rel: str, data: bytes) -> None:
        path = os.path.join(self.directory, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self.bytes_written += len(data)

    def _read(self, rel: str) -> bytes:
        path = os.path.join(self.directory, rel)
        if os.path.isabs(rel) or ".." in rel.split("/"):
            raise ValueError(f"bad path in checkpoint index: {rel!r}")
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{rel}: {size} bytes is larger than {MAX_FILE_BYTES}")
        with open(path, "rb") as fh:
            return fh.read()

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass

    # ------------------------------------------------------------------ save
    def save(self) -> int:
        """Write new files and the index; returns the bytes written by this call."""
        before = self.bytes_written
        store = self.store
        pending: list[tuple[str, Any]] = []  # (rel path, bytes or a callable making them)
        models = []
        with store.lock:  # collect references only; serialise outside the lock
            for state in store.models.values():
                models.append(self._frame(state.model, state.version, state.saved(), pending))
        for rel, data in pending:
            self._write(rel, data() if callable(data) else data)
            if not rel.startswith("cumulative/"):
                self._written.add(rel)
        self._fsync_dir()
        index = {"v": FORMAT_VERSION, "saved_unix_nano": time.time_ns(), "window_s": store.model_config.window_s,
                 "models": models}
        self._write(FILENAME, msgpack.packb(index, use_bin_type=True))
        self._fsync_dir()
        self._collect(models)
        self.saves += 1
        return self.bytes_written - before

    def _frame(self, model: str, version: str, saved: Saved, pending: list) -> dict:
        """The index entry of one model: its parts' fields and the files holding its large parts."""
        key = _model_key(model, version)
        profile_rel = None
        if saved.profile is not None:
            profile_rel = f"profiles/{saved.profile.fingerprint}.bin"
            if profile_rel not in self._written:
                pending.append((profile_rel, saved.profile.to_bytes))
        windows = []
        for w in saved.windows:
            rel = f"windows/{key}/{w.start_ns}.bin"
            if rel not in self._written:
                pending.append((rel, w.blob))
            windows.append([w.start_ns, w.end_ns, w.rows, rel])
        cumulative_rel = None
        if saved.cumulative is not None:
            cumulative_rel = f"cumulative/{key}.bin"
            pending.append((cumulative_rel, saved.cumulative))
        return {"model": model, "version": version, **saved.fields, "profile": profile_rel, "windows": windows,
                "cumulative": cumulative_rel}

    def _collect(self, models: list[dict]) -> None:
        """Delete files the index no longer references (evicted windows, replaced profiles)."""
        keep = {m["profile"] for m in models} | {m["cumulative"] for m in models}
        keep |= {w[3] for m in models for w in m["windows"]}
        for sub in ("profiles", "windows", "cumulative"):
            root = os.path.join(self.directory, sub)
            for dirpath, _, files in os.walk(root):
                for name in files:
                    rel = os.path.relpath(os.path.join(dirpath, name), self.directory).replace(os.sep, "/")
                    if rel not in keep:
                        try:
                            os.remove(os.path.join(dirpath, name))
                        except OSError:
                            pass
                        self._written.discard(rel)

    # ------------------------------------------------------------------ restore
    def restore(self) -> int:
        """Load the checkpoint into the (empty) store; returns the number of models restored."""
        if not os.path.exists(self.path):
            return 0
        try:
            data = msgpack.unpackb(self._read(FILENAME), raw=False, strict_map_key=False, ext_hook=_refuse_ext)
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
        from driftcar.stats import Profile

        store = self.store
        count = 0
        profiles: dict[str, Any] = {}  # models sharing a reference share one Profile object

        def profile(rel: str):
            if rel not in profiles:
                profiles[rel] = Profile.from_bytes(self._read(rel))
            self._written.add(rel)
            return profiles[rel]

        def windows(entries: list, prof) -> list[ClosedWindow]:
            out = []
            for start, end, rows, rel in entries:
                blob = self._read(rel)  # decoded lazily, when the API or a sliding view needs it
                out.append(ClosedWindow(int(start), int(end), int(rows), profile=prof, blob=blob))
                self._written.add(rel)
            if out:
                out[-1].sketch  # noqa: B018 (validates one window against the profile now)
            return out

        with store.lock:
            for entry in data.get("models", []):
                state = store.get_or_create(str(entry["model"]), str(entry["version"]))
                rel, cumulative = entry.get("profile"), entry.get("cumulative")
                state.restore(entry, (lambda r=rel: profile(r)) if rel else None,
                              lambda prof, e=entry.get("windows", []): windows(e, prof),
                              (lambda c=cumulative: self._read(c)) if cumulative else None)
                count += 1
        return count
