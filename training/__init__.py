"""Training, in rooms by job (each floor imports only the floors below it, pyproject.toml):

- `train`: the trainer's command line (`python -m training.train`);
- `trainer/`: the trainer process: the job it runs, the fit, preference tuning, progress, checkpoints;
- `jobs/`: a job from request to end: checks, the stored plan, learning-rate sweeps, tracking, the panel;
- `evaluation/`: scores, their significance, held-out evaluation and a translator's own mistakes;
- `data/`: datasets, examples and their label masks, preference pairs, previews, batching;
- `parallel/`: processes and devices: torchrun and accelerate, launch commands, memory, FSDP;
- `config`, `defaults`: the settings and their defaults by model size, which every floor reads.
"""
