"""Adapters leave the studio: merged (`merge`), as GGUF for llama.cpp and Ollama (`gguf`,
`llama_cpp`, `ollama`), pushed to a hub (`hub`), checked for vLLM (`vllm`); `requests` is what the
Adapters page asks for and `worker` the detached process of each export (and of an API server)."""
