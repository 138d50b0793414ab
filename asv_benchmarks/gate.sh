#!/usr/bin/env bash
# The benchmark regression gate: time BASE and HEAD (git revisions, default main and HEAD) with the
# regular profile, alternating between them, and exit non-zero when a gated benchmark is slower on
# HEAD by more than the factor and the difference is statistically significant (asv continuous).
#
#   asv_benchmarks/gate.sh [BASE] [HEAD]
#
# Environment: GATE_FACTOR (default 1.1), GATE_BENCHMARKS (a regex over asv benchmark names with
# their parameters; default below), PYTHON (the interpreter that has asv, default python), and any
# extra asv arguments in GATE_ASV_ARGS. See README.md, "The regression gate".
set -euo pipefail
cd "$(dirname "$0")"

base=${1:-main}
head=${2:-HEAD}
# The gated subset: the time_ benchmarks of the loop kernels and the layer step, float32, one
# thread, at the shapes where work dominates the call overhead. tiny is left out (a few
# microseconds, dominated by dispatch), large and wide too (long runs), and two threads (on a
# shared 2-core machine another process's work moves them by more than the factor). track_gflops_
# benchmarks must stay out: asv counts a larger number as worse.
default_benchmarks="^kernels\.\w+\.time_\w+\('loops', 'float32', '(small|medium|skinny_in|skinny_out)', 1\)"
export FASTLINEAR_BENCH_PROFILE=${FASTLINEAR_BENCH_PROFILE:-regular}

# shellcheck disable=SC2086  # GATE_ASV_ARGS is split into arguments on purpose
exec "${PYTHON:-python}" -m asv continuous --split --factor "${GATE_FACTOR:-1.1}" \
    -b "${GATE_BENCHMARKS:-$default_benchmarks}" ${GATE_ASV_ARGS:-} "$base" "$head"
