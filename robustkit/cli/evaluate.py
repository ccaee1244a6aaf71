"""``robustkit evaluate``: attack a model on the fixed evaluation subset and report robust accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from robustkit.losses import LOSSES
from robustkit.models import check_model_name
from robustkit.cli.options import build_defense, dataset_options, open_dataset, runtime_options
from robustkit.cli.fooling import report_fooling
from robustkit.cli.table import echo_table
from robustkit import distributed
from robustkit.budget import warn_if_covers_box
from robustkit.checks import CheckReport, run_checks
from robustkit.device import resolve_device
from robustkit.errors import ConfigError
from robustkit.evaluate import attack_figures, evaluate_attack, prepare_attack
from robustkit.example_grid import save_example_grid
from robustkit.paths import home
from robustkit.perturbation_file import load_perturbation, save_perturbation
from robustkit.predict import verdict_draws
from robustkit.records import append_record, file_sha256, run_metadata
from robustkit.registry import ATTACKS
from robustkit.resolve import resolve_model
from robustkit.threat import default_eps, parse_eps, threat_class


@click.command()
@click.option("--model", "model_name", required=True, help="Registered model name (robustkit list models).")
@click.option("--attack", "attack_name", default="pgd", show_default=True, help="Registered attack name.")
@dataset_options
@click.option("--eps", help="Budget, e.g. 0.1 or 8/255 [0.1 L∞ / 1.5 L2 on grey data; 8/255 / 0.5 on colour].")
@click.option("--norm", help="Threat model (robustkit list threats) [the attack's: linf; l2 for deepfool; l0 for one-pixel and sparse-rs].")
@click.option("--pixels", type=click.IntRange(min=1), help="L0 budget: pixels an L0 attack may change [1].")
@click.option("--population", type=click.IntRange(min=4), help="Population per image (one-pixel) [100; the paper's 400].")
@click.option("--generations", type=click.IntRange(min=0), help="Generations (one-pixel) [10; the paper's 100].")
@click.option("--steps", type=click.IntRange(min=1), help="Iterations (iterative attacks).")
@click.option("--step-size", type=str, help="Step size, e.g. 0.01 or 2/255 [2.5·ε/steps].")
@click.option("--restarts", type=click.IntRange(min=1), help="Random restarts (per-sample best kept).")
@click.option("--loss", type=click.Choice(list(LOSSES)), help="Attack objective [ce].")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), help="Autocast for the attack [fp32; bf16 for one-pixel].")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Any other attack setting, e.g. -o method=sgd -o max_passes=5 (repeatable).")  # fmt: skip
@click.option("--fit-samples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Training images a data-fitted attack (universal) learns from.")  # fmt: skip
@click.option("--perturbation", "perturbation_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A saved universal perturbation or patch (.safetensors or .png) to apply instead of fitting one.")  # fmt: skip
@click.option("--n-samples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Size of the fixed, seeded evaluation subset of the test split.")  # fmt: skip
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Weights to evaluate [the cached checkpoint; trained if missing].")  # fmt: skip
@click.option("--weights", help="Evaluate these weights, training nothing: a state-dict file (.pt/.pth/.safetensors) "
                                "or the model library's weights name (DEFAULT, IMAGENET1K_V2).")  # fmt: skip
@click.option("--no-train", is_flag=True, help="Refuse to train a missing checkpoint (one line says what is missing).")
@click.option("--defense", default="none", show_default=True, help="Defense the cached checkpoint was trained with.")
@click.option("--defense-eps", help="ε the defense was trained at [--eps].")
@click.option("--source-model", help="Transfer attack: craft the examples on this model, score them on --model.")
@click.option("--source-checkpoint", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Weights of the source model [its cached checkpoint; trained if missing].")  # fmt: skip
@click.option("--source-defense", default="none", show_default=True, help="Defense the source model was trained with.")
@click.option("--checks", is_flag=True, help="Also run the gradient-masking checks and print their flags.")
@click.option("--check-samples", type=click.IntRange(min=1), default=200, show_default=True,
              help="Samples of the subset the checks use.")  # fmt: skip
@runtime_options
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Append the record to FILE.csv|.json.")
@click.option("--save-examples", type=click.Path(file_okay=False, path_type=Path),
              help="Write a PNG grid of clean / perturbation / adversarial images (and any fitted δ) here.")  # fmt: skip
def evaluate(model_name, attack_name, dataset, data_dir, download, image_size, workers, eps, norm, pixels, population, generations,
             steps, step_size, restarts, loss, precision, options, fit_samples, perturbation_file, n_samples,
             checkpoint, weights, no_train, defense, defense_eps, source_model, source_checkpoint, source_defense, checks, check_samples,
             device, seed, batch_size, output, save_examples) -> None:  # fmt: skip
    """Attack MODEL with ATTACK and report clean and robust accuracy on the test subset."""
    check_model_name(model_name)  # an unknown name fails before anything else is said or done
    if output is not None and output.suffix not in (".csv", ".json"):
        raise ConfigError(f"--output must end in .csv or .json, got {output.name}")
    if checks and norm is not None and not threat_class(norm).gradient_steps:
        raise ConfigError(f"--checks test gradient attacks, which cannot step in the {norm} threat model (use linf or l2)")
    if source_model is not None:
        check_model_name(source_model)
    elif source_defense != "none" and source_checkpoint is None:
        raise ConfigError("--source-defense needs --source-model (or --source-checkpoint)")
    data = open_dataset(dataset, data_dir, download, image_size, workers)
    delta, saved_with = load_perturbation(perturbation_file) if perturbation_file else (None, {})
    norm = threat_class(norm or saved_with.get("norm") or ATTACKS.default(attack_name, "norm")).name
    eps = eps if eps is not None else saved_with.get("eps")  # a saved δ brings its own budget
    if pixels is not None and norm != "l0":
        raise ConfigError(f"--pixels is an L0 budget; the {norm} threat model takes --eps")
    budget = pixels or (parse_eps(eps) if eps is not None else default_eps(norm, data.info.input_shape[0]))
    settings = dict(eps=budget, norm=norm, steps=steps, step_size=parse_eps(step_size, "step size") if step_size else None,
                    restarts=restarts, loss=loss, precision=precision, seed=seed, population=population,
                    generations=generations)  # fmt: skip
    settings.update(_extra_settings(options, settings))
    if delta is not None:
        settings.update(_fitted_with(saved_with, perturbation_file, attack_name, settings), perturbation=delta)
    attack = ATTACKS.build(attack_name, **settings)
    warn_if_covers_box(norm, budget, data.info.input_shape)
    device = resolve_device(device)
    distributed.init_from_env(device)  # under torchrun the ranks split the samples; rank 0 reports
    device = distributed.local_device(device)
    # a defense trains in a ball gradients can step in: the evaluated one where it is such a ball, else L∞
    steps_in = threat_class(norm).gradient_steps
    trained_with = build_defense(defense, eps=defense_eps or (str(budget) if steps_in else None),
                                 norm=norm if steps_in else "linf", channels=data.info.input_shape[0])  # fmt: skip
    resolved = resolve_model(model_name, data, device=device, defense=trained_with, checkpoint=checkpoint,
                             weights=weights, seed=seed, allow_train=not no_train)  # fmt: skip
    model = resolved.model
    base = {"model": model_name, **resolved.provenance.record(), "dataset": data.info.name, "defense": defense, "attack": attack_name,
            "attack_settings": json.dumps({k: v for k, v in attack.settings().items() if k not in ("eps", "norm", "seed")},
                                          sort_keys=True),
            "norm": norm, "eps": budget}  # fmt: skip
    run = {"verify_draws": verdict_draws(model), **run_metadata(device, seed)}
    if not attack.threat.clean_images:  # fooling images: one sought per class, nothing to attack in the subset
        if source_model or source_checkpoint or perturbation_file or checks:
            raise ConfigError(f"the {norm} threat model has no clean images: no transfer, perturbation file or --checks")
        report_fooling(model, attack, data, {**base, **run}, n_samples=n_samples, seed=seed, batch_size=batch_size,
                       output=output, save_examples=save_examples)  # fmt: skip
        return
    source, source_path, source_sha = None, None, None
    if source_model is not None or source_checkpoint is not None:
        source_with = build_defense(source_defense, eps=defense_eps or (str(budget) if steps_in else None),
                                    norm=norm if steps_in else "linf", channels=data.info.input_shape[0])  # fmt: skip
        crafted_on = resolve_model(source_model or model_name, data, device=device, defense=source_with,
                                   checkpoint=source_checkpoint, seed=seed, allow_train=not no_train)  # fmt: skip
        source, source_path, source_sha = crafted_on.model, crafted_on.provenance.path, crafted_on.provenance.sha256
    attack, fitted = prepare_attack(attack, source if source is not None else model, data.train,
                                    fit_samples=fit_samples, seed=seed)  # fmt: skip
    subset = data.test.subset(n_samples, seed=seed)
    result = evaluate_attack(model, subset, attack, batch_size=batch_size,
                             keep_examples=8 if save_examples else 0, source=source)  # fmt: skip
    m = {**result.metrics(), **attack_figures(attack, model, subset), **fitted}
    report = None
    if checks:
        take = subset.subset(min(check_samples, len(subset)), seed=seed)
        report = run_checks(model, take, norm=norm, eps=budget, seed=seed, batch_size=batch_size)
    if not distributed.is_main():
        return
    extra = [k for k in ("fooling_rate", "fit_fooling_rate") if k in m]
    if source is not None:
        click.echo(f"transfer: examples crafted on {source_model or model_name} ({crafted_on.provenance.description}), scored on {model_name}")
    echo_table(
        ["model", "attack", "norm", "eps", "n", "clean acc", "robust acc", "success", "median norm", "unverified",
         "img/s", *[k.replace("_", " ") for k in extra]],
        [[model_name, attack_name, norm, f"{budget:.4g}", m["n"], f"{m['clean_accuracy']:.4f}",
          f"{m['robust_accuracy']:.4f}", f"{m['attack_success_rate']:.4f}", f"{m['median_norm']:.4g}",
          m["n_unverified"], f"{m['images_per_second']:.1f}", *[f"{m[k]:.4f}" for k in extra]]],
    )  # fmt: skip
    record = {**base, **m, **run}
    if source is not None:
        record.update({"source_model": source_model or model_name, "source_checkpoint": str(source_path),
                       "source_checkpoint_sha256": source_sha})  # fmt: skip
    if report is not None:
        _echo_checks(report)
        record.update({"checks": report.summary(), "check_details": json.dumps(report.to_dict(), sort_keys=True)})
    for name, tensor in attack.learned().items():
        folder = save_examples or home() / "perturbations" / data.info.name
        stem = f"{model_name}-{defense}-{attack_name}-{norm}-eps{budget:.4g}-seed{seed}-{name}".replace("/", "_")
        if perturbation_file is not None:  # applied as given: cite the file, write no copy
            saved = perturbation_file
        else:
            saved, png = save_perturbation(folder / stem, tensor, {k: v for k, v in record.items() if k != "n"},
                                           images=attack.learned_images)  # fmt: skip
            click.echo(f"{name}: {saved} ({'printable' if attack.learned_images else 'amplified'} view: {png})")
        record.update({f"{name}_file": str(saved), f"{name}_sha256": file_sha256(saved)})
    if output:
        click.echo(f"record appended to {append_record(output, record)}")
    if save_examples:
        ex = result.examples
        if ex:
            grid = save_example_grid(save_examples / f"{model_name}-{attack_name}-{norm}-eps{budget:.4g}.png",
                                     ex["clean"], ex["adversarial"], ex["label"], ex["adversarial_prediction"],
                                     data.info.class_names, norm=norm)  # fmt: skip
            click.echo(f"examples: {grid}")
        else:
            click.echo("examples: none (the attack broke no sample)")


def _echo_checks(report: CheckReport) -> None:
    if report.ok:
        click.echo("gradient-masking checks: no flags (" + ", ".join(f"{k} {v:.3g}" for k, v in report.figures.items()) + ")")
        return
    click.echo(f"gradient-masking checks: {len(report.flags)} flag(s)")
    for flag in report.flags:
        click.echo(f"  ⚑ {flag.line()}")


def _fitted_with(saved_with: dict, path: Path, attack_name: str, given: dict) -> dict:
    """The settings a saved δ was fitted with, so the record of applying it names them; a conflicting
    setting is refused, since δ cannot change after fitting."""
    made_by = saved_with.get("attack", attack_name)
    if made_by not in ATTACKS or ATTACKS.get(made_by) is not ATTACKS.get(attack_name):
        raise ConfigError(f"{path} was made by --attack {made_by}, not {attack_name}")
    try:
        fitted = json.loads(saved_with.get("attack_settings", "{}"))
    except json.JSONDecodeError:
        fitted = None
    if not isinstance(fitted, dict):
        raise ConfigError(f"{path}: its record's attack settings are not a JSON object")
    for key, value in fitted.items():
        if given.get(key) is not None and given[key] != value:
            raise ConfigError(f"{path} was fitted with {key}={value!r}, not {given[key]!r}: drop that setting or fit anew")
    return fitted


def _extra_settings(options: tuple[str, ...], named: dict) -> dict:
    """``-o key=value`` pairs; values are read as YAML scalars (5, 0.5, true, sgd), fractions as numbers."""
    extra = {}
    for option in options:
        key, sep, text = option.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"-o/--option takes KEY=VALUE, got '{option}'")
        if named.get(key) is not None:
            raise ConfigError(f"'{key}' is set twice: by its own flag and by -o {option}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"-o {option}: the value is not a plain number, word or boolean") from None
        if isinstance(value, str) and "/" in value:
            value = parse_eps(value, key)
        if not isinstance(value, (int, float, str, bool, type(None))):
            raise ConfigError(f"-o {option}: the value must be a number, word or boolean")
        extra[key] = value
    return extra
