#!/usr/bin/env bash
# One entry point for set-up and the two jobs the README names:
#   bash scripts/dev.sh demo [args]   install (if needed) and run `brainrdl demo`
#   bash scripts/dev.sh test [args]   install (if needed) and run the test suite
#   bash scripts/dev.sh setup         install only
# It makes a virtual environment in .venv (override with BRAINRDL_VENV), installs a torch +
# torchvision pair that import together (so torchvision models are really tested), then the
# project with its test and docs extras.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BRAINRDL_VENV:-.venv}"
py="${PYTHON:-python3}"

setup() {
    if [ ! -x "$venv/bin/python" ]; then
        "$py" -m venv "$venv"
    fi
    # shellcheck disable=SC1091
    . "$venv/bin/activate"
    if ! python -c "import torch, torchvision" >/dev/null 2>&1; then
        # torch and torchvision must come as a pair built together: PyPI's torchvision fails to import
        # beside the CPU-only torch wheel ("operator torchvision::nms does not exist"), so the CPU wheel
        # alone would leave every torchvision model untested. See docs/architecture.md ("Which torch").
        echo "brainrdl set-up: installing torch + torchvision (first time: a few minutes, ~5.5 GB on x86_64)..." >&2
        case "$(uname -m)" in
            aarch64|arm64) pair=("torch==2.9.1" "torchvision==0.24.1") ;;
            *) pair=("torch==2.14.1" "torchvision==0.29.1") ;;
        esac
        python -m pip install --progress-bar on "${pair[@]}" \
            || python -m pip install "torch>=2.2" "torchvision>=0.17"
    fi
    echo "brainrdl set-up: installing brainrdl and its test/docs dependencies..." >&2
    # every optional extra too, so that CI runs the timm / open_clip / transformers / MNE / YAML
    # paths instead of skipping them
    python -m pip install -q -e ".[test,docs,models,meeg,yaml]"
}

cmd="${1:-test}"
shift || true
case "$cmd" in
    setup) setup ;;
    demo)
        setup
        brainrdl demo "$@"
        ;;
    test)
        setup
        # Two pytest workers on two cores: one BLAS/OpenMP thread each avoids oversubscription,
        # which made small matrix work tens of times slower on a loaded machine.
        export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
        export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
        ruff check .
        python -m pytest -n 2 --dist loadfile "$@"
        ;;
    *)
        echo "usage: bash scripts/dev.sh {setup|demo|test} [args]" >&2
        exit 2
        ;;
esac
