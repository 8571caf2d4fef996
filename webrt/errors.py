"""The one error type users see: a clear line, exit code 2, no traceback."""


class WebrtError(Exception):
    """Bad input or an unsupported request. The message says what is wrong and what would be right."""

    exit_code = 2
