"""The corpus's summary: objects, results, failures by class, and the time the run took.

Built from the rows each corpus test records (``_support.record``, and the user properties of the tests
``parametrize_with_checks`` generates), so it is the same under pytest-xdist, where the controller sees
only the tests' reports. ``python -m corpus._summary SUMMARY.json`` prints a written summary again.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Summary", "failure_class"]

# The class of a declared failure is the first words of its reason (see _support.py).
_DECLARED = re.compile(r"^expected failure \((?P<class>DEVIATION \S+|FINDING \S+|INVALID INPUT|DECLARED)[ :]")


def failure_class(row: Mapping[str, str]) -> str | None:
    """The class a result counts under among the failures, or None for a pass or a skip: the
    declaration's class for an expected failure, else the status (and severity) of what went wrong."""
    status = row["status"]
    if status in ("passed", "skipped"):
        return None
    if status == "xfailed":
        match = _DECLARED.match(row["message"])
        return match.group("class").rstrip(":") if match else "xfailed, unclassified"
    if status == "failed":
        return f"FALSE VERDICT? failed ({row['severity']})"
    return f"FALSE VERDICT? {status}"


@dataclass
class Summary:
    """What the corpus run found, from the rows of its results."""

    rows: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    slice: str = "full"

    def add(self, rows: Iterable[Mapping[str, str]]) -> None:
        self.rows.extend(dict(row) for row in rows)

    def to_dict(self) -> dict[str, Any]:
        targets = sorted({row["target"] for row in self.rows})
        classes = Counter(cls for row in self.rows if (cls := failure_class(row)) is not None)
        unexpected = [
            row for row in self.rows if (cls := failure_class(row)) is not None and cls.startswith("FALSE")
        ]
        return {
            "slice": self.slice,
            "seconds": round(self.seconds, 1),
            "objects": len(targets),
            "results": len(self.rows),
            "statuses": dict(sorted(Counter(row["status"] for row in self.rows).items())),
            "failures_by_class": dict(sorted(classes.items())),
            "unexpected": unexpected,
        }

    def lines(self) -> list[str]:
        return render(self.to_dict())

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the summary as JSON, atomically (a temporary file beside it, then renamed)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(self.to_dict(), file, indent=2)
                file.write("\n")
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def render(data: Mapping[str, Any]) -> list[str]:
    """The summary as text lines."""
    minutes, seconds = divmod(int(data["seconds"]), 60)
    lines = [
        (
            f"corpus ({data['slice']}): {data['objects']} objects, {data['results']} results in "
            f"{minutes} min {seconds:02d} s"
        ),
        "statuses: " + ", ".join(f"{status} {count}" for status, count in data["statuses"].items()),
    ]
    if data["failures_by_class"]:
        lines.append("failures by class:")
        lines += [f"  {count:6d}  {cls}" for cls, count in data["failures_by_class"].items()]
    for row in data["unexpected"]:
        lines.append(f"  {row['target']} {row['check']} {row['status']}: {row['message']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m corpus._summary SUMMARY.json", file=sys.stderr)
        return 2
    data = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    print("\n".join(render(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
