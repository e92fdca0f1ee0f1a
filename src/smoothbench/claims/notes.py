"""What smoothbench measured about its claims: the notes of `notes.yaml`, with where each was
measured.

A note is prose with numbers measured on some runs; it lives in data, not code, so adding or
voiding one (after a protocol change) touches no Python. The registry attaches each note to
the claims it names; `Note.words()` is the text a verdict quotes and docs/claims.md lists.

    from smoothbench.claims.notes import load_notes
    for note in load_notes(scales=("smoke", "cpu", "paper")):
        print(note.claims, note.words())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# "note": why a verdict other than holds is what the data show (quoted in the verdict's why);
# "scale_note": why the small scales' verdict is expected to differ from the paper scale's
KINDS = ("note", "scale_note")
FIELDS = ("claims", "kind", "text", "measured")
MEASURED_FIELDS = ("scale", "preset", "seeds", "protocol", "command")


@dataclass(frozen=True)
class Measured:
    """Where a note was measured: the runs' scale, preset and seeds, the protocol version they
    ran under (None when not recorded) and the command that reproduces them."""

    scale: str
    preset: str
    seeds: tuple[int, ...]
    protocol: int | None = None
    command: str | None = None

    def words(self) -> str:
        """'scale=cpu, preset hessian, seeds 0-2, protocol v2'."""
        parts = [f"scale={self.scale}", f"preset {self.preset}", f"seeds {_seed_words(self.seeds)}"]
        if self.protocol is not None:
            parts.append(f"protocol v{self.protocol}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Note:
    """One measured finding and the claims it explains."""

    claims: tuple[str, ...]
    kind: str
    text: str
    measured: Measured

    def words(self) -> str:
        """The note as quoted: the finding, then where it was measured and how to reproduce it."""
        command = f": {self.measured.command}" if self.measured.command else ""
        return f"{self.text} (measured at {self.measured.words()}{command})"


def _seed_words(seeds: Sequence[int]) -> str:
    """'0-2' for a run of consecutive seeds, else '0, 2, 5'."""
    ordered = sorted(seeds)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return ", ".join(map(str, ordered))


def notes_path() -> Path:
    """notes.yaml as shipped with the package."""
    return Path(str(resources.files("smoothbench.claims") / "notes.yaml"))


def load_notes(scales: Sequence[str], path: str | Path | None = None) -> tuple[Note, ...]:
    """The notes of `path` (default: the shipped notes.yaml); ValueError naming the entry and
    the bad field for an entry that is not a note measured at one of `scales`."""
    path = Path(path) if path is not None else notes_path()
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    if not isinstance(entries, list):
        raise ValueError(f"{path.name}: expected a list of notes, got {type(entries).__name__}")
    return tuple(
        _note(entry, f"{path.name}, note {i}", scales) for i, entry in enumerate(entries, 1)
    )


def _note(entry: Any, where: str, scales: Sequence[str]) -> Note:
    _check_fields(entry, FIELDS, where)
    claims = entry["claims"]
    if not (isinstance(claims, list) and claims and all(isinstance(c, str) for c in claims)):
        raise ValueError(f"{where}: claims {claims!r} must be a non-empty list of claim ids")
    if entry["kind"] not in KINDS:
        raise ValueError(
            f"{where}: kind {entry['kind']!r} unknown; choose one of: {', '.join(KINDS)}"
        )
    if not isinstance(entry["text"], str) or not entry["text"].strip():
        raise ValueError(f"{where}: text {entry['text']!r} must be the finding in words")
    return Note(
        tuple(claims),
        entry["kind"],
        " ".join(entry["text"].split()),
        _measured(entry["measured"], where, scales),
    )


def _measured(entry: Any, where: str, scales: Sequence[str]) -> Measured:
    where = f"{where}, measured"
    _check_fields(entry, MEASURED_FIELDS, where, optional=("protocol", "command"))
    if entry["scale"] not in scales:
        raise ValueError(
            f"{where}: scale {entry['scale']!r} unknown; choose one of: {', '.join(scales)}"
        )
    seeds = entry["seeds"]
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ValueError(f"{where}: seeds {seeds!r} must be a non-empty list of integers")
    protocol = entry.get("protocol")
    if protocol is not None and not isinstance(protocol, int):
        raise ValueError(f"{where}: protocol {protocol!r} must be a version number (e.g. 2)")
    command = entry.get("command")
    if command is not None and not isinstance(command, str):
        raise ValueError(f"{where}: command {command!r} must be one shell command line")
    return Measured(
        entry["scale"],
        str(entry["preset"]),
        tuple(seeds),
        protocol,
        " ".join(command.split()) if command else None,
    )


def _check_fields(
    entry: Any, fields: Sequence[str], where: str, optional: Sequence[str] = ()
) -> None:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping with {', '.join(fields)}, got {entry!r}")
    unknown = [k for k in entry if k not in fields]
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}; allowed: {', '.join(fields)}")
    missing = [k for k in fields if k not in entry and k not in optional]
    if missing:
        raise ValueError(f"{where}: field {missing[0]!r} missing")


def by_claim(notes: Sequence[Note], kind: str) -> dict[str, str]:
    """{claim id: the quoted words} of the notes of one kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown note kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return {cid: note.words() for note in notes if note.kind == kind for cid in note.claims}
