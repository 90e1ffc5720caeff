"""Which process this is in a distributed run, and the check that every process resolved the same run."""

from __future__ import annotations

import os

from taskcli.errors import TaskcliError, quoted


def world_size() -> int:
    """Processes in this run (torchrun / accelerate launch set WORLD_SIZE; 1 when run plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Process 0 of a distributed run (the only one that judges and writes the output folder), or a plain run."""
    return int(os.environ.get("RANK", "0")) == 0


def group_started() -> bool:
    """Whether this process has joined a process group already (torch imported and initialised)."""
    import sys

    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def from_main(value=None):
    """Process 0's `value` on every process of a distributed run (the others pass nothing): a decision only process
    0 can take (tune's next trial, its pruner's verdict) that all of them act on together. A plain run: `value`."""
    if world_size() < 2:
        return value
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState()  # joins the process group torchrun / accelerate launch describe (once)
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def files_from_main(folder) -> None:
    """Every process gets process 0's files of `folder` (its own folder of that name, on any node): what process 0
    alone wrote. Small folders only (--smoke's tiny model): the files travel as one message."""
    from pathlib import Path

    folder = Path(folder)
    files = from_main({p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
                       if p.is_file()} if is_main() else None)
    if is_main():
        return
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def check_processes_agree(run, model: str | None, data: str | None) -> None:
    """Every process of a distributed run (every node of a multi-node one) must train the same recipe on the same
    label set: a node with another recipe file, taskcli version or data snapshot would average gradients of a
    different model into everyone's. Compared once, before any model is loaded; a mismatch names the field. (`run`:
    a taskcli.run.Run; not imported, so that the modules below the run can ask world_size.)"""
    if world_size() < 2:
        return
    import torch.distributed as dist
    from accelerate import PartialState

    from taskcli import __version__

    PartialState()  # joins the process group torchrun / accelerate launch describe in the environment
    mine = {f"recipe.{k}": v for k, v in _flat(run.recipe.model_dump(mode="json")).items()}
    mine.update({"labels": run.labels, "--model": model, "--data": data, "taskcli version": __version__,
                 "train rows": run.data_info.train_rows if run.data_info else None})
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    for rank, theirs in enumerate(everyone[1:], start=1):
        differ = sorted(k for k in mine.keys() | theirs.keys() if everyone[0].get(k) != theirs.get(k))
        if differ:
            key = differ[0]
            raise TaskcliError(f"process {rank} resolved a different run than process 0: {key} is "
                               f"{quoted(theirs.get(key))} there, {quoted(everyone[0].get(key))} on process 0"
                               + (f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""),
                               "give every node the same taskcli version, recipe, --set values and data")


def _flat(tree: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out

