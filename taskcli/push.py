"""`taskcli push DIR ORG/NAME` and `finetune --push-to-hub ORG/NAME`: a finished run to a Hub model repo.

What goes up, in one commit: the model, its tokenizer/processor, recipe.yaml, metrics.json, the model card
(README.md) and the run report, byte for byte as the run wrote them. What stays: the Trainer's checkpoint-*
folders and any optimizer/scheduler/RNG state (resuming needs them, using the model does not, and they are most of
the folder's size) and the run marker. huggingface_hub does the talking (create_repo, then create_commit: one
commit, so a failure leaves the repo as it was); the token is its usual one (HF_TOKEN, else `hf auth login`'s).
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

from taskcli.errors import TaskcliError
from taskcli.run_folder import RUN_MARKER, run_record

LOGIN_HINT = "log in with `hf auth login` (a token with write access) or set HF_TOKEN"
# The Trainer's resume state, never pushed (checkpoint-* folders hold the same, plus a copy of the model)
STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", RUN_MARKER + "*")


def ready(repo_id: str) -> str:
    """Before any work (finetune trains for hours first): a valid ORG/NAME, the Hub reachable in principle (not
    HF_HUB_OFFLINE) and a token; returns the token."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("give the namespace too")
    except HFValidationError:
        raise TaskcliError(f"{repo_id!r} is not a Hub repo id ORG/NAME",
                           "letters, digits, '-', '_' and '.', e.g. my-name/ner-distilbert") from None
    if constants.is_offline_mode():
        raise TaskcliError("HF_HUB_OFFLINE is set: pushing needs the Hub", "unset HF_HUB_OFFLINE to push")
    token = get_token()
    if not token:
        raise TaskcliError("not logged in to the Hugging Face Hub (no HF_TOKEN, no stored token)", LOGIN_HINT)
    return token


def check_run(folder: Path) -> dict:
    """The recipe.yaml of a finished taskcli run in `folder` (its task, recipe, command) and its metrics."""
    import yaml

    if not folder.is_dir():
        raise TaskcliError(f"no such directory: {folder}" if not folder.exists() else f"{folder} is not a folder",
                           "give the output folder of a `taskcli finetune` run")
    missing = [name for name in ("recipe.yaml", "config.json") if not (folder / name).is_file()]
    if missing:
        raise TaskcliError(f"{folder} is not a finished taskcli run: it has no {' and no '.join(missing)}",
                           "push the output folder of a `taskcli finetune` run that finished")
    status = (run_record(folder) or {}).get("status", "finished")  # no marker: a run of an older taskcli
    if status != "finished":
        raise TaskcliError(f"the run in {folder} did not finish (its marker says {status!r})",
                           "finish it (`taskcli finetune ... --resume`), then push")
    try:
        recipe = yaml.safe_load((folder / "recipe.yaml").read_text(encoding="utf-8"))
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8")) \
            if (folder / "metrics.json").is_file() else {}
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise TaskcliError(f"cannot read the run in {folder}: {str(err).splitlines()[0][:200]}", None) from None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("task"), str):
        raise TaskcliError(f"{folder / 'recipe.yaml'} is not a taskcli run's recipe (no task:)",
                           "push the output folder of a `taskcli finetune` run")
    return {"task": recipe["task"], "provenance": recipe.get("provenance") or {},
            "metrics": metrics if isinstance(metrics, dict) else {}}


def selected(folder: Path) -> tuple[list[Path], list[str]]:
    """The files to push (relative paths, in order) and what is left out (checkpoint-N/ folders, state files)."""
    files: list[Path] = []
    left: list[str] = []
    for root, dirs, names in os.walk(folder):
        here = Path(root).relative_to(folder)
        dirs.sort()
        left += [(here / d).as_posix() + "/" for d in dirs if d.startswith("checkpoint-")]
        dirs[:] = [d for d in dirs if not d.startswith("checkpoint-")]
        for name in sorted(names):
            if not any(fnmatch.fnmatch(name, pattern) for pattern in STATE_FILES):
                files.append(here / name)
            elif not name.startswith(RUN_MARKER):  # the marker is taskcli's bookkeeping, not worth a word
                left.append((here / name).as_posix())
    return files, left


