"""The plugin index that ``list`` and the leaderboard read without torch agrees with the live registries."""

from fresh_python import python

from robustkit.plugin_index import INDEX_FILE, find
from robustkit.registry import DISABLE_AUTOLOAD_ENV


def test_the_stored_index_is_what_the_registries_hold():
    built = python(
        "from robustkit.plugin_index import build, text; print(text(build()), end='')", **{DISABLE_AUTOLOAD_ENV: "1"}
    )
    assert built == INDEX_FILE.read_text(encoding="utf-8"), (
        "the built-ins changed: run python -m robustkit.plugin_index"
    )


def test_find_takes_any_spelling_the_registry_takes():
    assert find("threats", "LINF")["family"] == "Lp" and find("threats", "fooling")["clean_images"] is False
    assert find("attacks", "one_pixel")["name"] == "one-pixel" and find("attacks", "nope") is None
