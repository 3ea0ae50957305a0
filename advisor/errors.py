"""One exception family for the user's mistakes; the CLI prints them as one line."""


def printable(text: str) -> str:
    """``text`` safe to print and to write as JSON: bytes of a file name that are not valid UTF-8 (which Python
    holds as lone surrogates) are shown as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class AdvisorError(Exception):
    """Base class for every error caused by input the user can fix."""


class DataError(AdvisorError):
    """The data folder is missing, empty, or not laid out as labelled classes."""


class BudgetError(AdvisorError):
    """The compute budget is missing, zero, negative or not a number."""


class BackboneError(AdvisorError):
    """The backbone name or weights file cannot be used."""


class RulesError(AdvisorError):
    """A rules file cannot be read or refers to something unknown."""


class StoreError(AdvisorError):
    """advisor's store on this machine cannot be used as it is (a newer advisor's, or its home is not a folder)."""