def commit_text(folder: Path, run: dict, files: list[Path], left: list[str]) -> tuple[str, str]:
    """The commit's title (the run folder, task/recipe, its main scores) and description (command, what stayed)."""
    from taskcli import __version__
    from taskcli.metrics import scalar_metrics

    scores = [f"{k}={v:.4g}" for k, v in scalar_metrics(run["metrics"]).items()
              if v is not None and k not in ("loss", "runtime", "samples_per_second", "steps_per_second")][:3]
    prov = run["provenance"]
    recipe = prov.get("recipe") or run["task"]
    title = f"taskcli run {folder.resolve().name}: {recipe}" + (f" ({', '.join(scores)})" if scores else "")
    lines = [f"Ran as: {prov.get('command') or 'taskcli finetune ' + run['task']}",
             f"Pushed with taskcli {__version__}: {len(files)} files."]
    if left:
        lines.append(f"Left out: {', '.join(left)} (training checkpoints and optimizer state).")
    return title, "\n".join(lines)


def push(folder: Path | str, repo_id: str, private: bool = False, token: str | None = None, log=None) -> dict:
    """Push the finished run in `folder` to the model repo `repo_id` (made if new; --private: made private).
    `log(line)` hears what was left out (stderr)."""
    folder = Path(folder)
    run = check_run(folder)
    token = token or ready(repo_id)
    files, left = selected(folder)
    size = sum((folder / f).stat().st_size for f in files)
    title, description = commit_text(folder, run, files, left)
    from huggingface_hub import CommitOperationAdd, HfApi

    api, step = HfApi(token=token), "creating"
    try:
        url = api.create_repo(repo_id, private=True if private else None, exist_ok=True)
        step = "committing to"
        commit = api.create_commit(repo_id, [CommitOperationAdd(path_in_repo=f.as_posix(),
                                                                path_or_fileobj=str(folder / f)) for f in files],
                                   commit_message=title, commit_description=description)
    except Exception as err:  # noqa: BLE001 - sorted into one line below, or raised as it was
        raise hub_error(err, repo_id, step, api.endpoint) or err
    if log and left:  # after the push: an error stays the only line when it fails
        log(f"note: not pushed: {', '.join(left)} (training checkpoints and optimizer state)")
    return {"folder": str(folder), "repo": repo_id, "url": str(url), "commit": commit.oid,
            "commit_url": commit.commit_url, "message": title, "files": [f.as_posix() for f in files],
            "bytes": size, "left_out": left, "private": private}


def hub_error(err: BaseException, repo_id: str, step: str, endpoint: str) -> TaskcliError | None:
    """One line for a failed upload step, by the Hub's HTTP status (or an unreachable Hub); None: not the Hub's."""
    from huggingface_hub.errors import HfHubHTTPError

    from taskcli.hub import network_error

    where = f"{step} {repo_id}"
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        said = (str(err.server_message or "").strip().splitlines() or [""])[0][:200]
        detail = f"{status}{': ' + said if said else ''}"
        if status == 401:
            return TaskcliError(f"the Hub did not accept the token while {where} ({detail})", LOGIN_HINT)
        if status == 403:
            return TaskcliError(f"the token may not write to {repo_id} ({detail}, while {step} it)",
                                "push to your own name or an org you can write to, or " + LOGIN_HINT)
        if status >= 500:
            return TaskcliError(f"the Hub failed while {where} ({detail}); nothing was committed",
                                "try again later")
        return TaskcliError(f"the Hub refused {where} ({detail}); nothing was committed", None)
    if network_error(err):
        return TaskcliError(f"cannot reach the Hub at {endpoint} while {where}", "check the network (and HF_ENDPOINT)")
    return None


def after_finetune(result: dict, repo_id: str | None, private: bool, token: str | None, log=None) -> str | None:
    """finetune --push-to-hub: push the run unless a gate failed; returns the line to print after the failed
    gates' lines then (the exit code stays the gates')."""
    if not repo_id or result.get("dry_run"):
        return None
    if result.get("finished"):  # --resume with no steps left: no gates were checked, nothing is pushed
        if log:
            log(f"note: nothing was pushed to {repo_id} (nothing was trained); push the finished run with "
                f"`taskcli push {result['output_dir']} {repo_id}`")
        return None
    if result.get("gates_failed"):
        return f"nothing was pushed to {repo_id}: a gate failed"
    try:
        result["pushed"] = push(Path(result["output_dir"]), repo_id, private, token, log)
    except TaskcliError as err:  # the training is not lost: say how to push it again
        again = f"the run is saved in {result['output_dir']}: push it with `taskcli push {result['output_dir']} {repo_id}`"
        raise TaskcliError(err.message, f"{err.hint}; {again}" if err.hint else again) from None
    return None
