"""Errors that cryopipe reports to users as one clear line."""


class CryopipeError(Exception):
    """Base class: a problem with the user's input or configuration, shown without a traceback."""


class InputError(CryopipeError):
    """Bad input data: the message names the file and the problem."""


class StoreError(CryopipeError):
    """A store is missing, incomplete, corrupt or does not follow its schema."""


class ConfigError(CryopipeError):
    """The configuration breaks the schema or is inconsistent: the message names the key."""
