"""Adapters leave the studio: merge (and, next, GGUF, Ollama, an OpenAI-compatible server)."""
