"""Suites, the runner, the store and leaderboards: validation, worst case, resume after kill -9, shards, renderers."""

import io
import json
import multiprocessing
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from torchrun import torchrun

from robustkit.cli import main
from robustkit.data.base import Split
from robustkit.errors import ConfigError
from robustkit.evaluation.engine import evaluate_attack
from robustkit.evaluation.runner import run_suite
from robustkit.results.leaderboard import html_page, leaderboard, render
from robustkit.results.store import ResultStore, read_stores, unpack
from robustkit.suites.spec import load_suite

CPU = torch.device("cpu")
SUITE = {
    "name": "tiny",
    "dataset": "synthetic",
    "n_samples": 48,
    "seed": 0,
    "fit_samples": 128,
    "batch_size": 24,
    "checks": False,  # the checks and transfer cells have their own tests (test_transfer.py)
    "models": [
        {"model": "lenet5", "train": {"epochs": 4, "batch_size": 32, "lr": 0.05, "precision": "fp32"}},
        {"model": "smallcnn", "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "precision": "fp32"}},
    ],
    "attacks": [
        {"attack": "fgsm", "norm": "linf", "eps": [0.1, "40/255"]},
        {"attack": "pgd", "norm": "linf", "eps": [0.1, "40/255"], "settings": {"steps": 4}},
        {"attack": "universal", "norm": "linf", "eps": [0.1], "settings": {"method": "sgd", "max_passes": 2}},
    ],
}


def write_suite(folder, suite=None, name="suite.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(suite or SUITE, sort_keys=False))
    return path


def without_timing(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["attack_seconds"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(colour="red"), "unknown key 'colour'"),
        (lambda s: s["attacks"][0].update(attack="fgsmm"), "attacks[0].attack: unknown attack 'fgsmm'"),
        (lambda s: s["attacks"][1].update(eps=["8/0"]), "attacks[1].eps must be a number"),
        (lambda s: s["attacks"][0].update(norm="l0"), "attacks[0].norm: fgsm attacks linf, l2, not 'l0'"),
        (lambda s: s["attacks"][1]["settings"].update(steps=0), "attacks[1]: PGD needs steps"),
        (
            lambda s: s["attacks"][1]["settings"].update(steps="abc"),
            "attacks[1]: attack 'pgd': steps must be a whole number, got 'abc'",
        ),
        (lambda s: s["models"][0].update(checkpoint="missing.safetensors"), "models[0].checkpoint:"),
        (lambda s: s["models"][1]["train"].update(epoch=3), "models[1].train: unknown key 'epoch'"),
        (lambda s: s["models"][0].update(defense="madri"), "models[0].defense: unknown defense 'madri'"),
        (lambda s: s.update(n_samples=0), "n_samples must be a whole number ≥ 1"),
        (lambda s: s.pop("attacks"), "missing key 'attacks'"),
        (
            lambda s: s["attacks"].append(dict(s["attacks"][0])),
            "appears twice; give a variant of an attack its own name",
        ),
        (
            lambda s: s["attacks"].extend([{**s["attacks"][1], "name": "pgd-4"}] * 2),
            "attacks: pgd-4 linf ε=0.1 appears twice",
        ),
        (lambda s: s["attacks"][1].update(name="pgd 4"), "attacks[1].name: a variant's name is letters"),
        (lambda s: s["attacks"][1].update(name="fgsm"), "attacks[1].name: 'fgsm' is another attack's name"),
    ],
)
def test_suite_errors_are_one_line_naming_file_and_key(tmp_path, change, message):
    suite = yaml.safe_load(yaml.safe_dump(SUITE))
    change(suite)
    path = write_suite(tmp_path, suite)
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_unnamed_attacks_keep_the_cell_keys_of_stores_written_before_variants_existed(tmp_path):
    plain = {
        "dataset": "synthetic",
        "n_samples": 48,
        "models": [{"model": "lenet5"}],
        "attacks": [{"attack": "pgd", "eps": [0.1], "settings": {"steps": 4}}],
    }
    named = yaml.safe_load(yaml.safe_dump(plain))
    named["attacks"] += [
        {**named["attacks"][0], "name": "pgd-bpda", "settings": {"steps": 4, "bpda": True}},
        {**named["attacks"][0], "name": "pgd"},
    ]  # its own name: the plain attack, listed twice
    with pytest.raises(ConfigError, match="pgd linf ε=0.1 appears twice"):
        load_suite(write_suite(tmp_path, named))
    named["attacks"].pop()
    cells = load_suite(write_suite(tmp_path, named)).cells()
    assert cells[0].key("0" * 64) == "c1d6c06837d58a471f1a3dc9"  # computed by robustkit before names existed
    assert cells[1].key("0" * 64) != cells[0].key("0" * 64) and cells[1].title == "lenet5 × pgd-bpda linf ε=0.1"


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodels: [\n  - model: lenet5\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line"):
        load_suite(path)


def test_shipped_suites_are_valid():
    from pathlib import Path

    root = Path(__file__).parent.parent
    paths = [*(root / "benchmarks" / "suites").glob("*.yaml"), *(root / "robustkit" / "suites").glob("*.yaml")]
    assert any(p.stem == "reliable" for p in paths)
    for path in paths:
        assert load_suite(path).cells(), path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted run of the tiny suite (its own robustkit home, shared by the module's tests)."""
    folder = tmp_path_factory.mktemp("run")
    suite = load_suite(write_suite(folder))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROBUSTKIT_HOME", str(folder / "home"))
        summary = run_suite(suite, folder / "full.sqlite", device=CPU, progress=False)
    return folder, suite, summary


@pytest.fixture
def shared_home(finished, monkeypatch):
    monkeypatch.setenv("ROBUSTKIT_HOME", str(finished[0] / "home"))  # the checkpoints the full run trained


def test_worst_case_is_the_per_sample_and_of_the_attacks(finished):
    folder, suite, summary = finished
    assert summary.evaluated == len(suite.cells()) == 10 and summary.skipped == 0
    cells = read_stores([folder / "full.sqlite"])
    board = leaderboard(cells).set_index("entry")
    for (entry, eps), group in cells.groupby(["entry", "eps"]):
        bits = np.stack([np.unpackbits(np.frombuffer(b, dtype=np.uint8))[:48] for b in group["robust"]])
        expected = bits.all(axis=0).mean()
        assert board.loc[entry, f"worst linf ε={eps:.4g}"] == pytest.approx(expected)
        assert expected <= group["robust_accuracy"].min() + 1e-6
        assert len(group) == (3 if eps == 0.1 else 2)


def test_stored_outcomes_match_an_independent_evaluation(finished, shared_home):
    from attacks import PGD
    from robustkit.data import get_dataset
    from robustkit.weights.checkpoint import load_model

    folder, suite, _ = finished
    cells = read_stores([folder / "full.sqlite"])
    row = cells[(cells["entry"] == "lenet5") & (cells["attack"] == "pgd") & (cells["eps"] == 0.1)].iloc[0]
    model, _ = load_model(row["checkpoint"])
    subset = get_dataset("synthetic").test.subset(48, seed=0)
    direct = evaluate_attack(
        model, Split(subset.images, subset.labels), PGD(eps=0.1, steps=4, seed=0), batch_size=24, progress=False
    )
    assert torch.equal(unpack(row["robust"], 48), direct.robust)
    assert torch.equal(unpack(row["clean_correct"], 48), direct.clean_correct)


def test_two_named_variants_of_pgd_run_as_their_own_cells_and_columns(finished, shared_home, tmp_path, caplog):
    from attacks import PGD
    from robustkit.data import get_dataset
    from robustkit.weights.checkpoint import load_model

    folder, _, _ = finished
    variants = {
        **SUITE,
        "name": "variants",
        "models": SUITE["models"][:1],
        "attacks": [
            {"attack": "pgd", "norm": "linf", "eps": [0.1], "settings": {"steps": 4}},  # the tiny suite's cell
            {"attack": "pgd", "name": "pgd-bpda", "eps": [0.1], "settings": {"steps": 4, "bpda": True}},
            {"attack": "fgsm", "eps": [1]},  # covers the whole box: warned about
        ],
    }
    store = tmp_path / "copy.sqlite"
    shutil.copy(folder / "full.sqlite", store)  # a store written before: the plain PGD cell is found there
    summary = run_suite(load_suite(write_suite(tmp_path, variants)), store, device=CPU, progress=False)
    assert summary.skipped == 1 and summary.evaluated == 2
    assert "linf ε = 1 ≥ 1 covers the whole [0, 1] input box" in caplog.text
    cells = read_stores([store])
    cells = cells[cells["key"].isin(summary.keys)]
    assert sorted(cells["attack"]) == ["fgsm", "pgd", "pgd-bpda"]
    board = leaderboard(cells).set_index("entry")
    bpda = cells[cells["attack"] == "pgd-bpda"].iloc[0]
    model, _ = load_model(bpda["checkpoint"])
    subset = get_dataset("synthetic").test.subset(48, seed=0)
    direct = evaluate_attack(
        model,
        Split(subset.images, subset.labels),
        PGD(eps=0.1, steps=4, bpda=True, seed=0),
        batch_size=24,
        progress=False,
    )
    assert torch.equal(unpack(bpda["robust"], 48), direct.robust) and json.loads(bpda["settings"])["bpda"] is True
    assert board.loc["lenet5", "pgd-bpda linf ε=0.1"] == pytest.approx(direct.robust_accuracy)
    assert board.loc["lenet5", "pgd linf ε=0.1"] == pytest.approx(
        cells[cells["attack"] == "pgd"]["robust_accuracy"].item()
    )


def test_a_rerun_skips_finished_cells_and_a_changed_cell_alone_is_evaluated(finished, shared_home, tmp_path):
    folder, suite, _ = finished
    store = tmp_path / "copy.sqlite"
    shutil.copy(folder / "full.sqlite", store)
    again = run_suite(suite, store, device=CPU, progress=False)
    assert again.evaluated == 0 and again.skipped == 10
    changed = yaml.safe_load(yaml.safe_dump(SUITE))
    changed["attacks"][2]["settings"]["max_passes"] = 3  # only the two universal cells change
    after = run_suite(load_suite(write_suite(tmp_path, changed)), store, device=CPU, progress=False)
    assert after.evaluated == 2 and after.skipped == 8


def test_after_a_cell_changes_the_leaderboards_count_only_its_newest_evaluation(finished, shared_home, tmp_path):
    """The store keeps the superseded row; neither command may AND it into the worst case or list it twice."""
    folder, _, _ = finished
    store, out = tmp_path / "copy.sqlite", tmp_path / "board"
    shutil.copy(folder / "full.sqlite", store)
    changed = yaml.safe_load(yaml.safe_dump(SUITE))
    changed["attacks"][2]["settings"]["max_passes"] = 3  # only the universal cell changes
    path = write_suite(tmp_path, changed)
    rerun = CliRunner().invoke(
        main, ["benchmark", str(path), "--store", str(store), "--out", str(out), "--device", "cpu"]
    )
    assert rerun.exit_code == 0, rerun.output
    assert "2 cells evaluated, 8 already in" in rerun.output and "2 older cells of suite tiny" in rerun.output
    assert len(read_stores([store])) == 12
    fresh = tmp_path / "fresh.sqlite"
    run_suite(load_suite(path), fresh, device=CPU, progress=False)
    expected = without_timing(leaderboard(read_stores([fresh])))
    published = pd.read_json(out / "tiny.json", orient="records")
    pd.testing.assert_frame_equal(without_timing(published), expected, check_dtype=False)
    merged = CliRunner().invoke(main, ["leaderboard", str(store), "--format", "csv"])
    assert merged.exit_code == 0, merged.output
    assert "2 older evaluations" in merged.stderr
    pd.testing.assert_frame_equal(without_timing(pd.read_csv(io.StringIO(merged.stdout))), expected, check_dtype=False)


def test_a_shard_says_the_other_shards_cells_are_left_out_not_that_they_are_older(finished, shared_home, tmp_path):
    """Shards sharing one store: a shard's own board leaves out the other shards' cells, which are the
    same weights and settings; it says so, and which command ranks them all."""
    folder, suite, _ = finished
    store = tmp_path / "shared.sqlite"
    shutil.copy(folder / "full.sqlite", store)
    mine = run_suite(suite, store, device=CPU, shard=(0, 3), progress=False)  # every cell already held
    assert mine.evaluated == 0 and 0 < mine.skipped < 10
    shard = CliRunner().invoke(
        main, ["benchmark", str(folder / "suite.yaml"), "--store", str(store), "--shard", "0/3", "--device", "cpu"]
    )
    assert shard.exit_code == 0, shard.output
    assert f"{10 - mine.skipped} other cells of suite tiny" in shard.stderr and "from the other shards" in shard.stderr
    assert "older cells" not in shard.stderr and f"robustkit leaderboard {store} --suite tiny" in shard.stderr


def test_sharded_runs_merged_equal_the_unsharded_run(finished, shared_home, tmp_path):
    folder, suite, _ = finished
    shards = [tmp_path / f"shard{i}.sqlite" for i in range(3)]
    for i, store in enumerate(shards):
        run_suite(suite, store, device=CPU, shard=(i, 3), progress=False)
    sizes = [len(read_stores([s])) for s in shards]
    assert sum(sizes) == 10 and all(sizes)
    merged = leaderboard(read_stores(shards))
    assert without_timing(merged).equals(without_timing(leaderboard(read_stores([folder / "full.sqlite"]))))


def _open_and_put(path, number, start, errors):
    start.wait()  # every process opens the new file at the same moment
    try:
        with ResultStore(path) as store:
            store.put({"key": f"cell{number}", "entry": "lenet5"})
            store.add_members("tiny", [f"cell{number}"])
    except ConfigError as err:
        errors.put(str(err))


def test_processes_opening_one_new_store_at_once_all_get_in(tmp_path):
    """Shards or torchrun ranks pointed at one new store: SQLite answers 'database is locked' at once
    (no waiting) to a WAL switch or a read-then-write race, which failed CI; every process must get in."""
    context = multiprocessing.get_context("fork")
    errors, n = context.Queue(), 6
    for trial in range(8):
        path, start = tmp_path / f"new{trial}.sqlite", context.Barrier(n)
        processes = [context.Process(target=_open_and_put, args=(path, i, start, errors)) for i in range(n)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        assert [p.exitcode for p in processes] == [0] * n
        assert errors.empty(), errors.get()
        assert sorted(read_stores([path])["key"]) == [f"cell{i}" for i in range(n)]
        assert len(read_stores([path], "members")) == n


def test_a_run_killed_mid_way_resumes_without_losing_a_cell(finished, shared_home, tmp_path):
    folder, _, _ = finished
    suite_path, store = write_suite(tmp_path), tmp_path / "killed.sqlite"
    command = [
        sys.executable,
        "-m",
        "robustkit",
        "-q",
        "benchmark",
        str(suite_path),
        "--store",
        str(store),
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = 0
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if store.exists():
            try:
                done = sqlite3.connect(store).execute("SELECT COUNT(*) FROM cells").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 2:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 2 <= done < 10, f"the run was not caught mid-way ({done} cells)"
    kept = len(read_stores([store]))
    assert kept >= done  # nothing committed was lost
    result = CliRunner().invoke(main, ["benchmark", str(suite_path), "--store", str(store), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"{10 - kept} cells evaluated, {kept} already in" in result.output
    resumed = leaderboard(read_stores([store]))
    assert without_timing(resumed).equals(without_timing(leaderboard(read_stores([folder / "full.sqlite"]))))


def test_renderers_round_trip_and_render_every_format(finished):
    folder, _, _ = finished
    table = leaderboard(read_stores([folder / "full.sqlite"]))
    from_csv = pd.read_csv(io.StringIO(render(table, "csv")))
    pd.testing.assert_frame_equal(from_csv, table, check_dtype=False)
    from_json = pd.read_json(io.StringIO(render(table, "json")), orient="records")
    pd.testing.assert_frame_equal(from_json, table, check_dtype=False)
    markdown = render(table, "md").splitlines()
    assert markdown[0].startswith("| rank | entry | clean | headline linf ε=")  # the board first, short heads
    assert all(line.startswith("|") for line in markdown[: 2 + len(table)]) and not markdown[2 + len(table)].startswith(
        "|"
    )
    assert "\\begin{tabular}" in render(table, "latex")
    board = render(table, "html").split("</table>")[0]
    assert board.count("<tr") == 2 + len(table)  # the threat-model groups, the names, the rows
    assert list(table["rank"]) == [1, 2] and set(table["entry"]) == {"lenet5", "smallcnn"}


def test_leaderboard_command_publishes_every_file_and_sorts(finished, tmp_path):
    folder, _, _ = finished
    out = tmp_path / "board"
    result = CliRunner().invoke(main, ["leaderboard", str(folder / "full.sqlite"), "--publish", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for suffix in (".md", ".csv", ".json", ".tex", ".table.html", ".png", ".svg", ".html"):
        assert (out / f"tiny{suffix}").stat().st_size > 0, suffix
    sorted_csv = CliRunner().invoke(
        main, ["leaderboard", str(folder / "full.sqlite"), "--format", "csv", "--sort", "clean", "--ascending"]
    )
    clean = pd.read_csv(io.StringIO(sorted_csv.output))["clean_accuracy"]
    assert list(clean) == sorted(clean)
    bad = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "none.sqlite")])
    assert bad.exit_code == 1 and "does not exist" in bad.output


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_html_page_sorts_in_a_real_browser(finished, tmp_path):
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: setup.sh --test installs it")
        pytest.skip("no chromium on this machine")
    folder, _, _ = finished
    cells = read_stores([folder / "full.sqlite"])
    table = leaderboard(cells)
    page = tmp_path / "page.html"
    page.write_text(html_page(table, "<svg xmlns='http://www.w3.org/2000/svg'></svg>", "tiny"))
    column, head = "clean_accuracy", "clean"  # the page shows short heads
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", f"file://{page}#sort={head}"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    body = dom[dom.index("<tbody>") : dom.index("</tbody>")]
    entries = [re.findall(r"<td>(.*?)</td>", row)[1] for row in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)]
    assert 'data-ready="true"' in dom and 'aria-sort="descending"' in dom
    assert sorted(entries) == sorted(table["entry"])
    assert entries == list(table.sort_values(column, ascending=False, kind="stable")["entry"])


@pytest.mark.slow
def test_two_processes_split_each_cell_and_store_the_same_outcomes(finished, shared_home, tmp_path):
    """torchrun with 2 gloo processes: each attacks half the samples; rank 0's store equals one process's."""
    folder, _, _ = finished
    deterministic = yaml.safe_load(yaml.safe_dump(SUITE))
    deterministic["attacks"] = [SUITE["attacks"][0], {"attack": "deepfool", "norm": "l2", "eps": [1.0]}]
    suite_path = write_suite(tmp_path, deterministic)
    single, double = tmp_path / "one.sqlite", tmp_path / "two.sqlite"
    run_suite(load_suite(suite_path), single, device=CPU, progress=False)
    torchrun(["-m", "robustkit", "benchmark", str(suite_path), "--store", str(double), "--device", "cpu"])
    one, two = read_stores([single]).set_index("key"), read_stores([double]).set_index("key")
    assert sorted(one.index) == sorted(two.index) and len(one) == 6
    for key in one.index:
        assert one.loc[key, "robust"] == two.loc[key, "robust"], one.loc[key, "attack"]
        assert one.loc[key, "clean_correct"] == two.loc[key, "clean_correct"]


def test_only_rank_0_opens_the_store(finished, shared_home, tmp_path, monkeypatch):
    """Issue 23: under torchrun every decision is rank 0's, so the other ranks never open (or create) the
    SQLite file: two processes opening one new store is the race the torchrun test must not depend on."""
    from robustkit.training import distributed

    one = {**SUITE, "models": SUITE["models"][:1], "attacks": [{"attack": "fgsm", "norm": "linf", "eps": [0.1]}]}
    store = tmp_path / "rank1.sqlite"
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    summary = run_suite(load_suite(write_suite(tmp_path, one)), store, device=CPU, progress=False)
    assert summary.evaluated == 1 and not store.exists() and not list(tmp_path.glob("rank1.sqlite*"))


def test_benchmark_resolves_built_in_suites_by_name(tmp_path):
    from robustkit.cli.benchmark import suite_path

    assert suite_path("reliable").name == "reliable.yaml" and load_suite(suite_path("reliable")).transfer
    mine = write_suite(tmp_path)
    assert suite_path(str(mine)) == mine
    result = CliRunner().invoke(main, ["benchmark", "nonexistent"])
    assert result.exit_code != 0 and "built-in: reliable" in result.output and "Traceback" not in result.output


def test_a_cell_whose_budget_cannot_run_is_refused_before_any_warning_about_it(finished, shared_home, tmp_path, caplog):
    suite = {**SUITE, "name": "too-big", "models": SUITE["models"][:1], "attacks": [{"attack": "patch", "eps": [40]}]}
    with pytest.raises(ConfigError, match="^a patch of side 40 does not fit a 16×16 image$"):
        run_suite(load_suite(write_suite(tmp_path, suite)), tmp_path / "r.sqlite", device=CPU, progress=False)
    assert "covers the whole" not in caplog.text


def test_a_store_keyed_by_the_files_hash_prefix_is_rekeyed_where_that_file_is_at_hand(tmp_path):
    """Issue 33, item 10: keys named the weights by the file's SHA-256 prefix (16 hex digits) before they named
    the weights' digest. A run with that file at hand moves such rows, checks included, to the keys a fresh
    store gets, evaluates nothing again and cites the whole SHA-256; where the file has changed, it evaluates."""
    import hashlib

    from robustkit.data import get_dataset
    from robustkit.evaluation.cell import check_key
    from robustkit.models import get_model

    weights = tmp_path / "w.pt"
    torch.save(get_model("lenet5", get_dataset("synthetic").info, seed=1).state_dict(), weights)
    suite = {
        "name": "old",
        "dataset": "synthetic",
        "n_samples": 16,
        "batch_size": 16,
        "check_samples": 8,
        "models": [{"model": "lenet5", "weights": "w.pt"}],
        "attacks": [{"attack": "fgsm", "norm": "linf", "eps": [0.1]}],
    }
    loaded = load_suite(write_suite(tmp_path, suite))
    fresh, old = tmp_path / "fresh.sqlite", tmp_path / "old.sqlite"
    run_suite(loaded, fresh, device=CPU, progress=False, allow_train=False)
    whole = hashlib.sha256(weights.read_bytes()).hexdigest()
    prefix, entry, (cell,) = whole[:16], loaded.models[0], loaded.cells()
    digest = read_stores([fresh])["weights_sha256"].iloc[0]
    legacy = {cell.key(digest): cell.key(prefix)}  # what robustkit computed before, from the file's prefix
    legacy.update(
        {
            check_key(loaded, entry, digest, *point): check_key(loaded, entry, prefix, *point)
            for point in loaded.check_points()
        }
    )
    shutil.copy(fresh, old)
    db = sqlite3.connect(old)  # as robustkit wrote it before: prefix keys, no weights digest
    with db:
        for new, before in legacy.items():
            for table in ("cells", "checks", "members"):
                db.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (before, new))
        for table in ("cells", "checks"):
            db.execute(f"UPDATE {table} SET checkpoint_sha256 = ?, weights_sha256 = NULL", (prefix,))
    db.close()  # the last connection: its write-ahead log goes into the file, which is copied next
    untouched = shutil.copy(old, tmp_path / "untouched.sqlite")
    assert set(read_stores([old])["key"]) == {cell.key(prefix)} and len(legacy) == 2  # one cell, one check run

    summary = run_suite(loaded, old, device=CPU, progress=False, allow_train=False)
    assert summary.evaluated == 0 and summary.skipped == 1
    for table in ("cells", "checks"):
        moved, expected = read_stores([old], table), read_stores([fresh], table)
        assert sorted(moved["key"]) == sorted(expected["key"])
        assert set(moved["checkpoint_sha256"]) == {whole} and set(moved["weights_sha256"]) == {digest}
    assert sorted(read_stores([old], "members")["key"]) == sorted(read_stores([fresh], "members")["key"])

    torch.save(get_model("lenet5", get_dataset("synthetic").info, seed=2).state_dict(), weights)  # not that file
    assert (
        run_suite(
            load_suite(tmp_path / "suite.yaml"), untouched, device=CPU, progress=False, allow_train=False
        ).evaluated
        == 1
    )
    assert cell.key(prefix) in set(read_stores([untouched])["key"])  # the other weights' row is left as it was
