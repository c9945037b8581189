#!/usr/bin/env bash
# One entry point for set-up and the two jobs the README names:
#   bash scripts/dev.sh demo [args]   install (if needed) and run `brainrdl demo`
#   bash scripts/dev.sh test [args]   install (if needed) and run the test suite
#   bash scripts/dev.sh setup         install only
# It makes a virtual environment in .venv (override with BRAINRDL_VENV), installs the CPU build
# of PyTorch first when no NVIDIA GPU is present (fast CI, no multi-GB CUDA download), then the
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
    if ! python -c "import torch" >/dev/null 2>&1; then
        if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
            python -m pip install -q "torch>=2.2"
        else
            # CPU wheel: the one on this workplace's disk, or PyTorch's CPU index elsewhere.
            python -m pip install -q "torch==2.13.0" 2>/dev/null \
                || python -m pip install -q "torch>=2.2" --index-url https://download.pytorch.org/whl/cpu \
                || python -m pip install -q "torch>=2.2"
        fi
    fi
    python -m pip install -q -e ".[test,docs]"
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
