"""``robustkit train``: train a registered model, optionally with a defense, and save a checkpoint.

Torch and the plugins are imported when the command runs (and, for the recipe defaults, when its help is shown).
"""

from __future__ import annotations

from pathlib import Path

import click

from robustkit.cli.attack_settings import key_values
from robustkit.cli.options import (
    build_defense,
    dataset_options,
    open_dataset,
    runtime_options,
)
from robustkit.cli.table import echo_table, with_interval
from robustkit.plugin_index import entries


def recipe_defaults(setting: str) -> str:
    """Each model's own default for ``setting``: the value most models train with, then every model
    (and a library model) that trains otherwise, then the defenses that change it (``1; lenet5 4,
    smallcnn 3; under fast, madry, trades 10``)."""
    from collections import Counter

    from robustkit.models import TORCHVISION_PREFIX
    from robustkit.registry import DEFENSES, MODELS
    from robustkit.training.loop import TrainConfig

    def shown(value) -> str:
        return (
            ("on" if value else "off")
            if isinstance(value, bool)
            else f"{value:g}"
            if isinstance(value, float)
            else str(value)
        )

    models = {name: TrainConfig.for_model(name).recipe()[setting] for name in MODELS.list()}
    models["library models"] = TrainConfig.for_model(f"{TORCHVISION_PREFIX}any").recipe()[setting]
    lead = Counter(models.values()).most_common(1)[0][0]
    others = ", ".join(f"{name} {shown(value)}" for name, value in models.items() if value != lead)
    text = shown(lead) + (f"; {others}" if others else "")
    defenses: dict = {}
    for name in DEFENSES.list():
        if setting in DEFENSES.get(name).recipe:
            defenses.setdefault(DEFENSES.get(name).recipe[setting], []).append(name)
    return text + "".join(f"; under {', '.join(names)} {shown(value)}" for value, names in defenses.items())


