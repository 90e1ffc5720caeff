"""One error type for everything a user can fix, printed as one line (no traceback)."""

from __future__ import annotations


class TaskcliError(Exception):
    """A problem the user can fix. ``str(err)`` is the one line shown on stderr."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def quoted(value, width: int = 60) -> str:
    """A value as JSON text for an error message, cut to `width` characters."""
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[:width - 3] + "..."


def disk_full(err: BaseException) -> bool:
    """Whether `err` says the disk filled up while writing. Python raises OSError(ENOSPC); torch.save says only
    "[enforce fail at inline_container.cc:...] . unexpected pos N vs M" (its zip writer's short write) or
    "... file write failed"; safetensors and other Rust writers "No space left on device (os error 28)"; numpy's
    tofile "N requested and M written"."""
    import errno

    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return ("No space left on device" in text or "os error 28" in text
            or ("inline_container.cc" in text and ("unexpected pos" in text or "file write failed" in text))
            or (isinstance(err, OSError) and " requested and " in text and text.endswith(" written")))
