"""One root error; each subclass carries what went wrong, what to do, and its exit code.

The exit codes are part of the CLI contract (docs/cli.md) and never change meaning.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes shared by every command."""

    OK = 0
    INTERNAL = 1  # a bug in kvmha-forensics: please report it
    USAGE = 2  # bad command-line usage (typer/click's own code)
    BAD_INPUT = 3  # a file, bundle or dump that is missing, unreadable or corrupt
    ENVIRONMENT = 4  # something the host lacks: a package, /dev/kvm, a registry
    QMP = 5  # the QMP socket is missing, refused, busy or not QMP
    TIMEOUT = 6  # an operation did not finish in the time allowed
    INCOMPLETE = 7  # the result was produced but lacks parts (see its reasons)
    GUEST_STATE = 8  # the guest is not in a state the command accepts
    BUSY = 9  # another kvmha-forensics operation holds the guest or directory
    NEW_SIGNATURES = 20  # triage found crash signatures its --known record lacks


class ForensicsError(Exception):
    """Root of every error kvmha-forensics reports to a user.

    ``message`` says what is wrong, ``hint`` what to do; the CLI prints both on one line, then
    ``details`` (e.g. the tail of a console) when there are any.
    """

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str | None = None, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class InputError(ForensicsError):
    """A file, bundle or dump the user named is missing, unreadable or corrupt."""

    exit_code = ExitCode.BAD_INPUT


class EnvironmentProblem(ForensicsError):
    """The host lacks something: a package, a device, network access to a registry."""

    exit_code = ExitCode.ENVIRONMENT


class OperationTimeout(ForensicsError):
    """An operation did not finish within its time limit."""

    exit_code = ExitCode.TIMEOUT


class TransportError(ForensicsError):
    """The guest cannot be reached or used through its transport (a QMP socket, a libvirt
    domain). Callers branch on the subclass, never on ``__cause__``."""

    exit_code = ExitCode.QMP


class GuestGone(TransportError):
    """Nothing serves the guest any more, on evidence: a socket file that refuses connections,
    or the connection lost mid-conversation (QEMU exited or closed its monitor)."""


class GuestHeld(TransportError):
    """Another client holds the guest's monitor (QEMU serves one client per QMP socket)."""


class NotAMonitor(TransportError):
    """The endpoint answers, but not in the transport's protocol (e.g. not QMP)."""


class TransportConfigError(TransportError):
    """The address itself is wrong: not a socket, not permitted, not a usable endpoint."""


class AddressMissing(TransportConfigError):
    """Nothing at the address (no socket at the path): a mistyped path, or a QEMU not started.
    Never evidence that a guest is gone (``status`` says ``missing``, exit 14)."""


class CommandFailed(TransportError):
    """The guest's monitor refused a command (it exists, and said no)."""


class TransportTimeout(OperationTimeout, TransportError):
    """The guest's monitor did not answer in time (QEMU hung, or too busy)."""


class ManagerUnavailable(TransportError):
    """The manager in front of the guest (libvirtd) cannot be reached: not running, or the
    connection to it was lost. It says nothing about the guest itself."""


class GuestStateError(ForensicsError):
    """The guest is not in a state this command accepts (e.g. running without ``--live``)."""

    exit_code = ExitCode.GUEST_STATE


class BusyError(ForensicsError):
    """Another kvmha-forensics operation already holds this guest or directory."""

    exit_code = ExitCode.BUSY
