"""``robustkit train``: train a registered model, optionally with a defense, and save a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from robustkit import distributed
from robustkit.cli.options import build_defense, dataset_options, open_dataset, runtime_options
from robustkit.cli.table import echo_table
from robustkit.device import resolve_device
from robustkit.models import check_model_name
from robustkit.pipeline import train_and_save
from robustkit.threat import parse_eps


@click.command()
@click.option("--model", "model_name", required=True, help="Registered model name (robustkit list models).")
@dataset_options
@click.option("--defense", default="none", show_default=True, help="Registered defense (robustkit list defenses).")
@click.option("--eps", help="Defense budget, e.g. 0.1 or 8/255 [0.1 L∞ / 1.5 L2 on grey data; 8/255 / 0.5 on colour].")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default="linf", show_default=True, help="Defense threat model.")
@click.option("--steps", type=click.IntRange(min=1), help="Inner attack steps (madry, trades).")
@click.option("--step-size", help="Inner attack step size, e.g. 0.01 or 2/255.")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training set [model's/defense's recipe].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Global training batch size [128].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate [0.1].")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), help="SGD with Nesterov momentum, or AdamW [sgd].")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), help="bf16 autocast where fast [auto].")
@click.option("--augment/--no-augment", default=None, help="Random crop and flip [off].")
@click.option("--n-train", type=click.IntRange(min=1), help="Train on a seeded subset of this many images.")
@click.option("--weights", help="Pretrained weights for torchvision:<name> models (e.g. DEFAULT).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last saved state.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), metavar="N",
              help="Also save the resume state every N optimisation steps, mid-epoch [every epoch only].")
@runtime_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint path [the cache; a path of its own for settings beyond the default recipe].")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace a checkpoint of another recipe at the path.")
def train(model_name, dataset, data_dir, download, image_size, workers, defense, eps, norm, steps, step_size, epochs, batch_size, lr,
          optimizer, precision, augment, n_train, weights, resume, checkpoint_every, device, seed, out, force) -> None:  # fmt: skip
    """Train MODEL on a data set and save a safetensors checkpoint with its metadata.

    Under torchrun (torchrun --nproc-per-node N -m robustkit train ...) every process trains on its
    shard through DistributedDataParallel (gloo on CPU, NCCL on GPU); rank 0 writes the checkpoint.
    Settings beyond the default recipe write to a recipe-tagged cache path, so the default-recipe
    checkpoint is never replaced by another recipe's (a path holding another recipe needs --force).
    """
    check_model_name(model_name)  # an unknown name fails before anything else is said or done
    device = resolve_device(device)
    distributed.init_from_env(device)
    data = open_dataset(dataset, data_dir, download, image_size, workers)
    chosen = build_defense(defense, eps=eps, norm=norm, channels=data.info.input_shape[0], steps=steps,
                           step_size=parse_eps(step_size, "step size") if step_size else None)  # fmt: skip
    device = distributed.local_device(device)
    _, record, result, path = train_and_save(
        model_name, data, device=device, defense=chosen, seed=seed, out=out, n_train=n_train, weights=weights,
        resume=resume, force=force, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, precision=precision,
        augment=augment, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    if not distributed.is_main():
        return
    last = result.history[-1]
    echo_table(
        ["model", "dataset", "defense", "epochs", "train acc", "test acc", "seconds", "img/s"],
        [[model_name, record.dataset, record.defense, record.epochs, f"{last['train_accuracy']:.4f}",
          f"{result.test_accuracy:.4f}", f"{result.seconds:.0f}", f"{last['images_per_second']:.0f}"]],
    )  # fmt: skip
    click.echo(f"checkpoint: {path}")
