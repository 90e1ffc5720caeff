"""Why loading a model or dataset repo failed, as one line a user can act on.

The libraries raise many kinds of errors for a repo that will not load (no network, unknown id, a dataset repo
that only holds a loading script, a model whose config needs a package that is not installed, a truncated
weight file). Each gets its own diagnosis here; "no network" only when the network is the cause.
"""

from __future__ import annotations

import re
from pathlib import Path

from taskcli.errors import TaskcliError

# Packages a checkpoint's config can require at load time, and what to tell the user about each.
_PACKAGE_HINTS = {
    "timm": "its config builds a timm backbone (timm also needs torchvision); many such repos have a `no_timm` "
            "revision that uses transformers' own backbone: set model.revision: no_timm",
}
_NETWORK_TYPES = ("ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "ConnectionError",
                  "OfflineModeIsEnabled", "LocalEntryNotFoundError", "NameResolutionError", "MaxRetryError")


def _chain(err: BaseException) -> list[BaseException]:
    out, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        out.append(err)
        err = err.__cause__ or err.__context__
    return out


def network_error(err: BaseException) -> bool:
    """Whether the network (no connection, a timeout), not an answer from the Hub, is why `err` happened."""
    return bool({type(e).__name__ for e in _chain(err)} & set(_NETWORK_TYPES))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines() or [type(err).__name__])[0][:200]


def _missing_package(chain) -> str | None:
    for e in chain:
        if isinstance(e, ImportError):
            name = getattr(e, "name", None)
            if name:
                return name.split(".")[0]
            m = re.search(r"requires the (\w+) librar", str(e)) or re.search(r"pip install (\w[\w-]*)", str(e))
            if m:
                return m.group(1)
    for e in chain:  # transformers also reports missing backends in other exception types
        m = re.search(r"requires the (\w+) librar", str(e))
        if m:
            return m.group(1).lower()
    return None


def _damaged(chain) -> bool:
    pattern = re.compile(r"deserializ|incomplete metadata|not fully covered|failed finding central directory|"
                         r"unexpected EOF|PytorchStreamReader|invalid load key|truncated|HeaderTooLarge|"
                         r"MetadataIncompleteBuffer", re.I)
    return any(type(e).__name__ == "SafetensorError" or pattern.search(str(e)) for e in chain)


def weight_file(source: str, revision: str | None = None) -> str:
    """Where the weights of `source` are (a local dir, or the Hub cache), for error messages."""
    names = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
    path = Path(source).expanduser()
    if path.is_dir():
        for name in names:
            if (path / name).is_file():
                return str(path / name)
        return str(path)
    try:
        from huggingface_hub import try_to_load_from_cache

        for name in names:
            found = try_to_load_from_cache(source, name, revision=revision)
            if isinstance(found, str):
                return found
    except Exception:  # noqa: BLE001 - best effort, for a message
        pass
    return f"{source} (weights)"


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def load_error(kind: str, ref: str, err: BaseException, revision: str | None = None) -> TaskcliError:
    """One actionable line for a `kind` ("model" | "dataset") repo that failed to load."""
    chain = _chain(err)
    names = {type(e).__name__ for e in chain}
    text = " | ".join(str(e) for e in chain)
    at = f"@{revision}" if revision else ""
    script = re.search(r"Dataset scripts are no longer supported, but found (\S+)", text)
    if script:
        return TaskcliError(
            f"dataset '{ref}{at}' holds only a loading script ({script.group(1)}), which datasets >= 4 no longer runs",
            "set data.revision: refs/convert/parquet (the Hub's parquet export; data.data_dir: the config folder) "
            "or point data.dataset at a parquet copy of the data",
        )
    package = _missing_package(chain)
    if package:
        hint = _PACKAGE_HINTS.get(package, "")
        return TaskcliError(f"{kind} '{ref}{at}' needs the Python package '{package}', which is not installed",
                            f"pip install {package}" + (f"; or: {hint}" if hint else ""))
    if kind == "model" and _damaged(chain):
        return TaskcliError(f"the weight file {weight_file(ref, revision)} is damaged or truncated "
                            f"({_first_line(chain[-1])})",
                            "delete it and download it again (`hf cache delete`), or re-run the finetune that wrote it")
    if network_error(err) or _offline() or "couldn't reach" in text.lower() \
            or "couldn't connect" in text.lower():
        return TaskcliError(
            f"cannot reach the Hugging Face Hub to load {kind} '{ref}' and it is not in the local cache",
            "no network? use --smoke, pass a local path, or download it first where there is a network",
        )
    if names & {"RevisionNotFoundError"}:
        return TaskcliError(f"revision '{revision}' not found in {kind} '{ref}'", f"check {kind}.revision")
    if names & {"RepositoryNotFoundError", "DatasetNotFoundError", "GatedRepoError"} or "not a valid model identifier" in text:
        gated = "GatedRepoError" in names
        return TaskcliError(
            f"{kind} '{ref}' {'is gated on the Hub' if gated else 'not found on the Hugging Face Hub'}",
            "log in (`hf auth login`) and ask for access on its Hub page" if gated
            else "check the id (hub ORG/NAME) or pass a local path",
        )
    missing = re.search(r"does not appear to have a file named (\S+?)\.?(\s|$)", text)
    if missing:
        return TaskcliError(f"{kind} '{ref}{at}' has no file {missing.group(1)}",
                            "is it the right repo (or revision) for this task?")
    return TaskcliError(f"cannot load {kind} '{ref}{at}': {type(chain[-1]).__name__}: {_first_line(chain[-1])}",
                        None)
