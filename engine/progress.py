"""How a long model step (a download, a conversion) reports how far it got: to the caller's
callback (a page's progress bar), else to a terminal progress bar."""

from collections.abc import Callable

Progress = Callable[[float, str], None]


def reporter(progress: Progress | None, title: str) -> Progress:
    if progress is not None:
        return lambda fraction, stage: progress(fraction, f"{title}: {stage}")
    from tqdm.auto import tqdm

    bar = tqdm(total=100, desc=title, unit="%", leave=False)

    def report(fraction: float, stage: str) -> None:
        bar.set_postfix_str(stage)
        bar.update(max(0, round(fraction * 100) - bar.n))
        if fraction >= 1.0:
            bar.close()

    return report
