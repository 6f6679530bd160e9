"""Where the product keeps its state: one folder, `TRANSLATOR_HOME` (default `./workspace`).

Deleting that folder resets the product.
"""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def home() -> Path:
    configured = os.environ.get("TRANSLATOR_HOME")
    path = Path(configured).expanduser() if configured else PROJECT_ROOT / "workspace"
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def registry_path() -> Path:
    return home() / "registry.db"


def models_dir() -> Path:
    return _subdir("models")


def adapters_dir() -> Path:
    return _subdir("adapters")


def jobs_dir() -> Path:
    return _subdir("jobs")


def tokenized_cache_dir() -> Path:
    """Tokenised training examples, by what they were made from (training/jobs/plans.py)."""
    return _subdir("cache/tokenized")


def preference_data_dir() -> Path:
    """Preference data the studio made (from votes, from a translator's mistakes) or was given."""
    return _subdir("preference-data")


def files_dir() -> Path:
    """Files given through the API's /v1/files (training.jobs.files)."""
    return _subdir("files")


def _subdir(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
