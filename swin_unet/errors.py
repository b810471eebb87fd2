"""Exception types shared by the library and the command-line tools."""


class InputError(ValueError):
    """A problem with something the user gave: a file, a folder, a config key or value.

    The message names the file or key and says what is wrong, in one line. Library code raises
    it; the command-line tools turn it into one line on stderr and exit status 2.
    """


def one_line(exc: BaseException) -> str:
    """The command-line tools' one-line form of an error (a multi-line message joined)."""
    return " ".join(str(exc).split())
