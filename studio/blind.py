"""Blind A/B: two answers to one prompt in random order, names hidden until the person votes.

The order is drawn per round, so position (people favour the first answer) cannot favour either
side on average; the vote is stored against the names in a fixed order, so a pair's votes add up
(registry/votes.py). Win rates come with a Wilson 95% interval over the decisive votes.
"""

import math
import random
from dataclasses import dataclass

from registry import votes

Z_95 = 1.959964


@dataclass(frozen=True)
class Round:
    prompt: str
    base_model: str
    shown: tuple[str, str]  # the adapter names behind A and B; "" is the base model alone
    answers: tuple[str, str]
    # what rebuilds the prompt behind each answer: {"role": Role.as_dict(), "prompt_format": str}
    contexts: tuple[dict, dict] = ({}, {})


def context(role, prompt_format: str) -> dict:
    """What a vote keeps of how one side was asked, so the vote can become a training pair."""
    return {"role": role.as_dict(), "prompt_format": prompt_format}


def contenders(chosen: list[str]) -> tuple[str, str]:
    """Two chosen adapters face each other; one faces the base model alone ("")."""
    return (chosen[0], chosen[1]) if len(chosen) >= 2 else (chosen[0], "")


def draw_order(first: str, second: str, rng: random.Random | None = None) -> tuple[str, str]:
    pair = (first, second)
    return pair if (rng or random).random() < 0.5 else (second, first)


def record(db, round_: Round, choice: str, owner_id: int | None = None) -> dict:
    """Store a vote given as the person saw it: "a", "b" or "tie" (by `owner_id`, in team mode)."""
    if choice not in ("a", "b", "tie"):
        raise ValueError(f"a vote is a, b or tie, not {choice!r}")
    names, answers, contexts = list(round_.shown), list(round_.answers), list(round_.contexts)
    if names[0] > names[1]:
        names, answers, contexts = names[::-1], answers[::-1], contexts[::-1]
        choice = {"a": "b", "b": "a"}.get(choice, choice)
    return votes.store(
        db,
        base_model=round_.base_model,
        first=names[0],
        second=names[1],
        winner={"a": "first", "b": "second", "tie": "tie"}[choice],
        prompt=round_.prompt,
        first_answer=answers[0],
        second_answer=answers[1],
        first_context=contexts[0],
        second_context=contexts[1],
        owner_id=owner_id,
    )


def wilson_interval(wins: int, trials: int) -> tuple[float, float]:
    """The 95% interval of a win rate (Wilson score interval: sound for few votes and near 0 or 1)."""
    if trials == 0:
        return 0.0, 1.0
    rate = wins / trials
    centre = rate + Z_95**2 / (2 * trials)
    spread = Z_95 * math.sqrt(rate * (1 - rate) / trials + Z_95**2 / (4 * trials**2))
    scale = 1 + Z_95**2 / trials
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def standings(db) -> list[dict]:
    """Per pair: votes, ties, and the first side's win rate among decisive votes with its interval."""
    table = []
    for row in votes.tallies(db):
        decisive = row["first_wins"] + row["second_wins"]
        low, high = wilson_interval(row["first_wins"], decisive)
        table.append(
            {
                **row,
                "first_rate": row["first_wins"] / decisive if decisive else None,
                "low": low,
                "high": high,
            }
        )
    return table
