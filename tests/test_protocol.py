"""The frozen protocol: docs/protocol.md is what the presets compose to, and a change of any
regime fails here until it is logged as a new protocol version."""

from __future__ import annotations

from pathlib import Path

from smoothbench.protocol import CURRENT, VERSIONS, protocol_hash, protocol_markdown, protocol_table

REPO = Path(__file__).resolve().parents[1]


def test_the_presets_are_the_logged_protocol():
    table = protocol_table()
    assert protocol_hash(table) == CURRENT.sha256, (
        "the presets changed: log a new protocol version in src/smoothbench/protocol.py "
        "(what changed, the date, the new hash) and regenerate docs/protocol.md"
    )
    assert [v.version for v in VERSIONS] == list(range(1, len(VERSIONS) + 1))


def test_docs_protocol_is_generated():
    docs = (REPO / "docs" / "protocol.md").read_text()
    assert docs == protocol_markdown(), (
        "regenerate: python -m smoothbench.protocol > docs/protocol.md"
    )


def test_the_protocol_fixes_what_the_claims_rest_on():
    rows = {(r["preset"], r["scale"]): r for r in protocol_table()}
    # the DLN at the mapped paper lr, with its sensitivity
    assert rows["fig10", "cpu"]["lr"] == "5e-4,1e-3,2e-3"
    assert rows["fig10", "paper"]["lr"] == "5e-4,1e-3,2e-3"
    assert rows["lp_dln", "cpu"]["lr"] == 1e-3
    # every preset at cpu scale fixes one thread and at least 3 seeds where claims read it
    for (preset, scale), row in rows.items():
        assert row["threads"] == 1, (preset, scale)
        if scale == "cpu" and preset not in ("surfaces",):
            assert len(str(row["seeds"]).split(",")) >= 3, preset
