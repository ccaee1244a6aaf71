"""Defense plugins, one per file; ``from defenses import MadryTraining``.

Built-in defenses are imported here explicitly (importing a module registers it in
``robustkit.registry.DEFENSES``); third-party defenses come from the ``robustkit.defenses``
entry-point group. Standard training (no defense) lives in ``robustkit.train``.
"""

__all__: list[str] = []
