"""Branch-name grammars: how a suite names its Hub branches, as data.

Many suites name a checkpoint's branch after more than its step: OLMo writes the tokens seen
(``stage1-step120000-tokens252B``), the FineWeb ablations pad the step and round the tokens
(``step-001000-2BT``), OLMo-2's annealing runs carry their ingredient
(``stage2-ingredient1-step11931-tokens50B``). Such names cannot be computed from a step, so the
plan lists the repo's branches (:mod:`inductscan.listing`) and parses each with the suite's
grammar: a tuple of templates, tried in order, whose ``{fields}`` match numbers. A template says
which run a matching branch belongs to and, for a run that branches from another (a stage-2 run
from the end of stage 1), which.

A branch's own token count is rounded (to whole billions, mostly); :func:`tokens_agree` checks
it against the exact count of the suite's token schedule, and a disagreement is reported, never
silently preferred to the schedule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from inductscan.errors import GrammarError

# What each field of a template matches. ``tokens`` may carry decimals (``2.5T``).
FIELDS = {"step": r"\d+", "tokens": r"\d+(?:\.\d+)?", "ingredient": r"\d+", "stage": r"\d+"}
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _fields_of(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


@dataclass(frozen=True)
class BranchPattern:
    """One way a suite names its branches.

    ``template`` is the branch name with ``{step}`` (required) and optionally ``{tokens}``,
    ``{ingredient}``, ``{stage}`` in place of numbers. ``run`` names the run a matching branch
    belongs to (it may use the template's fields, ``stage2-ingredient{ingredient}``; ``None``:
    the catalogued run of the listed repo); ``seed`` is the run's seed, a number or the name of a
    field (an OLMo-2 ingredient's number is its seed). ``token_unit`` is what ``{tokens}`` counts
    in (10**9 for ``...B``). ``continues``: the run this one branches from; its tokens start at
    that run's last listed step (OLMo-2's stage-2 runs start from the end of stage 1).
    """

    template: str
    run: str | None = None
    seed: int | str = 0
    token_unit: int = 10**9
    continues: str | None = None

    def __post_init__(self) -> None:
        fields = _fields_of(self.template)
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise GrammarError(
                f"unknown branch grammar {self.template!r}: no field {{{unknown[0]}}}; "
                f"a template's fields are {', '.join('{' + name + '}' for name in FIELDS)}"
            )
        if "step" not in fields:
            raise GrammarError(f"unknown branch grammar {self.template!r}: it has no {{step}}")
        if len(fields) != len(set(fields)):
            raise GrammarError(f"branch grammar {self.template!r} names a field twice")
        missing = [name for name in _fields_of(self.run or "") if name not in fields]
        if isinstance(self.seed, str) and self.seed not in fields:
            missing.append(self.seed)
        if missing:
            raise GrammarError(f"branch grammar {self.template!r} has no {{{missing[0]}}} to name its run or seed")
        if self.token_unit < 1:
            raise GrammarError(f"branch grammar {self.template!r}: token_unit must be >= 1, got {self.token_unit}")

    @cached_property
    def regex(self) -> re.Pattern:
        parts, position = [], 0
        for match in PLACEHOLDER.finditer(self.template):
            parts.append(re.escape(self.template[position : match.start()]))
            parts.append(f"(?P<{match.group(1)}>{FIELDS[match.group(1)]})")
            position = match.end()
        parts.append(re.escape(self.template[position:]))
        return re.compile("".join(parts))

    def match(self, name: str) -> ParsedBranch | None:
        found = self.regex.fullmatch(name)
        if found is None:
            return None
        values = found.groupdict()
        numbers = {key: int(value) for key, value in values.items() if key != "tokens"}
        run = None if self.run is None else self.run.format(**numbers)
        seed = self.seed if isinstance(self.seed, int) else numbers[self.seed]
        return ParsedBranch(name, run, seed, numbers["step"], values.get("tokens"), self)


@dataclass(frozen=True)
class ParsedBranch:
    """A branch name read by a pattern: its run (None: the repo's catalogued run), seed and step,
    and the token count its name states (text, as written), if any."""

    name: str
    run: str | None
    seed: int
    step: int
    named_tokens: str | None
    pattern: BranchPattern

    def named_count(self) -> tuple[float, int] | None:
        """The name's token count in tokens, and how coarsely it is rounded (one unit of its last
        digit), or None when the name states no count."""
        if self.named_tokens is None:
            return None
        decimals = len(self.named_tokens.partition(".")[2])
        unit = self.pattern.token_unit
        return float(self.named_tokens) * unit, unit / 10**decimals


@dataclass(frozen=True)
class Grammar:
    """A suite's branch names: patterns tried in order (the first that matches wins)."""

    patterns: tuple[BranchPattern, ...]

    def __post_init__(self) -> None:
        if not self.patterns:
            raise GrammarError("a branch grammar needs at least one pattern")

    def parse(self, name: str) -> ParsedBranch | None:
        """The first pattern's reading of ``name``, or None if no pattern matches it."""
        for pattern in self.patterns:
            parsed = pattern.match(name)
            if parsed is not None:
                return parsed
        return None

    def describe(self) -> str:
        return " | ".join(pattern.template for pattern in self.patterns)


def tokens_agree(exact: int, parsed: ParsedBranch) -> bool:
    """Whether the branch name's rounded count can stand for ``exact``: rounded down, up or to the
    nearest (the suites do all three), so within one unit of its last digit. True for a name
    that states no count."""
    named = parsed.named_count()
    if named is None:
        return True
    count, unit = named
    return abs(exact - count) < unit
