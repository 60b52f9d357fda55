"""Errors a user can cause, each carrying one sentence and the exit code the CLI uses."""


class ArchvizError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""

    exit_code = 1


class UsageError(ArchvizError):
    """Bad input from the user (arguments, spec files, parameters): exit code 2."""

    exit_code = 2


class RunError(ArchvizError):
    """A valid request that cannot run (e.g. input too small for the network): exit code 1."""

    exit_code = 1


class TooLarge(RunError):
    """A tensor too large to size (more than 2^53 elements, or 2^63 bytes for torch): no memory
    budget can hold it, so a batch-size search treats it as not fitting."""


class ArchvizWarning(UserWarning):
    """Something that runs but is probably not what was meant; the CLI shows it as one line on stderr."""
