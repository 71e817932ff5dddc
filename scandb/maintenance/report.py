"""What ``verify`` found: one line per problem, summarised by kind when there are many."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import EXIT_DAMAGE, EXIT_OK

SHOWN_PER_KIND = 10
"""Problems of one kind listed one per line; more than this become one counted line."""


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class Kind:
    """A kind of damage, counted as e.g. "14,873 image files missing"."""

    noun: str
    condition: str

    def count(self, n: int) -> str:
        return f"{plural(n, self.noun)} {self.condition}"


@dataclass(frozen=True)
class Problem:
    kind: Kind
    text: str
    """One line naming the scan, table or file and what is wrong with it."""


@dataclass
class VerifyReport:
    database: str
    n_scans: int = 0
    n_trials: int = 0
    n_images: int = 0
    found: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What could not be checked, without being damage."""

    @property
    def ok(self) -> bool:
        return not self.found

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_DAMAGE

    def by_kind(self) -> dict[Kind, list[Problem]]:
        kinds: dict[Kind, list[Problem]] = {}
        for problem in self.found:
            kinds.setdefault(problem.kind, []).append(problem)
        return kinds

    @property
    def problems(self) -> list[str]:
        """The report's lines: each problem, or one line per kind that has many."""
        lines = []
        for kind, problems in self.by_kind().items():
            if len(problems) > SHOWN_PER_KIND:
                lines.append(f"{kind.count(len(problems))} (first: {problems[0].text})")
            else:
                lines.extend(p.text for p in problems)
        return lines

    def text(self) -> str:
        notes = [f"  note: {note}" for note in self.notes]
        if self.ok:
            return "\n".join([f"{self.database}: ok: {plural(self.n_scans, 'scan')}, "
                              f"{plural(self.n_trials, 'trial')}, {plural(self.n_images, 'image file')} checked"]
                             + notes)
        counts = ", ".join(kind.count(len(problems)) for kind, problems in self.by_kind().items())
        return "\n".join([f"{self.database}: damage found: {counts}"] + [f"  {p}" for p in self.problems] + notes)

    def add(self, problems: list[Problem]) -> None:
        self.found.extend(problems)
