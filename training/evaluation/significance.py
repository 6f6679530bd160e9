"""Is an adapter really better? sacrebleu's paired bootstrap resampling over the same sentences.

Both systems' translations of one evaluation set are resampled together 1,000 times (sacrebleu's
default seed, so a figure is reproducible): each score gets its 95% confidence interval, and the
difference gets the p-value of arising by chance (Koehn 2004, as sacrebleu implements it: the test
is on the absolute difference, so the sign of the gain says which way). The prediction files
written by training/evaluation/evaluate.py hold what is needed.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

RESAMPLES = 1000
SIGNIFICANCE_LEVEL = 0.05
_METRIC_NAMES = {"BLEU": "bleu", "chrF2": "chrf"}


@dataclass(frozen=True)
class Comparison:
    metric: str  # bleu | chrf
    system: float
    system_ci: float  # half-width of the 95% interval: the score is system ± system_ci
    baseline: float
    baseline_ci: float
    p_value: float  # of a difference this large arising by chance
    difference_low: float = 0.0  # the 95% interval of system - baseline over the same resamples
    difference_high: float = 0.0

    @property
    def difference(self) -> float:
        return self.system - self.baseline

    @property
    def significant(self) -> bool:
        # Two identical systems get sacrebleu's smallest p-value (no resample beats a zero difference).
        return self.p_value < SIGNIFICANCE_LEVEL and self.system != self.baseline

    @property
    def verdict(self) -> str:
        """better, worse, or unclear (the difference may be chance)."""
        if not self.significant:
            return "unclear"
        return "better" if self.system > self.baseline else "worse"


def paired_bootstrap(
    references: list[str], system: list[str], baseline: list[str]
) -> tuple[dict[str, Comparison], str]:
    """BLEU (zh tokenizer) and chrF of `system` against `baseline`, with the test's signatures."""
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    if not (len(references) == len(system) == len(baseline)) or not references:
        raise UserError("ERR_NOT_PAIRED")
    test = PairedTest(
        [("baseline", baseline), ("system", system)],
        {"BLEU": BLEU(tokenize="zh"), "chrF2": CHRF()},
        [references],
        test_type="bs",
        n_samples=RESAMPLES,
    )
    signatures, results = test()
    comparisons = {}
    for name, metric in _METRIC_NAMES.items():
        base, mine = results[name]
        low, high = _difference_interval(test.metrics[name], references, system, baseline)
        comparisons[metric] = Comparison(
            metric=metric,
            system=float(mine.score),
            system_ci=float(mine.ci),
            baseline=float(base.score),
            baseline_ci=float(base.ci),
            p_value=float(mine.p_value),
            difference_low=low,
            difference_high=high,
        )
    signature = " | ".join(f"{name} {signatures[name]}" for name in _METRIC_NAMES)
    return comparisons, signature


def _difference_interval(metric, references, system, baseline) -> tuple[float, float]:
    """The 95% interval of the difference, on the resamples sacrebleu's test draws (same seed and
    indices): the test gives each system's interval and a p-value, not the gain's interval."""
    import os

    import numpy as np

    seed = int(os.environ.get("SACREBLEU_SEED", "12345"))
    indices = np.random.default_rng(seed).choice(len(system), size=(RESAMPLES, len(system)), replace=True)
    scores = []
    for hypotheses in (system, baseline):
        stats = np.array(metric._extract_corpus_statistics(hypotheses, [references]), dtype="float32")
        scores.append(np.array([metric._compute_score_from_stats(s.sum(0)).score for s in stats[indices]]))
    differences = np.sort(scores[0] - scores[1])
    edge = RESAMPLES // 40  # sacrebleu's own 95% bounds (estimate_ci)
    return float(differences[edge]), float(differences[RESAMPLES - edge - 1])


def compare_prediction_files(system_file: Path, baseline_file: Path) -> tuple[dict[str, Comparison], str]:
    """The paired test on two evaluations of the same examples (refused when they differ)."""
    system, baseline = _read(system_file), _read(baseline_file)
    if [(r["input"], r["reference"]) for r in system] != [(r["input"], r["reference"]) for r in baseline]:
        raise UserError("ERR_NOT_PAIRED")
    return paired_bootstrap(
        [r["reference"] for r in system], [r["output"] for r in system], [r["output"] for r in baseline]
    )


def _read(path: Path) -> list[dict]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as error:
        raise UserError("ERR_PREDICTIONS_UNREADABLE", path=path, error=error) from None
