"""The OpenAI-compatible API server: its protocol (`protocol`, from which `openapi` is generated),
the app (`api`), the batching scheduler, the process (`server`), detached serving tasks (`tasks`)
and the chat page's client for a remote server (`remote`)."""
