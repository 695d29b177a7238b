"""The run's report: what the driver did, as it happens (with the time since the start), and
what the checks found."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Finding:
    """The verdict of one check: what was expected, what was found, and the evidence."""

    check: str
    passed: bool
    expected: str
    found: str
    evidence: list[str] = field(default_factory=list)


class Journal:
    """Timestamped lines, printed at once (a long run shows its progress) and kept."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.findings: list[Finding] = []
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str) -> None:
        line = f"  t+{self.elapsed():6.1f}s  {text}"
        with self._lock:
            self.lines.append(line)
            print(line, file=self.out, flush=True)

    def heading(self, text: str) -> None:
        with self._lock:
            self.lines.append(text)
            print(f"\n{text}", file=self.out, flush=True)

    def found(self, finding: Finding) -> None:
        verdict = "PASS" if finding.passed else "FAIL"
        lines = [
            f"  {verdict}  {finding.check}",
            f"        expected: {finding.expected}",
            f"        found:    {finding.found}",
            *(f"        - {item}" for item in finding.evidence[:20]),
        ]
        if len(finding.evidence) > 20:
            lines.append(f"        ... and {len(finding.evidence) - 20} more")
        with self._lock:
            self.findings.append(finding)
            self.lines.extend(lines)
            print("\n".join(lines), file=self.out, flush=True)

    @property
    def passed(self) -> bool:
        return bool(self.findings) and all(finding.passed for finding in self.findings)
