"""A run's output folder: where it goes, what may be replaced (only folders a taskcli run wrote), the run marker,
the newest checkpoint, --resume of a finished run, a full disk and Ctrl-C in one line each."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from taskcli.errors import TaskcliError, quoted
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskcli.run import Run


def default_output_dir(run: Run) -> Path:
    """runs/<task>-<recipe>[-smoke]; repeating a run from its recipe.yaml writes next to it, to <run>-rerun."""
    path = run.resolved.path
    if path.name == "recipe.yaml" and (path.parent / "config.json").is_file():
        return path.parent.with_name(path.parent.name + "-rerun")
    name = run.resolved.name.replace("/", "-") if run.resolved.name.count("/") == 1 else Path(run.resolved.name).stem
    if not name.startswith(run.task.name):
        name = f"{run.task.name}-{name}"
    return Path("runs") / (name + ("-smoke" if run.smoke else ""))


def newest_checkpoint(output_dir: Path) -> str | None:
    """Newest checkpoint-N that finished saving (has trainer_state.json); a kill mid-save leaves one without."""
    complete = [p for p in output_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    complete.sort(key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return str(complete[-1]) if complete else None


# Written into the output dir at the start of every run and rewritten when it finishes: what tells a folder a
# taskcli run wrote (the only kind --overwrite deletes) and whether the run there finished, at which step.
RUN_MARKER = ".taskcli-run"


def run_record(out: Path) -> dict | None:
    """The output dir's run marker, or None (no marker: not a run folder, or a run of an older taskcli)."""
    try:
        record = json.loads((out / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def mark_run(out: Path, **record) -> None:
    """Write the run marker (atomically: a kill leaves the old one or the new one)."""
    from taskcli import __version__

    tmp = out / (RUN_MARKER + ".tmp")
    tmp.write_text(json.dumps({"taskcli": __version__, **record}) + "\n", encoding="utf-8")
    os.replace(tmp, out / RUN_MARKER)


def _written_by_taskcli(out: Path) -> bool:
    """A folder a taskcli run wrote: its marker, or (runs of versions before the marker) a recipe.yaml with
    taskcli's provenance or the Trainer's checkpoints."""
    if (out / RUN_MARKER).is_file() or any((p / "trainer_state.json").is_file() for p in out.glob("checkpoint-*")):
        return True
    try:
        head = (out / "recipe.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return "\nprovenance:" in head and "\ntask:" in "\n" + head


def check_overwrite(out: Path) -> None:
    """--overwrite deletes only a folder a taskcli run wrote, and never one that holds the current folder, the
    home folder or a git repository: anything else is refused before a file is touched."""
    where, here, home = out.resolve(), Path.cwd().resolve(), Path.home().resolve()
    held = "the whole disk" if where == Path(where.anchor) else "your home folder" if where == home else \
        "the current folder" if where == here or where in here.parents else None
    if held:
        raise TaskcliError(f"--overwrite refused: deleting {out} would delete {held}",
                           "choose a new folder for --output-dir")
    if out.is_symlink() or (out / ".git").exists():
        raise TaskcliError(f"--overwrite refused: {out} is {'a link' if out.is_symlink() else 'a git repository'}",
                           "choose another --output-dir")
    if not _written_by_taskcli(out):
        some = sorted(p.name for p in out.iterdir())
        raise TaskcliError(f"--overwrite refused: {out} was not written by a taskcli run (it holds {quoted(some[0])}"
                           + (f" and {len(some) - 1} more" if len(some) > 1 else "") + ")",
                           "choose another --output-dir, or empty the folder yourself")


def check_output_dir(out: Path, resume: bool, overwrite: bool) -> str | None:
    """Before anything heavy: refuse to clobber a user's folder and check the folder can be written, changing
    nothing yet (start_run does, once the run really starts); return the checkpoint to resume from, if any."""
    if out.exists() and not out.is_dir():
        raise TaskcliError(f"output path {out} is a file", "choose another --output-dir")
    busy, ckpt = _busy(out), None
    if resume:
        ckpt = newest_checkpoint(out) if busy else None
        if ckpt is None:
            raise TaskcliError(f"nothing to resume in {out}: no complete checkpoint-* folder", "drop --resume")
    elif busy and not overwrite:
        raise TaskcliError(
            f"output dir {out} is not empty",
            "pass --resume to continue it, --overwrite to replace it, or choose another --output-dir",
        )
    elif busy:
        check_overwrite(out)
    _check_writable(out)
    return ckpt


def _busy(out: Path) -> bool:
    return out.is_dir() and any(p.name != RUN_MARKER for p in out.iterdir())


def _check_writable(out: Path) -> None:
    """A file made and deleted at once in the folder, or in the nearest one above it that exists (where it would
    be made): `-o /proc/x`, a path under a file or a folder without permission fail here, in one line."""
    folder = out
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file")
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise TaskcliError(f"cannot write to output dir {out}: {err.strerror or err}",
                           "choose another --output-dir") from None


def start_run(out: Path, replace: bool) -> None:
    """The run starts (its model is loaded): the folder of the run it replaces (--overwrite) is deleted only now,
    so a run that fails before keeps it, and the folder gets its run marker."""
    if replace and _busy(out):
        check_overwrite(out)  # again: the folder may have changed while the model loaded
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    mark_run(out, status="running")


def no_space_left(err: BaseException, folders: list[Path], since: float) -> TaskcliError:
    """A full disk, named by the file being written: the error's own file name, else the file last written in
    `folders` (the output dir, the run's temporary folders) after `since` (time.time()): torch.save's and
    safetensors' errors name none, and the half-written file is the one touched last."""
    name = getattr(err, "filename", None)
    if not name:
        newest = (since - 2.0, None)  # file times can lag the clock by a tick
        for folder in folders:
            for root, _, names in os.walk(folder):
                for f in names:
                    try:
                        newest = max(newest, (os.stat(os.path.join(root, f)).st_mtime, os.path.join(root, f)))
                    except OSError:  # gone meanwhile
                        pass
        name = newest[1]
    where = f"writing {name}" if name else "(run with TASKCLI_DEBUG=1 to see which write)"
    return TaskcliError(f"no space left on device {where}", "free some space, or pass another --output-dir")


def finished_run(out: Path, resume_from: str, planned: int) -> dict | None:
    """--resume of a run that finished: {"step", "planned"} when it already did the `planned` steps asked for
    (nothing to do), None when it has steps left. A finished run asked for more steps continues from its
    last step, which must still be there: resuming from an older checkpoint would train those steps again."""
    record = run_record(out)
    try:
        state = json.loads((Path(resume_from) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    if record is not None:
        if record.get("status") != "finished":
            return None
        last, did = int(record["global_step"]), int(record["max_steps"])
    elif (out / "metrics.json").is_file():  # a run of an older taskcli that finished (no marker yet then)
        last = did = int(state.get("max_steps") or 0)
    else:
        return None
    if planned <= did:
        return {"step": last, "planned": did}
    at = int(state.get("global_step") or 0)
    if at < last:
        raise TaskcliError(f"cannot continue the finished run in {out} from its last step {last}: its newest "
                           f"checkpoint is {Path(resume_from).name} (step {at}), resuming would train steps "
                           f"{at + 1}-{last} again", "start a new run with --overwrite or another --output-dir")
    return None


class Interrupted(TaskcliError):
    """Ctrl-C during training: one line saying where it stopped and how to go on."""

    exit_code = 130


def interrupted(trainer, out: Path, command: str) -> Interrupted:
    import shlex

    step = trainer.state.global_step
    ckpt = newest_checkpoint(out)
    if not ckpt:
        return Interrupted(f"interrupted at step {step}, before the first checkpoint: nothing to resume",
                           f"run `{command or 'the same command'}` again (add --overwrite if {out} is not empty)")
    words = [w for w in shlex.split(command) if w != "--overwrite"] if command else []
    again = shlex.join(words + ([] if "--resume" in words else ["--resume"])) if words else "the same command with --resume"
    if words and not any(w in ("-o", "--output-dir") or w.startswith("--output-dir=") for w in words):
        again += f" -o {shlex.quote(str(out))}"
    return Interrupted(f"interrupted at step {step}; {Path(ckpt).name} is saved in {out}", f"resume with: {again}")

