"""Hand edits of wsforge.yaml (pure): found against the last design, laid over the new one."""

from __future__ import annotations

from typing import Any

import yaml

from wsforge.update.spec_edits import MISSING, Item, diff, explain, overlay, sync_text

DESIGNED = {
    "project": "p",
    "limits": {"max_payload_bytes": 8192, "rate_per_s": 10.0},
    "channels": {
        "separator": ":",
        "namespaces": [{"name": "room", "history_size": 50}, {"name": "user", "history_size": 0}],
    },
    "decisions": [
        {
            "key": "limits.max_payload_bytes",
            "value": 8192,
            "rationale": "16x the average.",
            "source": "table",
        },
        {"key": "limits.rate_per_s", "value": 10.0, "rationale": "chat.", "source": "table"},
    ],
    "requirements": {"avg_payload_bytes": 400, "use_cases": ["chat"]},
}


def _user(**limits: object) -> dict[str, Any]:
    user: dict[str, Any] = yaml.safe_load(yaml.safe_dump(DESIGNED))
    user["limits"].update(limits)
    return user


def test_diff_finds_leaf_edits_and_ignores_derived_fields() -> None:
    """Only spec fields count; decisions and requirements are not hand edits."""
    user = _user(max_payload_bytes=70000)
    user["decisions"] = []
    user["requirements"]["avg_payload_bytes"] = 1
    assert [(e.dotted, e.old, e.new) for e in diff(DESIGNED, user)] == [
        ("limits.max_payload_bytes", 8192, 70000)
    ]


def test_deleted_key_is_not_an_edit_but_a_removed_namespace_is() -> None:
    """Deleting a line hands the field back; deleting a namespace removes it."""
    user = _user()
    del user["limits"]["rate_per_s"]
    user["channels"]["namespaces"] = [{"name": "room", "history_size": 200}]
    edits = {e.dotted: (e.old, e.new) for e in diff(DESIGNED, user)}
    assert edits == {
        "channels.namespaces[room].history_size": (50, 200),
        "channels.namespaces[user]": ({"name": "user", "history_size": 0}, MISSING),
    }


def test_hand_edit_wins_over_the_new_design_and_is_recorded_as_a_decision() -> None:
    """Memory now says 65536, you said 70000: yours, with a rationale naming both."""
    user = _user(max_payload_bytes=70000)
    new_design = yaml.safe_load(yaml.safe_dump(DESIGNED))
    new_design["limits"] = {"max_payload_bytes": 65536, "rate_per_s": 20.0}
    data, overrides = overlay(new_design, diff(DESIGNED, user), user)
    assert data["limits"] == {"max_payload_bytes": 70000, "rate_per_s": 20.0}
    assert [(o.dotted, o.old, o.new) for o in overrides] == [("limits.max_payload_bytes", 65536, 70000)]
    row = next(d for d in data["decisions"] if d["key"] == "limits.max_payload_bytes")
    assert (row["value"], row["source"]) == (70000, "requirement")
    assert "edited by hand" in row["rationale"] and "65536" in row["rationale"]


def test_namespace_edits_apply_by_name_even_when_the_design_adds_one() -> None:
    """Memory adds 'audit'; your change to 'room' and your removal of 'user' still apply."""
    user = _user()
    user["channels"]["namespaces"] = [{"name": "room", "history_size": 200}]
    new_design = yaml.safe_load(yaml.safe_dump(DESIGNED))
    new_design["channels"]["namespaces"].append({"name": "audit", "history_size": 100})
    data, _ = overlay(new_design, diff(DESIGNED, user), user)
    assert data["channels"]["namespaces"] == [
        {"name": "room", "history_size": 200},
        {"name": "audit", "history_size": 100},
    ]


def test_edit_under_an_item_the_new_design_dropped_keeps_your_item() -> None:
    """The design no longer has 'room' but you edited it: your whole item is kept."""
    user = _user()
    user["channels"]["namespaces"][0]["history_size"] = 200
    new_design = yaml.safe_load(yaml.safe_dump(DESIGNED))
    new_design["channels"]["namespaces"] = [{"name": "user", "history_size": 0}]
    data, _ = overlay(new_design, diff(DESIGNED, user), user)
    assert {"name": "room", "history_size": 200} in data["channels"]["namespaces"]


def test_explain_names_the_cause_of_each_change() -> None:
    """Hand edit, memory convention, requirement: each change says which."""
    old = yaml.safe_load(yaml.safe_dump(DESIGNED))
    new = yaml.safe_load(yaml.safe_dump(DESIGNED))
    new["limits"] = {"max_payload_bytes": 70000, "rate_per_s": 20.0}
    new["decisions"][1]["source"] = "memory"
    overrides = [e for e in diff(old, new) if e.dotted == "limits.max_payload_bytes"]
    changes = [str(c) for c in explain(old, new, overrides, {"rate_per_s": "limits.rate_per_s"})]
    assert changes == [
        "limits.max_payload_bytes: 8192 -> 70000 (edited by hand in wsforge.yaml)",
        "limits.rate_per_s: 10.0 -> 20.0 (memory conventions.rate_per_s)",
    ]
    new["requirements"]["use_cases"] = ["chat", "gaming"]
    changes = [str(c) for c in explain(old, new, [], {})]
    assert (
        changes[0] == "requirements.use_cases: [chat] -> [chat, gaming] (requirement changed in wsforge.yaml)"
    )
    assert "after the requirement change" in changes[1]


def test_sync_text_keeps_comments_and_says_the_target() -> None:
    """The round-trip fallback for wsforge.yaml: your comments survive, the values are the new ones."""
    text = "# ours\nlimits:\n  max_payload_bytes: 70000  # big docs\n  rate_per_s: 10.0\nnote: null\n"
    target = {"limits": {"max_payload_bytes": 70000, "rate_per_s": 20.0}, "note": None}
    out = sync_text(text, target)
    assert out is not None
    assert yaml.safe_load(out) == target
    assert "# ours" in out and "# big docs" in out and "note: null" in out


def test_item_path_prints_like_the_spec() -> None:
    assert str(Item("room")) == "[room]"
