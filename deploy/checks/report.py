"""How the checks under deploy/ end: a FAIL line per problem, else one ok line."""

from __future__ import annotations


def finish(problems: list[str], subject: str, ok: str) -> int:
    """Prints the problems (or `ok`) about `subject`; the exit status."""
    prefix = f"{subject}: " if subject else ""
    for p in problems:
        print(f"  FAIL {prefix}{p}")
    if problems:
        return 1
    print(f"  ok   {prefix}{ok}")
    return 0
