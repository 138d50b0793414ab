#!/usr/bin/env bash
# The benchmark regression gate: time BASE and HEAD (git revisions, default main and HEAD) with the
# regular profile, alternating between them round by round, and exit non-zero when a gated
# benchmark is slower on HEAD by more than GATE_FACTOR and the difference is statistically
# significant (asv continuous; the tables list what changed).
#
#   asv_benchmarks/gate.sh [BASE] [HEAD]
#
# Gated: relative.LoopsOverNumpy.time_loops_in_numpy_units, the time of every loop kernel (forward,
# grad_weight, grad_bias, grad_input) and of the layer step in units of numpy's time for the same
# work, measured in the same process (float32, one thread, small, medium, skinny_in and
# skinny_out; 12 processes per revision). One whose median grew by more than GATE_FACTOR (default
# 1.1), significantly by asv's test, fails (README.md, "The regression gate", has the experiment behind
# it). GATE_BENCHMARKS replaces the selection (a regex over asv names with parameters). PYTHON is
# the interpreter that has asv (default python); GATE_ASV_ARGS adds asv arguments. Exit status: 0
# passed, 1 a gated benchmark got slower (or asv failed while running), 2 asv missing or a
# revision unknown.
set -uo pipefail
cd "$(dirname "$0")"

base=${1:-main}
head=${2:-HEAD}
gated="^relative\.LoopsOverNumpy\.time_loops_in_numpy_units"
export FASTLINEAR_BENCH_PROFILE=${FASTLINEAR_BENCH_PROFILE:-regular}

# A set-up problem is not a regression: say so and exit 2 (a slower benchmark exits 1).
if ! "${PYTHON:-python}" -c "import asv" 2>/dev/null; then
    echo "gate.sh: ${PYTHON:-python} cannot import asv; pip install -e \".[bench]\" from the" \
         "repository root, or set PYTHON to an interpreter that has it" >&2
    exit 2
fi
for rev in "$base" "$head"; do
    if ! git rev-parse --verify --quiet "$rev^{commit}" >/dev/null; then
        echo "gate.sh: no commit named '$rev' in this repository" >&2
        exit 2
    fi
done

echo "== gate: slower than ${GATE_FACTOR:-1.1}x fails =="
# shellcheck disable=SC2086  # GATE_ASV_ARGS is split into arguments on purpose
if "${PYTHON:-python}" -m asv continuous --split --factor "${GATE_FACTOR:-1.1}" \
        -b "${GATE_BENCHMARKS:-$gated}" ${GATE_ASV_ARGS:-} "$base" "$head"; then
    echo "== gate: passed =="
else
    echo "== gate: FAILED =="
    exit 1
fi
