"""Find the learning rate: a sweep job trains the same start for a few dozen steps at each of a few
learning rates, scores each on the job's held-out examples with the role's metric (BLEU for a
translator, the references' loss otherwise), and names the best.

bench/training_defaults.py's method, as one more kind of job in the same lifecycle: checked once
before anything exists, detached, queued for the devices, cancelled and resumed (the rates already
scored are kept; the one in progress starts again), with its points in `sweep_points`. The training
page charts score against learning rate and fills the field with the best; the CLI takes
`--lr-sweep 1e-4,5e-4,1e-3` or a log-spaced range `--lr-sweep 1e-5:1e-2:6`, each rate trained
`--max-steps` steps (24 when not given). Nothing is published: a sweep's models are thrown away.
"""

from core.errors import UserError

MAX_RATES = 12
DEFAULT_STEPS = 24
# around the size-based default: a tenth, a third, itself and three times it
AROUND_DEFAULT = (0.1, 1 / 3, 1.0, 3.0)


def rates(text: str) -> list[float]:
    """The learning rates of `text`, ascending: "1e-4,5e-4,1e-3" or "low:high:count" (log-spaced)."""
    text = text.strip()
    try:
        if ":" in text:
            low_text, high_text, count_text = text.split(":")
            low, high, count = float(low_text), float(high_text), int(count_text)
            if low <= 0 or high <= 0:
                raise UserError("ERR_SWEEP_NOT_POSITIVE", text=text)
            if count < 2 or high <= low:
                raise UserError("ERR_SWEEP_FEW", text=text)
            values = [low * (high / low) ** (i / (count - 1)) for i in range(count)]
        else:
            values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError("ERR_SWEEP_SYNTAX", text=text) from None
    if any(value <= 0 for value in values):
        raise UserError("ERR_SWEEP_NOT_POSITIVE", text=text)
    if any(value > 1 for value in values):
        raise UserError("ERR_SWEEP_TOO_HIGH", text=text)
    chosen = sorted({float(f"{value:.3g}") for value in values})
    if len(chosen) < 2:
        raise UserError("ERR_SWEEP_FEW", text=text)
    if len(chosen) > MAX_RATES:
        raise UserError("ERR_SWEEP_MANY", text=text, count=len(chosen), most=MAX_RATES)
    return chosen


def around(lr: float) -> str:
    """The page's default sweep around a learning rate (the size-based default)."""
    return ",".join(f"{min(lr * factor, 1.0):.3g}" for factor in AROUND_DEFAULT)


def check_grid(config) -> None:
    """What a sweep cannot do, refused before anything exists."""
    if not config.lr_sweep:
        return
    rates(config.lr_sweep)
    if config.prefers or config.rewarded:
        raise UserError("ERR_SWEEP_METHOD", method=config.method.upper())
    if config.processes > 1:
        raise UserError("ERR_SWEEP_PROCESSES")
    if config.holdout <= 0 or config.skip_evaluation:
        raise UserError("ERR_SWEEP_HOLDOUT")


def steps(config) -> int:
    return config.max_steps if config.max_steps > 0 else DEFAULT_STEPS


def better(kind: str, score: dict, other: dict) -> bool:
    """Whether `score` beats `other` on the role's metric: BLEU higher, loss lower."""
    if kind == "translation":
        return score["bleu"] > other["bleu"]
    return score["loss"] < other["loss"]


def best(points: list):
    """The point with the best held-out score (None without points)."""
    chosen = None
    for point in points:
        if chosen is None or better(point.kind, point.scores, chosen.scores):
            chosen = point
    return chosen
