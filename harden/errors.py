"""HardenError and its children: messages name the actor, the object and the cause."""

from __future__ import annotations


class HardenError(Exception):
    """Root of the automation's own errors."""


class ValidationError(HardenError, ValueError):
    """A configuration did not parse back cleanly; carries the findings."""

    def __init__(self, message: str, findings: list[object]) -> None:
        super().__init__(message)
        self.findings = findings


class LabError(HardenError):
    """The lab could not be built, reached or taken down; the message names the host and the cause."""


class InventoryError(HardenError, ValueError):
    """An inventory file, group_vars or host_vars file, or a host's settings are wrong; names file and line."""


class TemplateError(HardenError, ValueError):
    """A template failed to render, or its output failed to parse back; names the template and line."""


class TransportError(HardenError):
    """A host could not be reached, or a command or file write on it failed; keeps the stderr tail."""


class ChrootError(HardenError):
    """The chroot jail could not be planned or built; names the host and path."""
