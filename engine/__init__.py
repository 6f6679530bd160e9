"""Models, prompt formats, roles, adapters and generation. Pages and the trainer build on it."""
