"""``robustkit train``: train a registered model and save a checkpoint with its record."""

from __future__ import annotations

from pathlib import Path

import click

from robustkit.cli.options import dataset_options, open_dataset, runtime_options
from robustkit.cli.table import echo_table
from robustkit.device import resolve_device
from robustkit.pipeline import train_and_save


@click.command()
@click.option("--model", "model_name", required=True, help="Registered model name (robustkit list models).")
@dataset_options
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training set [model's recipe].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Training batch size [128].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate [0.1].")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), help="SGD with Nesterov momentum, or AdamW [sgd].")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), help="bf16 autocast where fast [auto].")
@click.option("--augment/--no-augment", default=None, help="Random crop and flip [off].")
@click.option("--n-train", type=click.IntRange(min=1), help="Train on a seeded subset of this many images.")
@click.option("--weights", help="Pretrained weights for torchvision:<name> models (e.g. DEFAULT).")
@runtime_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Checkpoint path [the cache].")
def train(model_name, dataset, data_dir, download, epochs, batch_size, lr, optimizer, precision, augment,
          n_train, weights, device, seed, out) -> None:  # fmt: skip
    """Train MODEL on a data set and save a safetensors checkpoint with its metadata."""
    data = open_dataset(dataset, data_dir, download)
    _, record, result, path = train_and_save(
        model_name, data, device=resolve_device(device), seed=seed, out=out, n_train=n_train, weights=weights,
        epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, precision=precision, augment=augment,
    )  # fmt: skip
    last = result.history[-1]
    echo_table(
        ["model", "dataset", "epochs", "train acc", "test acc", "seconds", "img/s"],
        [[model_name, record.dataset, record.epochs, f"{last['train_accuracy']:.4f}",
          f"{result.test_accuracy:.4f}", f"{result.seconds:.0f}", f"{last['images_per_second']:.0f}"]],
    )  # fmt: skip
    click.echo(f"checkpoint: {path}")
