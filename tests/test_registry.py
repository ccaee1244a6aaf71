import logging
import textwrap
from dataclasses import dataclass
from typing import ClassVar

import pytest

from robustkit.errors import ConfigError, DuplicateNameError, UnknownNameError
from robustkit.registry import DISABLE_AUTOLOAD_ENV, MODELS, Registry


def fresh(group: str = "robustkit.test-nothing") -> Registry:
    return Registry("widget", builtins="robustkit.errors", group=group)


def test_register_get_list_and_patterns():
    reg = fresh()

    @reg.register
    def alpha(): ...

    @reg.register("beta-two")
    def other(size: int = 3): ...

    reg.register(lambda: None, name="alps")
    assert reg.get("alpha") is alpha
    assert reg.get("Beta_Two") is other  # case and _/- do not matter
    assert reg.list() == ["alpha", "alps", "beta-two"]
    assert reg.list("al*") == ["alpha", "alps"]
    assert "beta-two" in reg and "gamma" not in reg and len(reg) == 3


def test_duplicate_names_are_refused_but_reregistering_the_same_object_is_harmless():
    reg = fresh()

    def one(): ...

    reg.register(one, name="x")
    reg.register(one, name="x")
    with pytest.raises(DuplicateNameError, match="already registered"):
        reg.register(lambda: None, name="X")


def test_unknown_name_suggests_close_names():
    reg = fresh()
    reg.register(lambda: None, name="resnet18")
    with pytest.raises(UnknownNameError, match="did you mean resnet18"):
        reg.get("resnt18")
    with pytest.raises(UnknownNameError, match="available: resnet18"):
        reg.get("zzz")


def test_build_drops_none_and_rejects_unknown_settings():
    reg = fresh()
    reg.register(lambda size=3: size * 2, name="double")
    assert reg.build("double", size=None) == 6
    assert reg.build("double", size=5) == 10
    with pytest.raises(ConfigError, match="double"):
        reg.build("double", colour="red")


@dataclass(frozen=True)
class Widget:
    name: ClassVar[str] = "widget"
    count: int = 1
    scale: float | None = None
    flag: bool = False
    mode: str = "a"
    shape: tuple[int, ...] = ()  # not a plain type: left to the plugin


def test_build_checks_dataclass_settings_against_their_plain_types():
    reg = fresh()
    reg.register(Widget)
    assert reg.build("widget", count=2, scale=3, flag=True, mode="b", shape=(1,)) == Widget(2, 3, True, "b", (1,))
    for key, value, wanted in [
        ("count", "abc", "a whole number"),
        ("count", 2.5, "a whole number"),
        ("count", True, "a whole number"),
        ("scale", "x", "a number"),
        ("flag", 1, "true or false"),
        ("mode", 3, "a word"),
    ]:
        with pytest.raises(ConfigError) as err:
            reg.build("widget", **{key: value})
        assert str(err.value) == f"widget 'widget': {key} must be {wanted}, got {value!r}"
    assert reg.build("widget", shape="anything").shape == "anything"


def test_builtin_models_are_listed_explicitly():
    assert {"lenet5", "smallcnn", "resnet18", "preact_resnet18", "wide_resnet28_10", "vgg11", "vgg16"} <= set(MODELS)


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """A plugin package installed the way pip would: a module plus dist-info with entry points."""
    (tmp_path / "rk_fake_plugin.py").write_text("def tiny_net(info):\n    'A plugin model.'\n    return None\n")
    dist = tmp_path / "rk_fake_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rk-fake-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""
        [robustkit.test-plugins]
        tiny-net = rk_fake_plugin:tiny_net
        broken = rk_fake_plugin:does_not_exist
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_plugins_register_through_the_same_register(fake_distribution, caplog):
    reg = fresh("robustkit.test-plugins")
    with caplog.at_level(logging.WARNING):
        assert reg.list() == ["tiny-net"]
    assert reg.get("tiny-net").__doc__ == "A plugin model."
    assert "skipping widget plugin 'broken'" in caplog.text  # a broken plugin is skipped, loudly


def test_plugin_autoload_can_be_switched_off(fake_distribution, monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert fresh("robustkit.test-plugins").list() == []


def test_a_plugin_cannot_take_a_builtin_name(fake_distribution, caplog):
    reg = fresh("robustkit.test-plugins")
    reg.register(lambda: None, name="tiny-net")  # registered before autoload, as a built-in would be
    with caplog.at_level(logging.WARNING):
        reg.list()
    assert "already registered" in caplog.text
