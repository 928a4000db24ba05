"""Imports every command module so that each registers itself on the app."""

from . import memory_cmd, new_cmd, probe_cmd, regenerate_cmd, replay_cmd, review_cmd  # noqa: F401
