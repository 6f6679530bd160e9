"""Training: data validation, tokenisation with label masks, the trainer CLI and job helpers."""