class RecipeOption(click.Option):
    """A training setting whose help ends in each model's own default, read from the registries only
    when help is shown (so starting the CLI loads no plugin)."""

    def __init__(self, *args, setting: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.setting, self.plain_help = setting, self.help

    def get_help_record(self, ctx: click.Context):
        self.help = f"{self.plain_help} [{recipe_defaults(self.setting)}]"
        return super().get_help_record(ctx)


def _training_norms() -> list[str]:
    """The threat models defenses train in (``ThreatModel.trains_defenses``), the default first: from the
    plugin index, so the command's help imports no torch."""
    offered = [entry for entry in entries("threats") if entry["trains_defenses"]]
    return [entry["name"] for entry in sorted(offered, key=lambda entry: not entry["default"])]


TRAINING_NORMS = _training_norms()


@click.command()
@click.option("--model", "model_name", required=True, help="Registered model name (robustkit list models).")
@dataset_options
@click.option("--defense", default="none", show_default=True, help="Registered defense (robustkit list defenses).")
@click.option("--eps", help="Defense budget, e.g. 0.1 or 8/255 [0.1 L∞ / 1.5 L2 on grey data; 8/255 / 0.5 on colour].")
@click.option(
    "--norm",
    type=click.Choice(TRAINING_NORMS),
    default=TRAINING_NORMS[0],
    show_default=True,
    help="Defense threat model.",
)
@click.option("--steps", type=click.IntRange(min=1), help="Inner attack steps (madry, trades).")
@click.option("--step-size", help="Inner attack step size, e.g. 0.01 or 2/255.")
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any defense setting, e.g. --defense gaussian-aug -o sigma=0.25 (repeatable).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), cls=RecipeOption, setting="epochs", help="Passes over the training set."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    cls=RecipeOption,
    setting="batch_size",
    help="Global training batch size.",
)
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), cls=RecipeOption, setting="lr", help="Peak learning rate."
)
@click.option(
    "--optimizer",
    type=click.Choice(["sgd", "adam"]),
    cls=RecipeOption,
    setting="optimizer",
    help="SGD with Nesterov momentum, or AdamW.",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "bf16", "fp32"]),
    cls=RecipeOption,
    setting="precision",
    help="bf16 autocast where fast.",
)
@click.option("--augment/--no-augment", default=None, cls=RecipeOption, setting="augment", help="Random crop and flip.")
@click.option("--n-train", type=click.IntRange(min=1), help="Train on a seeded subset of this many images.")
@click.option("--weights", help="Pretrained weights for torchvision:<name> models (e.g. DEFAULT).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last saved state.")
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    metavar="N",
    help="Also save the resume state every N optimisation steps, mid-epoch [every epoch only].",
)
@runtime_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Checkpoint path [the cache; a path of its own for settings beyond the default recipe].",
)
@click.option("--force", is_flag=True, help="Replace a checkpoint of another recipe at the path.")
def train(
    model_name,
    dataset,
    data_dir,
    download,
    image_size,
    workers,
    defense,
    eps,
    norm,
    steps,
    step_size,
    options,
    epochs,
    batch_size,
    lr,
    optimizer,
    precision,
    augment,
    n_train,
    weights,
    resume,
    checkpoint_every,
    device,
    seed,
    out,
    force,
) -> None:
    """Train MODEL on a data set and save a safetensors checkpoint with its metadata.

    Under torchrun (torchrun --nproc-per-node N -m robustkit train ...) every process trains on its
    shard through DistributedDataParallel (gloo on CPU, NCCL on GPU); rank 0 writes the checkpoint.
    Each model trains with its own recipe (the defaults in brackets below); settings that change it
    write to a recipe-tagged cache path, so the default-recipe checkpoint is never replaced by another
    recipe's (a path holding another recipe needs --force). A setting equal to the model's own default
    changes nothing and writes to the default path.
    """
    from robustkit.device import resolve_device
    from robustkit.models import check_model_name
    from robustkit.results.intervals import fraction_interval
    from robustkit.threats import parse_eps
    from robustkit.training import distributed
    from robustkit.weights.cache import train_and_save

    check_model_name(model_name)  # an unknown name fails before anything else is said or done
    device = resolve_device(device)
    distributed.init_from_env(device)
    data = open_dataset(dataset, data_dir, download, image_size, workers)
    chosen = build_defense(
        defense,
        eps=eps,
        norm=norm,
        channels=data.info.input_shape[0],
        steps=steps,
        step_size=parse_eps(step_size, "step size") if step_size else None,
        **key_values(options, {"steps": steps, "step_size": step_size}),
    )
    device = distributed.local_device(device)
    _, record, result, path = train_and_save(
        model_name,
        data,
        device=device,
        defense=chosen,
        seed=seed,
        out=out,
        n_train=n_train,
        weights=weights,
        resume=resume,
        force=force,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        precision=precision,
        augment=augment,
        checkpoint_every=checkpoint_every,
    )
    if not distributed.is_main():
        return
    last = result.history[-1]
    tested = fraction_interval(result.test_accuracy, len(data.test))  # the fraction is correct / len(test): exact
    echo_table(
        ["model", "dataset", "defense", "epochs", "train acc", "test acc [95 % CI]", "seconds", "img/s"],
        [
            [
                model_name,
                record.dataset,
                record.defense,
                record.epochs,
                f"{last['train_accuracy']:.4f}",
                with_interval(result.test_accuracy, tested),
                f"{result.seconds:.0f}",
                f"{result.images_per_second:.0f}",
            ]
        ],
    )
    if result.resumed:  # the table's time and rate are the whole run's, as the epoch lines are
        click.echo(
            f"seconds and img/s cover the whole run: {result.seconds_here:.0f} s of it since resuming at epoch "
            f"{result.resumed_from_epoch + 1}"
        )
    click.echo(f"checkpoint: {path}")
