"""Writes the reference pages (attacks, defenses, threat models, data sets, models) from the live registries
at every site build (mkdocs-gen-files), so a new plugin appears on the site without a line retyped.

Each entry: its docstring (the paper, the threat model, what the defaults cost), a table of its settings
with their types and defaults, the paper's settings where the plugin names them (``paper()``), and the file
it lives in. ``python docs/gen_reference.py`` prints the pages instead (to read them without a build).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from robustkit.plugin_index import REGISTRIES, THREAT_TRAITS  # noqa: E402
from robustkit.registry import DISABLE_AUTOLOAD_ENV  # noqa: E402


def builtins_only() -> None:
    """The site documents robustkit's own plugins, whatever third-party ones the builder has installed
    (set before a registry first loads; a test importing this module is left as it is)."""
    os.environ.setdefault(DISABLE_AUTOLOAD_ENV, "1")


PAGES = {  # registry kind → (page, title, what the page says first)
    "attacks": (
        "reference/attacks/index.md",
        "Attacks",
        "Every registered attack: `--attack NAME` on the command line, "
        "`ATTACKS.build(NAME, ...)` or the class (`from attacks import PGD`) in Python.",
    ),
    "defenses": (
        "reference/defenses.md",
        "Defenses",
        "Every registered defense: `--defense NAME` on `train` and `evaluate`, `from defenses import ...` in Python.",
    ),
    "threats": (
        "reference/threats.md",
        "Threat models",
        "Every registered threat model: `--norm NAME`. "
        "See [Threat models](../explanation/threat-models.md) for what they mean.",
    ),
    "datasets": (
        "reference/datasets.md",
        "Data sets",
        "Every registered data set: `--dataset NAME`, "
        "`robustkit.get_dataset(NAME)`. Options without a flag go in a suite's `dataset_options`.",
    ),
    "models": (
        "reference/models.md",
        "Models",
        "Every registered architecture: `--model NAME`, "
        "`robustkit.get_model(NAME, info)`. Besides these, `torchvision:<name>`, `timm:<name>` and "
        "`robustbench:[L2/]<name>` name another library's models ([guide](../guides/zoo-models.md)).",
    ),
}
NAMES = {  # what the docstrings' examples call by name; tests/test_docs.py runs each example with these
    "model": "any `nn.Module` classifier",
    "x": "a batch of images in [0, 1] (N×C×H×W)",
    "y": "their labels",
    "t": "target classes",
    "noisy_model": "a randomised model (`gaussian-noise`)",
    "train_images": "training images",
    "x_test": "unseen images",
    "y_test": "their labels",
    "data": "a data set (`robustkit.get_dataset`)",
    "blank": "one mid-grey image per class",
    "classes": "the classes sought (`torch.arange(10)`)",
}
PLUMBING = {"self", "info", "data_dir", "download", "name"}  # arguments every entry of a kind takes


def docstring_markdown(doc: str) -> str:
    """A docstring as Markdown: an ``Example::`` block becomes a fenced Python block."""
    out, lines, i = [], doc.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            out.append(line.rstrip()[:-1])
            i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i][4:])
                i += 1
            out += ["", "```python", *"\n".join(block).strip("\n").splitlines(), "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def settings_rows(plugin: Any) -> list[tuple[str, str, str, str]]:
    """(name, type, default, paper's value) per setting a user may give."""
    paper = plugin.paper() if callable(getattr(plugin, "paper", None)) else None
    default = plugin() if paper is not None else None
    if dataclasses.is_dataclass(plugin):
        rows = []
        for f in dataclasses.fields(plugin):
            if not f.init or f.name in PLUMBING:
                continue
            if f.default is not dataclasses.MISSING:
                value = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                value = repr(f.default_factory())
            else:
                value = "required"
            theirs = ""
            if paper is not None and getattr(paper, f.name) != getattr(default, f.name):
                theirs = repr(getattr(paper, f.name))
            rows.append((f.name, str(f.type), value, theirs))
        return rows
    try:
        params = inspect.signature(plugin).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        (
            p.name,
            "" if p.annotation is inspect.Parameter.empty else str(p.annotation).replace("'", ""),
            "required" if p.default is inspect.Parameter.empty else repr(p.default),
            "",
        )
        for p in params
        if p.name not in PLUMBING and p.kind is not p.VAR_KEYWORD
    ]


def cell(text: str) -> str:
    return "`" + text.replace(" | ", " or ") + "`" if text else ""  # a pipe, even escaped, shows in a code cell


