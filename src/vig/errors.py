class UsageError(Exception):
    """A user mistake (bad path, wrong model name, mismatched checkpoint...).

    The CLI prints it as one line with no traceback and exits with code 2."""
