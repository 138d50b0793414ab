#!/usr/bin/env bash
# The benchmark regression gate: time BASE and HEAD (git revisions, default main and HEAD) with the
# regular profile, alternating between them round by round, and exit non-zero when a gated
# benchmark is slower on HEAD by more than its tier's factor and the difference is statistically
# significant (asv continuous; the tables list what changed).
#
#   asv_benchmarks/gate.sh [BASE] [HEAD]
#
# Two tiers, because the kernels differ in how much their time moves from one process to the next
# (README.md, "The regression gate"):
#   strict: loops forward, factor GATE_FACTOR (default 1.1);
#   loose:  the other loop kernels and the layer step, factor GATE_LOOSE_FACTOR (default 1.6).
# GATE_BENCHMARKS / GATE_LOOSE_BENCHMARKS replace a tier's regex (asv names with parameters; an
# empty GATE_LOOSE_BENCHMARKS skips that tier). PYTHON is the interpreter that has asv (default
# python); GATE_ASV_ARGS adds asv arguments.
set -uo pipefail
cd "$(dirname "$0")"

base=${1:-main}
head=${2:-HEAD}
# float32, one thread, at the shapes where work dominates call overhead: tiny is a few
# microseconds of dispatch, large and wide take long, and two threads on a shared 2-core machine
# move with whatever else runs. track_gflops_ must stay out: asv counts a larger number as worse.
shapes="'(small|medium|skinny_in|skinny_out)'"
strict="^kernels\.Forward\.time_forward\('loops', 'float32', $shapes, 1\)"
loose="^kernels\.(GradWeight|GradBias|GradInput|Step)\.time_\w+\('loops', 'float32', $shapes, 1\)"
export FASTLINEAR_BENCH_PROFILE=${FASTLINEAR_BENCH_PROFILE:-regular}

run_tier() {  # name, factor, regex
    echo "== gate, $1 tier: slower than ${2}x fails =="
    # shellcheck disable=SC2086  # GATE_ASV_ARGS is split into arguments on purpose
    "${PYTHON:-python}" -m asv continuous --split --factor "$2" -b "$3" ${GATE_ASV_ARGS:-} \
        "$base" "$head"
}

status=0
run_tier strict "${GATE_FACTOR:-1.1}" "${GATE_BENCHMARKS:-$strict}" || status=1
loose_regex=${GATE_LOOSE_BENCHMARKS-$loose}
if [ -n "$loose_regex" ]; then
    run_tier loose "${GATE_LOOSE_FACTOR:-1.6}" "$loose_regex" || status=1
fi
echo "== gate: $([ $status = 0 ] && echo passed || echo FAILED) =="
exit $status
