"""Errors the CLI turns into a clear message and exit code 2."""


class InputError(Exception):
    """Bad input: unreadable/invalid diff, bad ref, bad option value, GitHub API refusal."""
