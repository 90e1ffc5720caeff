"""Quality gates for CI: `--gate "f1>=0.9"` holds a final metric to a bound; a failed gate makes the command exit 3.

Gates are parsed before anything runs (a typo fails at once, not after training); the metric names are checked
against the metrics the run produced (a name the task does not produce is an error listing the ones it does).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from taskcli.errors import TaskcliError

EXIT_FAILED = 3  # distinct from 1 (an error) so CI can tell "the model is not good enough" from "it did not run"

_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt}
_GATE = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    bound: float


def parse(texts: list[str]) -> list[Gate]:
    """'f1>=0.9' -> Gate('f1', '>=', 0.9); every malformed gate is reported at once."""
    gates, bad = [], []
    for text in texts:
        match = _GATE.match(text)
        if match:
            gates.append(Gate(match[1], match[2], float(match[3])))
        else:
            bad.append(text)
    if bad:
        raise TaskcliError(f"bad gate{'s' * (len(bad) > 1)}: {', '.join(repr(b) for b in bad)}",
                           "write METRIC OP NUMBER with OP one of >=, <=, >, <, ==, e.g. --gate 'f1>=0.9'")
    return gates


def check(gates: list[Gate], metrics: dict, task: str) -> list[str]:
    """One line per failed gate (metric, value, bound); [] when all hold."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    unknown = [g.metric for g in gates if g.metric not in scalars]
    if unknown:
        raise TaskcliError(f"gate on '{unknown[0]}', which {task} does not report",
                           f"its metrics: {', '.join(scalars)}")
    return [f"gate failed: {g.metric} = {scalars[g.metric]:.6g}, needs {g.op} {g.bound:g}"
            for g in gates if not _OPS[g.op](scalars[g.metric], g.bound)]
