"""The trainer process: the job it runs (`job`), the fit itself and preference tuning, progress and
checkpoints as it trains, cancellation by signal, and the learning-rate sweep's trials."""
