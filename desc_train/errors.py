"""The error of a user's mistake (a missing or foreign file, a bad setting):
its message names the file or the setting, and the command line prints it as
one line, without a traceback."""


class UserError(ValueError):
    """A file or setting the user gave is missing, unreadable or wrong; the message names it."""