def entry(kind: str, name: str, plugin: Any) -> str:
    doc = inspect.getdoc(plugin) or "(no docstring)"
    first, _, rest = doc.partition("\n\n")  # the summary may run over lines
    first = " ".join(first.split())
    source = Path(inspect.getsourcefile(plugin)).resolve().relative_to(ROOT)
    head = [
        f"## {name}" if kind not in SPLIT else f"# {name}",
        "",
        first,
        "",
        f"`{plugin.__module__}.{plugin.__qualname__}`, in `{source}`.",
        "",
    ]
    rows = settings_rows(plugin)
    if rows:
        paper = any(r[3] for r in rows)
        head += [
            "| setting | type | default |" + (" paper |" if paper else ""),
            "|---|---|---|" + ("---|" if paper else ""),
        ]
        head += [
            "| " + " | ".join([f"`{r[0]}`", cell(r[1]), cell(r[2])] + ([cell(r[3])] if paper else [])) + " |"
            for r in rows
        ]
        head.append("")
    if kind == "threats":
        head += ["| trait | value |", "|---|---|"]
        head += [f"| `{t}` | {cell(repr(getattr(plugin, t)))} |" for t in THREAT_TRAITS]
        head.append("")
    if kind == "attacks":
        head += [f"Threat models: {', '.join(f'`{n}`' for n in getattr(plugin, 'norms', ()))}.", ""]
    return "\n".join(head) + "\n" + docstring_markdown(rest.strip()) + "\n"


SPLIT = {"attacks"}  # kinds with a page per plugin (long entries), listed in the nav by docs/hooks.py
GENERATED = "*Generated from the registry at build time (`docs/gen_reference.py`).*"
EXAMPLES = "In the examples, " + "; ".join(f"`{k}` is {v}" for k, v in NAMES.items()) + "."


def page(kind: str) -> str:
    """The kind's page: every entry, or for a split kind an index table linking each entry's own page."""
    _, title, intro = PAGES[kind]
    registry = REGISTRIES[kind]
    names = registry.list()
    parts = [f"# {title}", "", GENERATED, "", intro, ""]
    if kind in SPLIT:
        parts += ["| name | what it is | threat models |", "|---|---|---|"]
        for n in names:
            plugin = registry.get(n)
            first = " ".join((inspect.getdoc(plugin) or "").partition("\n\n")[0].split()).replace("|", "/")
            parts.append(f"| [{n}]({n}.md) | {first} | {', '.join(getattr(plugin, 'norms', ()))} |")
        return "\n".join(parts) + "\n"
    parts += [EXAMPLES, "", " · ".join(f"[{n}](#{anchor(n)})" for n in names), ""]
    parts += [entry(kind, n, registry.get(n)) for n in names]
    return "\n".join(parts)


def plugin_page(kind: str, name: str) -> str:
    """One entry of a split kind as a page of its own."""
    heading, _, body = entry(kind, name, REGISTRIES[kind].get(name)).partition("\n\n")
    return "\n\n".join([heading, GENERATED, body.rstrip(), EXAMPLES]) + "\n"


def plugin_pages() -> dict[str, str]:
    """path → title of every per-plugin page (the nav that docs/hooks.py adds)."""
    return {
        f"{Path(PAGES[kind][0]).parent.as_posix()}/{name}.md": name
        for kind in SPLIT
        for name in REGISTRIES[kind].list()
    }


def anchor(name: str) -> str:
    """The id the toc extension gives a ``## name`` heading."""
    return re.sub(r"[^\w-]", "", name.lower().replace(" ", "-"))


def schema() -> str:
    """The results store's tables (``robustkit/results/store.py``): each column, its SQLite type and the
    comment its line carries in the source."""
    from robustkit.results import store

    comments = {}
    for line in inspect.getsource(store).splitlines():
        code, _, comment = line.partition("  # ")
        for key in re.findall(r'"(\w+)": "', code):
            if comment or key not in comments:  # a column of two tables: the line that says something
                comments[key] = comment.strip()
    parts = []
    for table, columns in store.TABLES.items():
        parts += ["", f"## Table `{table}`", "", "| column | SQLite type | note |", "|---|---|---|"]
        parts += [f"| `{c}` | {kind} | {comments.get(c, '')} |" for c, kind in columns.items()]
    return "\n".join(parts) + "\n"


def benchmarks() -> str:
    """``benchmarks/*.py``, each with its docstring's first paragraph."""
    import ast

    parts = [
        "# Benchmark scripts",
        "",
        "*Generated from `benchmarks/*.py` at build time (`docs/gen_reference.py`).* "
        "Run one with `.venv/bin/python benchmarks/NAME.py`; each prints its table.",
        "",
    ]
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or "(no docstring)"
        parts += [f"## {script.name}", "", doc.split("\n\n")[0], ""]
    return "\n".join(parts)


def write_pages() -> None:
    """Into the site being built (mkdocs-gen-files runs this file as ``<run_path>``)."""
    import mkdocs_gen_files

    builtins_only()
    for kind, (path, _, _) in PAGES.items():
        with mkdocs_gen_files.open(path, "w") as out:
            out.write(page(kind))
    for path, name in plugin_pages().items():
        kind = next(k for k in SPLIT if path.startswith(Path(PAGES[k][0]).parent.as_posix()))
        with mkdocs_gen_files.open(path, "w") as out:
            out.write(plugin_page(kind, name))
    with mkdocs_gen_files.open("reference/benchmarks.md", "w") as out:
        out.write(benchmarks())
    with mkdocs_gen_files.open("reference/record.md", "a") as out:  # after the page's hand-written prose
        out.write(schema())


if __name__ == "__main__":
    builtins_only()
    print("\n".join(page(kind) for kind in PAGES) + schema())
elif __name__ == "<run_path>":
    write_pages()
