"""Models, prompt formats, roles, adapters and generation. Pages and the trainer build on it.

Importing `engine` teaches transformers' Auto classes the Yuan 2.0 architecture (`engine.yuan`), so
`AutoModelForCausalLM.from_pretrained(yuan_folder)` builds our port and never the checkpoint's remote
code. The registration waits until transformers itself is imported: the trainer validates its input,
and the CLIs answer bad flags, without paying seconds for torch.
"""

import importlib
import importlib.abc
import importlib.util
import sys


def _register_yuan() -> None:
    importlib.import_module("engine.yuan")  # registers itself once its classes exist


class _RegisterAfterTransformersImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _register_yuan()

        spec.loader.exec_module = exec_module
        return spec


if "transformers" in sys.modules:
    _register_yuan()
elif not any(isinstance(finder, _RegisterAfterTransformersImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformersImport())
