"""User-facing errors: each carries one line that names the problem; the CLI prints it without a traceback."""


class RobustkitError(Exception):
    """Base class for errors a user can fix (bad name, missing data, broken checkpoint, bad config)."""


class UnknownNameError(RobustkitError, LookupError):
    """A registry was asked for a name it does not hold."""


class DuplicateNameError(RobustkitError, ValueError):
    """Two different plugins claim the same registry name."""


class DataError(RobustkitError):
    """A data set is missing or its files are malformed."""


class CheckpointError(RobustkitError):
    """A checkpoint is unreadable, unsafe, or does not fit the model."""


class ConfigError(RobustkitError, ValueError):
    """A setting has a value outside what it accepts."""
