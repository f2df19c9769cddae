"""The error every user-facing failure raises: one line that says what is wrong and what to do."""


class PixelRNNError(ValueError):
    """Bad input, a missing or corrupt file, or a mismatch; the CLI prints it and exits 2."""
