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
# the interpreter that has asv (default python); GATE_ASV_ARGS adds asv arguments.
set -uo pipefail
cd "$(dirname "$0")"

base=${1:-main}
head=${2:-HEAD}
gated="^relative\.LoopsOverNumpy\.time_loops_in_numpy_units"
export FASTLINEAR_BENCH_PROFILE=${FASTLINEAR_BENCH_PROFILE:-regular}

echo "== gate: slower than ${GATE_FACTOR:-1.1}x fails =="
# shellcheck disable=SC2086  # GATE_ASV_ARGS is split into arguments on purpose
if "${PYTHON:-python}" -m asv continuous --split --factor "${GATE_FACTOR:-1.1}" \
        -b "${GATE_BENCHMARKS:-$gated}" ${GATE_ASV_ARGS:-} "$base" "$head"; then
    echo "== gate: passed =="
else
    echo "== gate: FAILED =="
    exit 1
fi
