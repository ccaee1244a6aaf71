"""``robustkit train``: train a registered model and save a checkpoint with its record."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import click

from robustkit import paths
from robustkit.checkpoint import CheckpointRecord, save_checkpoint
from robustkit.cli.options import dataset_options, open_dataset, runtime_options
from robustkit.cli.table import echo_table
from robustkit.device import resolve_device
from robustkit.models import get_model
from robustkit.train import TrainConfig, train_model

log = logging.getLogger(__name__)


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
    config = TrainConfig.for_model(
        model_name, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
        precision=precision, augment=augment, seed=seed,
    )  # fmt: skip
    device = resolve_device(device)
    model = get_model(model_name, data.info, seed=seed, weights=weights)
    train_split = data.train.subset(n_train, seed=seed)
    result = train_model(model, train_split, config, info=data.info, test=data.test, device=device)
    record = CheckpointRecord(
        model=model_name,
        dataset=data.info.name,
        dataset_info=data.info.to_dict(),
        train_settings={**asdict(config), "n_train": len(train_split), "pretrained": weights, "device": str(device)},
        epochs=config.epochs,
        seed=seed,
        clean_accuracy=result.test_accuracy,
    )
    path = save_checkpoint(model, out or paths.checkpoint_path(data.info.name, model_name), record)
    last = result.history[-1]
    echo_table(
        ["model", "dataset", "epochs", "train acc", "test acc", "seconds", "img/s"],
        [[model_name, data.info.name, config.epochs, f"{last['train_accuracy']:.4f}",
          f"{result.test_accuracy:.4f}", f"{result.seconds:.0f}", f"{last['images_per_second']:.0f}"]],
    )  # fmt: skip
    click.echo(f"checkpoint: {path}")
