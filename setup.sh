#!/usr/bin/env bash
# Sets robustkit up from nothing: Fashion-MNIST from Debian, a virtual environment, the package.
#   ./setup.sh          what `robustkit` needs (the first run's minutes count: nothing else)
#   ./setup.sh --test   also what the tests need: Chromium (the leaderboard page's browser test) and
#                       pdflatex with booktabs (the LaTeX table's compile test; ~50 MB, ~1 min) from
#                       Debian, and the test, zoo (timm, robustbench), docs (the site's builder) and lint
#                       (ruff, mypy) extras
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")"

tests=false
case "${1:-}" in
  "") ;;
  --test) tests=true ;;
  *) echo "setup: unknown option ${1} (usage: ./setup.sh [--test])" >&2; exit 2 ;;
esac

packages=""
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || packages="$packages dataset-fashion-mnist"
tex=""  # without recommends, which would add ~180 MB (Ghostscript, MuPDF, fonts)
if $tests; then
  command -v chromium >/dev/null || packages="$packages chromium"
  { command -v pdflatex && kpsewhich booktabs.sty; } >/dev/null 2>&1 || tex=" texlive-latex-base texlive-latex-recommended"
fi
if [ -n "$packages$tex" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing$packages$tex (apt)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  [ -z "$packages" ] || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
  [ -z "$tex" ] || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $tex >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
check="import robustkit, torch, torchvision, matplotlib, scipy"
target="."
if $tests; then
  check="$check, pytest, timm, pkg_resources, mkdocs, material, mkdocstrings_handlers.python, mkdocs_click, mkdocs_gen_files, ruff, mypy, torchattacks
import importlib.util; assert importlib.util.find_spec('robustbench')"
  target=".[test,zoo,docs,lint]"
fi
if ! .venv/bin/python -c "$check" 2>/dev/null; then
  echo "setup: installing robustkit and its dependencies into .venv (torch is large: a few minutes)"
  log="$(mktemp)"  # pip's and the build backend's chatter, shown only if the install fails
  # torchattacks (tests only) without its stale requests pin: see pyproject.toml's test extra
  peer=true; ! $tests || peer='.venv/bin/pip install -q --no-deps "torchattacks>=3.5"'
  if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e "$target" && eval "$peer"; } >"$log" 2>&1; then
    cat "$log"
    echo "setup: pip install failed (output above)" >&2
    exit 1
  fi
  rm -f "$log"
fi
echo "setup: ready ($(.venv/bin/python -c 'import robustkit, torch; print("robustkit", robustkit.__version__, "torch", torch.__version__)'))"
