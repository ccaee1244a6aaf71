"""mkdocs hook: lists the per-plugin reference pages (one per attack, written by gen_reference.py) under
their kind in the nav, so a new attack gets its page and its nav entry without a line of mkdocs.yml."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("gen_reference", Path(__file__).with_name("gen_reference.py"))
gen_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_reference)


def on_config(config):
    gen_reference.builtins_only()
    pages = gen_reference.plugin_pages()
    indexes = {Path(path).parent.as_posix() + "/index.md" for path in pages}

    def expand(items):
        out = []
        for item in items:
            ((title, value),) = item.items() if isinstance(item, dict) else ((None, item),)
            if isinstance(value, list):
                value = expand(value)
            elif value in indexes:
                folder = Path(value).parent.as_posix()
                value = [{"Overview": value}] + [
                    {name: path} for path, name in pages.items() if path.startswith(folder + "/")
                ]
            out.append({title: value} if title is not None else value)
        return out

    config["nav"] = expand(config["nav"])
    return config
