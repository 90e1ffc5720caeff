"""Label names found in the data, and a row's label -> its id: one rule for the tasks that number classes, whether a
row holds one label (audio/image classification), a list of tags (token classification) or its objects' categories
(object detection)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from taskcli.errors import TaskcliError


def names(dsd, feature: Callable[[Any], Any], values: Callable[[Any], Iterable], kind: str,
          order: Callable[[str], Any] | None = None) -> list[str]:
    """The ClassLabel names of `feature(features)` (also inside a list: Sequence/List(ClassLabel)), else the distinct
    labels `values(split)` yields in every split, sorted (by `order`). Integer labels without names: an error naming
    `kind` ("NER tags"), since their names cannot be guessed."""
    split = "train" if "train" in dsd else next(iter(dsd))
    found = feature(dsd[split].features)
    inner = getattr(found, "feature", found)
    if hasattr(inner, "names"):
        return list(inner.names)
    seen = {v for ds in dsd.values() for v in values(ds)}
    if seen and all(isinstance(v, int) for v in seen):
        raise TaskcliError(f"{kind} are integers without names", "set data.labels in the recipe (names in id order)")
    return sorted(map(str, seen), key=order)


def label_id(value, index: dict[str, int], kind: str = "label") -> int:
    """A row's label (a ClassLabel id or a name) -> its id; an unknown name is an error listing the known ones."""
    if isinstance(value, int):
        return value
    if str(value) not in index:
        raise TaskcliError(f"unknown {kind} '{value}' in the data", f"known: {', '.join(index)}")
    return index[str(value)]
