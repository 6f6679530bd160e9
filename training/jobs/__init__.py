"""A job from request to end, outside the trainer: the checks and the stored plan (`lifecycle`,
`plans`), learning-rate sweeps, where metrics are tracked, and what the page's panel shows."""
