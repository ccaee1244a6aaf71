"""Attack plugins, one per file; ``from attacks import PGD``.

Built-in attacks are imported here explicitly (importing a module registers it in
``robustkit.registry.ATTACKS``); third-party attacks come from the ``robustkit.attacks``
entry-point group. The attack interface and the first attacks arrive with the attack-core issue.
"""

__all__: list[str] = []
