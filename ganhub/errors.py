"""User-facing errors. Every message is one sentence saying what was wrong and what to do."""

from __future__ import annotations


class GanhubError(Exception):
    """Base class: the CLI prints `error: <message>` and exits 2; the app shows it as gr.Error."""


class UnknownVariant(GanhubError):
    pass


class ConfigError(GanhubError):
    pass


class DatasetError(GanhubError):
    pass


class FolderError(GanhubError):
    pass


class TrainingDiverged(GanhubError):
    pass


class PluginError(GanhubError):
    """A plugin broke the contract; the message names the plugin and how to mend it."""
