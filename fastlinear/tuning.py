"""The per-machine tuning table that the ``auto`` backend reads: for each op, dtype, shape class and
thread count, whether the loop kernels or BLAS (numpy's matmul) is faster on this machine.

`tune` (``fastlinear tune`` on the command line) measures it: every entry is one (op, dtype, shape
class, thread count), where loops and blas are first checked against a float64 reference (as
``fastlinear compare`` does, with the same harness, `fastlinear.cli.harness`) and then timed, each
backend in its own settled block (before a sample, 3 warm-up calls, and a 0.2 s pause first when
more than one thread runs and the previous sample ran on another thread pool, so that the other
pool's idle threads stop spinning: `fastlinear.cli.harness.thread_pool`), with the median of
interleaved rounds taken for each. grad_bias is not tuned: the loop kernel beat numpy's sum at every
shape measured, and ``auto`` always runs it.

Where the table lives (`table_path`): the ``FASTLINEAR_TUNING`` environment variable, if set, names a
file, or ``off`` to use the built-in defaults (the loop kernels everywhere); otherwise
``$XDG_CACHE_HOME/fastlinear/tuning-<key>.json`` (``~/.cache`` when XDG_CACHE_HOME is unset), where
``<key>`` is a digest of `machine_key`: the CPU model, the number of logical CPUs, and the versions of
fastlinear, numpy, numpy's BLAS (as threadpoolctl reports it) and numba. A new CPU or an upgrade of
any of them therefore starts from the defaults until ``fastlinear tune`` runs again; a table written
for another key (a copied file, or one named by FASTLINEAR_TUNING) is ignored with one line on stderr.

The table is JSON::

    {"command": "fastlinear tune", "format": 1, "key": {...machine_key()...}, "created": "...",
     "quick": false, "repeats": 7,
     "shape_classes": {"tiny": [1, 16, 16], ...},        # what a call is classified into
     "entries": [{"op": "forward", "dtype": "float32", "class": "tiny", "threads": 2,
                  "choice": "loops",                      # what auto runs
                  "faster": "loops", "speedup": ...,      # by how much the faster one wins
                  "loops_s": ..., "blas_s": ...,          # median seconds per call
                  "rounds": 7, "blas_rounds_won": ...,    # paired rounds, and those blas won
                                                          # (None where a backend was wrong)
                  "loops_status": "ok", "blas_status": "ok"}, ...]}

``choice`` is blas only when blas validated and loops took more than `PREFER_LOOPS_WITHIN` times as
long, in the medians and in at least `BLAS_MIN_ROUND_SHARE` of the paired rounds (``"rounds"``, of
which blas won ``"blas_rounds_won"``; see `blas_wins`): on a near tie, or a win that the machine's
noise could have made, the deterministic loop kernels are kept.

An optional ``packed`` section holds where the loop kernels' packed GEMM overtakes their direct
kernels (`crossover`), which the loops backend follows (``fastlinear.backends.loops.packed_limits``)::

    "packed": {"threads": 2, "ladder": [[64, 128, 256], ...],
               "above": {"forward": {"float32": 4194304, ...}, ...},   # packed when n*k*m > this
               "rungs": {"forward": {"float32": [{"shape": [...], "direct_s": ..., "packed_s": ...,
                                                  "status": "ok"}, ...]}, ...}}

A pair it leaves out keeps the built-in crossover. One crossover serves every thread count, so
the loop kernels' results stay independent of the thread count. The same section holds, when the
forward was tuned, up to how many batch rows the packed forward reads w in place instead of packing
it (`in_place_rows`; the same bits either way)::

    "packed": {..., "w_in_place_ladder": [[16, 1024, 1024], ...],
               "w_in_place_rows": {"float32": 128, ...},                # 0: always pack w
               "w_in_place_rungs": {"float32": [{"shape": [...], "packed_s": ..., "in_place_s": ...,
                                                 "status": "ok"}, ...]}}

and, when the forward or the input gradient was tuned, up to how many batch rows their packed
products pack w's panels in the tiles that use them instead of all of w per k-block
(`in_tile_rows`; the same bits either way), in ``w_in_tile_ladder``, ``w_in_tile_rows`` (0:
always all of w) and ``w_in_tile_rungs`` (each with its ``op``, the ``shape`` it ran, whose tiled
side may be wider than the ladder's so that the tiles keep the tune's threads busy, ``whole_s``
and ``in_tile_s``).

Shape classification (`classify`): a call of batch n, in_features k, out_features m belongs to the
shape class (N, K, M) nearest in log space, the one that minimises
``(ln n - ln N)^2 + (ln k - ln K)^2 + (ln m - ln M)^2`` (sizes below 1 count as 1; a tie goes to the
class listed first). Ratios, not differences, decide. With the seven classes of
``fastlinear.cli.problems``: 2x16x16 is tiny; 64x1024x1024 is medium (squared distance 2.9, against
3.8 to wide and 7.7 to large); 32x784x10 is skinny_in; 512x256x10 is skinny_out; 1x4096x4096 is wide.
The classes are the ones stored in the table, so a table describes the shapes it was measured at.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
from pathlib import Path
from typing import Callable, Iterable

from ._memory import aligned_copy, empty_aligned

#: The ops the table covers; grad_bias always runs the loop kernel (see the module docstring).
TUNED_OPS = ("forward", "grad_weight", "grad_input")
DTYPES = ("float32", "float64")
#: The backends the table chooses between.
CHOICES = ("loops", "blas")
ENV = "FASTLINEAR_TUNING"
FORMAT = 1
COMMAND = "fastlinear tune"
#: blas is chosen only when loops takes more than this many times as long. The loop kernels give
#: bitwise the same result at any thread count and BLAS does not, so a near tie goes to loops; 3%
#: keeps auto within 0.97x of the faster backend, the bound ``fastlinear compare`` holds it to.
PREFER_LOOPS_WITHIN = 1.03
#: ... and only when, besides the medians, blas won by that margin in at least this share of the
#: paired rounds (a one-sided sign test: by chance alone, with no difference between the two, 4 of
#: 5 rounds come up 19% of the time, 6 of 7 6%, 3 of 3 12.5%). On a shared machine one kernel's
#: samples move by 30% and more between rounds, and a decision on the medians alone followed that
#: noise (a 2-core Intel Xeon: a 1.10x median win for blas in the table, loops 1.6x faster in
#: ``fastlinear compare`` ten minutes later). The price: a real but unsteady win is left to loops.
BLAS_MIN_ROUND_SHARE = 0.75


class TableError(ValueError):
    """A tuning table that cannot be used: unreadable, malformed, or written for another machine
    or other library versions (``foreign`` is then True)."""

    def __init__(self, message: str, foreign: bool = False) -> None:
        super().__init__(message)
        self.foreign = foreign


# ---------------------------------------------------------------------------------------------
# Where the table is, and whose it is


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _numpy_blas() -> list[str]:
    """numpy's BLAS as threadpoolctl reports it: "library version (kernel)" for each loaded BLAS
    whose file lies inside numpy's installation (a wheel's numpy.libs), else for every loaded BLAS.
    Libraries that torch brought in would otherwise change the key when torch is imported."""
    import numpy as np
    import threadpoolctl

    blas = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    numpy_dir = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    own = [i for i in blas
           if os.path.basename(os.path.dirname(i.get("filepath", ""))).startswith("numpy")
           or os.path.abspath(i.get("filepath", "")).startswith(os.path.join(numpy_dir, "numpy"))]
    return sorted(f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
                  for i in (own or blas))


_key: dict | None = None


def machine_key() -> dict:
    """What a table is valid for: CPU model, logical CPU count, and the versions of fastlinear,
    numpy, numpy's BLAS and numba. A table whose key differs is not used. Computed once per
    process (threadpoolctl takes about 10 ms to list the loaded libraries)."""
    global _key
    if _key is None:
        import numba
        import numpy as np

        from . import __version__

        _key = {"cpu": cpu_model(), "cpus": os.cpu_count(), "fastlinear": __version__,
                "numpy": np.__version__, "blas": _numpy_blas(), "numba": numba.__version__}
    return json.loads(json.dumps(_key))  # a copy the caller may change


def key_digest(key: dict) -> str:
    """16 hex digits identifying ``key`` (the file-name part of the default table path)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fastlinear``, or ``~/.cache/fastlinear`` when XDG_CACHE_HOME is unset or
    not an absolute path (as the XDG base-directory specification says)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "fastlinear"


def default_path(key: dict | None = None) -> Path:
    """The table file for this machine and these library versions in `cache_dir`."""
    return cache_dir() / f"tuning-{key_digest(key or machine_key())}.json"


def table_path(key: dict | None = None) -> Path | None:
    """The table ``auto`` reads: FASTLINEAR_TUNING's file, None when it is ``off``, else
    `default_path`."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() == "off":
        return None
    return Path(env).expanduser() if env else default_path(key)


# ---------------------------------------------------------------------------------------------
# Reading a table


def classify(n: int, k: int, m: int, classes: dict[str, tuple[int, int, int]]) -> str:
    """The name of the shape class nearest to batch ``n``, in_features ``k``, out_features ``m``:
    the one minimising the squared distance of (ln n, ln k, ln m) to (ln N, ln K, ln M), sizes
    below 1 counted as 1, ties to the class listed first (see the module docstring)."""
    p = (math.log(max(n, 1)), math.log(max(k, 1)), math.log(max(m, 1)))
    best, best_d = "", math.inf
    for name, shape in classes.items():
        d = sum((a - math.log(max(s, 1))) ** 2 for a, s in zip(p, shape))
        if d < best_d:
            best, best_d = name, d
    return best


def _fail(path: Path, why: str, foreign: bool = False) -> TableError:
    return TableError(f"tuning table {str(path)!r} {why}", foreign)


def validate(doc: object, path: Path, key: dict) -> dict:
    """Check a parsed table; return it. Raises TableError naming ``path`` and what is wrong."""
    if not isinstance(doc, dict) or doc.get("command") != COMMAND:
        raise _fail(path, f"is not a table written by {COMMAND}")
    if doc.get("format") != FORMAT:
        raise _fail(path, f"has format {doc.get('format')!r}; this fastlinear reads format {FORMAT}")
    if doc.get("key") != key:
        theirs = doc.get("key") if isinstance(doc.get("key"), dict) else {}
        differs = [f for f in key if theirs.get(f) != key[f]] or ["key"]
        raise _fail(path, f"was measured with another {', '.join(differs)} "
                          f"(table: {', '.join(str(theirs.get(f)) for f in differs)}; "
                          f"here: {', '.join(str(key.get(f)) for f in differs)})", foreign=True)
    classes = doc.get("shape_classes")
    if not isinstance(classes, dict) or not classes or not all(
            isinstance(s, list) and len(s) == 3 and all(type(v) is int and v >= 1 for v in s)
            for s in classes.values()):
        raise _fail(path, "has no valid shape_classes (name -> [batch, in, out])")
    entries = doc.get("entries")
    if not isinstance(entries, list):
        raise _fail(path, "has no list of entries")
    for i, e in enumerate(entries):
        ok = (isinstance(e, dict) and e.get("op") in TUNED_OPS and e.get("dtype") in DTYPES
              and e.get("class") in classes and type(e.get("threads")) is int
              and e["threads"] >= 1 and e.get("choice") in CHOICES)
        if not ok:
            raise _fail(path, f"has a malformed entry {i}: {e!r:.200}")
    packed = doc.get("packed")
    if packed is not None:
        above = packed.get("above") if isinstance(packed, dict) else None
        if not isinstance(above, dict) or not all(
                op in TUNED_OPS and isinstance(by_dtype, dict) and all(
                    d in DTYPES and type(v) is int and v >= 0 for d, v in by_dtype.items())
                for op, by_dtype in above.items()):
            raise _fail(path, "has a malformed packed section (above: op -> dtype -> work >= 0)")
        for prefix, _, most, _ in W_LIMITS.values():
            rows = packed.get(f"{prefix}_rows", {})
            bad = ([f"{d!r}: {v!r}" for d, v in rows.items()
                    if d not in DTYPES or type(v) is not int or not 0 <= v <= most]
                   if isinstance(rows, dict) else [repr(rows)])
            if bad:
                raise _fail(path, f"has a malformed packed section ({prefix}_rows: "
                                  f"{', '.join(bad)}; expected {' or '.join(DTYPES)} -> batch "
                                  f"rows from 0 to {most})")
    return doc


def load(path: Path, key: dict) -> dict:
    """Read and `validate` the table at ``path``. Raises FileNotFoundError when there is none,
    TableError when it cannot be used."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"cannot be read: {exc}") from None
    return validate(doc, path, key)


# ---------------------------------------------------------------------------------------------
# Measuring a table


def _thread_counts(threads: Iterable[int] | None) -> list[int]:
    from . import _threads

    counts = [1, _threads.get_num_threads()] if threads is None else list(threads)
    if not counts:
        raise ValueError("threads: give at least one thread count")
    return sorted({_threads._check(t) for t in counts})


def rounds_needed(rounds: int) -> int:
    """How many of ``rounds`` paired rounds blas must win: `BLAS_MIN_ROUND_SHARE` of them,
    rounded up."""
    return math.ceil(BLAS_MIN_ROUND_SHARE * rounds)


def blas_wins(loops_s: float, blas_s: float, won: int, rounds: int) -> bool:
    """Whether auto should run blas: loops' median time is more than `PREFER_LOOPS_WITHIN` times
    blas's, and blas won by that margin in at least `rounds_needed` of the ``rounds`` paired
    rounds (``won`` of them)."""
    return (loops_s > PREFER_LOOPS_WITHIN * blas_s and won >= rounds_needed(rounds)
            and rounds > 0)


def _entry(op: str, dtype: str, name: str, threads: int, rows: dict) -> dict:
    """One table entry from the harness results of loops and blas for one (op, dtype, class,
    thread count)."""
    lp, bl = rows["loops"], rows["blas"]
    entry = {"op": op, "dtype": dtype, "class": name, "threads": threads,
             "loops_s": lp.median_s, "blas_s": bl.median_s,
             "loops_status": lp.status, "blas_status": bl.status,
             "loops_error": lp.error, "blas_error": bl.error}
    if lp.ok and bl.ok:
        faster = "blas" if bl.median_s < lp.median_s else "loops"
        entry["faster"] = faster
        entry["speedup"] = max(lp.median_s, bl.median_s) / min(lp.median_s, bl.median_s)
        # rounds are interleaved (loops' sample, then blas's), so a pair shares the machine's
        # state of that moment; count the rounds blas won by the margin
        won = sum(lt > PREFER_LOOPS_WITHIN * bt for lt, bt in zip(lp.samples_s, bl.samples_s))
        rounds = min(len(lp.samples_s), len(bl.samples_s))
        entry["blas_rounds_won"], entry["rounds"] = won, rounds
        entry["choice"] = "blas" if blas_wins(lp.median_s, bl.median_s, won, rounds) else "loops"
    else:  # a backend that gave a wrong result is never chosen; loops if both did
        entry["faster"] = entry["speedup"] = None
        entry["blas_rounds_won"] = entry["rounds"] = None
        entry["choice"] = "blas" if bl.ok and not lp.ok else "loops"
    return entry


#: Shapes (batch, in_features, out_features) at which `tune` times the loop kernels' parallel
#: direct kernel against the packed GEMM: work n * in * out from 2**21 to 2**28, every side at
#: least ``loops.PACKED_MIN_DIM``; squarer shapes than the rest of the table. Shapes with a narrow
#: side (``loops.too_narrow``): the forward packs above the same crossover, the gradients above the
#: larger of it and the built-in one.
CROSSOVER_LADDER = ((64, 128, 256), (64, 256, 256), (128, 256, 256), (128, 256, 512),
                    (128, 512, 512), (256, 512, 512), (256, 1024, 512), (512, 1024, 512))


def _op_args(op: str, dtype: str, n: int, k: int, m: int, rng) -> tuple[tuple, tuple]:
    """Seeded arguments for the loops signature of ``op`` (its output first) and the operands
    (x, w, b, dy) they were made from."""
    import numpy as np

    dt = np.dtype(dtype)
    # on 64-byte lines, as `Linear` and `fastlinear.nn` keep theirs and `fastlinear compare` times
    x, w, b, dy = (aligned_copy(rng.standard_normal(s), dt)
                   for s in ((n, k), (m, k), (m,), (n, m)))
    if op == "forward":
        args = (empty_aligned((n, m), dt), x, w, b, 0)
    elif op == "grad_weight":
        args = (empty_aligned((m, k), dt), empty_aligned(m, dt), dy, x, dt.type(1), False)
    else:
        args = (empty_aligned((n, k), dt), dy, w)
    return args, (x, w, b, dy)


def crossover(op: str, dtype: str, repeats: int = 5, min_sample_s: float = 2e-3,
              progress: Callable[[str], None] | None = None) -> dict:
    """Time the loop kernels' direct kernel of ``op`` (the one dispatch runs above its serial
    threshold: `loops.direct_and_packed`) against the packed GEMM at each
    shape of `CROSSOVER_LADDER` (the median of ``repeats`` interleaved samples of at least
    ``min_sample_s``, after warm-up calls, as ``fastlinear compare`` times backends; both are
    first checked against the float64 reference, as compare checks every backend) and return ``{"above": work,
    "rungs": [...]}``: the packed GEMM is to run when n * in * out > work, the split of the
    ladder that saves the most time (`_best_split`: the sum of the log time ratios of the rungs
    it sends to the packed kernel), half the smallest rung's work when that is all of them. A
    rung where either result is wrong (status "wrong") is never sent to the packed kernel, nor
    is any below it.
    """
    import numpy as np

    from .backends import loops
    from .cli.problems import error_ratio, reduction_lengths, reference

    direct, packed = loops.direct_and_packed(op)
    if packed is None:  # pragma: no cover - a build without packed kernels
        return {"above": 1 << 62, "rungs": []}
    rng = np.random.default_rng(0)
    rungs, gains = [], []
    for n, k, m in CROSSOVER_LADDER:
        if progress:
            progress(f"{dtype} {op} {n}x{k}x{m}")
        args, operands = _op_args(op, dtype, n, k, m, rng)
        other = (aligned_copy(args[0]), *args[1:])
        direct(*args)
        packed(*other)
        # each against the float64 reference, with the bound `fastlinear compare` holds every
        # backend to (`fastlinear.cli.problems.tolerance`)
        ((ref, mag),) = reference(op, *operands)[:1]
        (length,) = reduction_lengths(op, n, k, m)
        agree = all(error_ratio(got[0], ref, mag, length, dtype) <= 1 for got in (args, other))
        d_s, p_s = _time_pair(lambda: direct(*args), lambda: packed(*other), 2 * n * k * m,
                              repeats, min_sample_s)
        rungs.append({"shape": [n, k, m], "direct_s": d_s, "packed_s": p_s,
                      "status": "ok" if agree else "wrong"})
        gains.append(math.log(d_s / p_s) if agree else -math.inf)
    return {"above": _best_split(gains), "rungs": rungs}


def _time_pair(first: Callable[[], None], second: Callable[[], None], flops: int, repeats: int,
               min_sample_s: float) -> tuple[float, float]:
    """Median seconds per call of two loop-kernel calls, timed as `fastlinear compare` times
    backends (interleaved samples; no pause between them: both run on Numba's pool)."""
    from types import SimpleNamespace

    from .cli import harness

    rows = [(SimpleNamespace(backend="loops", samples_s=[], flops=flops), fn)
            for fn in (first, second)]
    harness._time(rows, repeats, min_sample_s, settle_s=0.0)
    a, b = (row.median_s for row, _ in rows)
    return a, b


def _best_split(gains: list[float]) -> int:
    """The crossover work for `CROSSOVER_LADDER` given, per rung, the log of direct time over
    packed time (-inf where packed may not run): of "packed above rung i" for every i, and
    "packed everywhere" (above half the smallest rung's work), the one with the largest sum of
    gains over the rungs it sends to the packed kernel; ties go to the larger work (the direct
    kernel). A noisy rung moves the split only if it outweighs the wins it would give up."""
    works = [n * k * m for n, k, m in CROSSOVER_LADDER]
    best, best_gain = works[-1], 0.0  # packed above the ladder only: nothing measured gained
    for i in range(len(works) - 1, -1, -1):
        gain = sum(gains[i:])
        if gain > best_gain:
            best, best_gain = (works[i - 1] if i else works[0] // 2), gain
    return best


#: Batches at which `tune` times the packed forward with w packed against w read in place, each at
#: `IN_PLACE_FEATURES` (in = out); the built-in limit, 128, sits inside. The gain depends on the
#: features as well: at a batch of 256, 1024 x 1024 gained (1.16-1.52) while 512 x 512 (the
#: medium class) was mixed (0.89-1.26), so a batch is read in place only where the two together
#: gain (`_best_prefix` over the sum of their log ratios).
IN_PLACE_BATCHES = (16, 32, 64, 128, 256, 512)
IN_PLACE_FEATURES = (512, 1024)
IN_PLACE_LADDER = tuple((n, f, f) for n in IN_PLACE_BATCHES for f in IN_PLACE_FEATURES)
#: the largest limit a table may hold: `packed_forward` never reads w in place above MC rows
IN_PLACE_MAX = 2048
#: The same for the packed forward and input gradient with all of w packed per k-block against
#: w's panels packed by the tile that uses them (``kernels.packed._api.W_IN_TILE_ROWS``, built in
#: 512), at the same batches and features, the side that the tiles split (out_features for the
#: forward, in_features for the input gradient) widened where the tiles would not keep the
#: threads busy (`tiled_columns`); a table's limit may also be at most MC rows. The ladder ends
#: at 512 rows, so a tuned limit is at most 512 (at 1024 rows packing in the tiles gained
#: 1.05-1.10 on a 2-core Intel Xeon; see ``_api.W_IN_TILE_ROWS``).
IN_TILE_BATCHES = IN_PLACE_BATCHES
IN_TILE_LADDER = IN_PLACE_LADDER
IN_TILE_MAX = IN_PLACE_MAX


def tiled_columns(cols: int, threads: int) -> int:
    """``cols``, or the smallest multiple of 256 above it whose 256-column tiles keep ``threads``
    threads busy (``kernels.packed._driver.b_in_tile_balanced``), so that a rung of
    `in_tile_rows` packs w in its tiles at that thread count (1024 columns at 3 threads: 4 tiles
    in 2 rounds, too few; 1280 columns: 5 tiles, 5/6 of 2 rounds of 3)."""
    from .kernels.packed._driver import NC_IN_TILE, b_in_tile_balanced

    if b_in_tile_balanced(cols, threads):
        return cols
    wide = -(-cols // NC_IN_TILE) * NC_IN_TILE
    while not b_in_tile_balanced(wide, threads):
        wide += NC_IN_TILE
    return wide


#: the two limits below which w is not packed whole: the prefix of their table fields
#: (``<prefix>_ladder``, ``_rows``, ``_rungs``), their batches, the largest value a table may hold,
#: and the names of the rungs' two times (the other way, this way)
W_LIMITS = {
    "in_place": ("w_in_place", IN_PLACE_BATCHES, IN_PLACE_MAX, ("packed_s", "in_place_s")),
    "in_tile": ("w_in_tile", IN_TILE_BATCHES, IN_TILE_MAX, ("whole_s", "in_tile_s")),
}


def in_place_rows(dtype: str, repeats: int = 5, min_sample_s: float = 2e-3,
                  progress: Callable[[str], None] | None = None) -> dict:
    """Time the packed forward with w packed (whole or in the tiles, as the forward would pack it
    with the in-tile limit in use) against w read in place at each shape of `IN_PLACE_LADDER`
    (medians of ``repeats`` interleaved samples, timed as `crossover` times; both results
    compared bit for bit, as they must be equal) and return ``{"rows": batch, "rungs": [...]}``:
    w is to be read in place up to that many batch rows, the prefix of `IN_PLACE_BATCHES` that
    saves the most time over both feature sizes (`_best_prefix`), 0 when none saves any. A batch
    where the two results differ (status "wrong") is never read in place, nor is any above it."""
    return _measure_w_limit("in_place", ("forward",), IN_PLACE_LADDER, dtype, repeats,
                            min_sample_s, progress)


def in_tile_rows(dtype: str, repeats: int = 5, min_sample_s: float = 2e-3,
                 progress: Callable[[str], None] | None = None,
                 ops: Iterable[str] = ("forward", "grad_input")) -> dict:
    """`in_place_rows` for packing w in the tiles: the packed forward (with w never read in
    place) and input gradient of ``ops`` with all of w packed per k-block against w's panels
    packed by each tile, at the shapes of `IN_TILE_LADDER` with the tiled side widened for the
    current thread count (`tiled_columns`; each rung records the shape it ran); ``{"rows":
    batch, "rungs": [...]}``, w packed in the tiles up to the batch that saves the most time over
    the ops and feature sizes together."""
    return _measure_w_limit("in_tile", tuple(ops), IN_TILE_LADDER, dtype, repeats, min_sample_s,
                            progress)


def _measure_w_limit(kind: str, ops: tuple, ladder: tuple, dtype: str, repeats: int,
                     min_sample_s: float, progress: Callable[[str], None] | None) -> dict:
    """`in_place_rows` (kind "in_place") or `in_tile_rows` (kind "in_tile") at ``ladder``."""
    import numpy as np

    from .backends import loops

    _, batches, _, (other_key, this_key) = W_LIMITS[kind]
    if loops.packed_forward is None:  # pragma: no cover - a build without packed kernels
        return {"rows": 0, "rungs": []}
    what = "w packed or in place" if kind == "in_place" else "w packed whole or in tiles"
    tile_rows = loops.w_in_tile_rows(np.dtype(dtype).itemsize)

    def call(op: str, args: tuple, limit: int) -> None:
        """``op`` on ``args`` with this limit at ``limit`` (0: the other way)."""
        if op == "grad_input":
            loops.packed_grad_input(*args, limit)
        elif kind == "in_tile":
            loops.packed_forward(*args, 0, limit)          # never in place
        else:
            loops.packed_forward(*args, limit, tile_rows)  # otherwise as the forward would

    from . import _threads

    threads = _threads.get_num_threads()
    rng = np.random.default_rng(1)
    rungs, gains = [], dict.fromkeys(batches, 0.0)
    for n, k0, m0 in ladder:
        for op in ops:
            k, m = k0, m0
            if kind == "in_tile" and op == "forward":
                m = tiled_columns(m, threads)  # the forward's tiles split out_features
            elif kind == "in_tile":
                k = tiled_columns(k, threads)  # the input gradient's, in_features
            if progress:
                progress(f"{what}: {dtype} {op} {n}x{k}x{m}")
            args, _ = _op_args(op, dtype, n, k, m, rng)
            args2 = (aligned_copy(args[0]), *args[1:])
            calls = [lambda: call(op, args, 0), lambda: call(op, args2, n)]
            for c in calls:
                c()
            same = bool(np.array_equal(args[0], args2[0]))
            other_s, this_s = _time_pair(*calls, 2 * n * k * m, repeats, min_sample_s)
            rungs.append({"op": op, "shape": [n, k, m], other_key: other_s, this_key: this_s,
                          "status": "ok" if same else "wrong"})
            gains[n] += math.log(other_s / this_s) if same else -math.inf
    count = _best_prefix([gains[n] for n in batches])
    return {"rows": batches[count - 1] if count else 0, "rungs": rungs}


def _best_prefix(gains: list[float]) -> int:
    """How many rungs, from the first, to send to the in-place forward (or to packing w in the
    tiles) given each rung's log of the other way's time over this way's (-inf where the results
    differ): the count whose gains sum highest, 0 when no count gains anything; ties go to the
    smaller count. A rung after a -inf is never included."""
    best, best_gain, total = 0, 0.0, 0.0
    for i, g in enumerate(gains):
        total += g
        if total == -math.inf:
            break
        if total > best_gain:
            best, best_gain = i + 1, total
    return best


def tune(
    *,
    classes: Iterable[str] | None = None,
    dtypes: Iterable[str] = DTYPES,
    ops: Iterable[str] = TUNED_OPS,
    threads: Iterable[int] | None = None,
    quick: bool = False,
    repeats: int | None = None,
    output: str | os.PathLike | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    crossovers: bool = True,
) -> dict:
    """Measure loops against blas on this machine and write the tuning table ``auto`` reads;
    first, unless ``crossovers`` is False, where the loop kernels' packed GEMM overtakes their
    direct kernels (`crossover`, for each of ``ops`` and ``dtypes``, at the largest of
    ``threads``), which the loops backend (and so auto) then follows.

    Args:
        classes: shape-class names from ``fastlinear.cli.problems.SHAPE_CLASSES`` (default: all
            seven). Calls nearest a class that was not measured run the loop kernels.
        dtypes: "float32" and/or "float64".
        ops: from `TUNED_OPS`.
        threads: thread counts to measure at (default: 1 and the current count); each is set for
            Numba, BLAS and torch together (`fastlinear.threads`).
        quick: a rough table in a fraction of the time: 3 rounds of short samples (the pauses
            between backends on different thread pools stay: without them, at 2 threads, a loop
            kernel timed right after BLAS calls on OpenBLAS's own threads came out orders of
            magnitude slower, which says nothing about either backend alone).
        repeats: timing rounds per backend (default 7, or 3 with ``quick``); blas must win most
            of them (`blas_wins`).
        output: where to write (default: `table_path`, i.e. FASTLINEAR_TUNING's file or the cache
            file for this machine). Checked before anything is measured.
        progress: called as ``progress(done, total, what)`` before each measurement.
        crossovers: measure the direct-or-packed crossovers, the in-tile limit (`in_tile_rows`,
            over "forward" and "grad_input" where they are among ``ops``; the limit serves both,
            so with only one of them it is measured on that one), and, when "forward" is among
            ``ops``, the packed forward's in-place limit (`in_place_rows`) (the table's
            ``packed`` section); without them the loops backend keeps its built-in ones.

    Returns:
        The table as written (see the module docstring), with ``"path"`` added.

    Raises:
        ValueError: an unknown class, dtype or op, a thread count outside Numba's pool, or
            ``repeats`` < 1.
        OSError: ``output`` cannot be written (before anything is measured).
    """
    from . import _threads
    from ._io import atomic_write, check_writable
    from .cli import problems

    names = list(problems.SHAPE_CLASSES) if classes is None else list(dict.fromkeys(classes))
    bad = [c for c in names if c not in problems.SHAPE_CLASSES]
    if bad or not names:
        raise ValueError(f"unknown shape class {', '.join(map(repr, bad)) or '(none given)'}; "
                         f"valid classes are {', '.join(problems.SHAPE_CLASSES)}")
    dtypes, ops = list(dict.fromkeys(dtypes)), list(dict.fromkeys(ops))
    for what, got, valid in (("dtype", dtypes, DTYPES), ("op", ops, TUNED_OPS)):
        bad = [v for v in got if v not in valid]
        if bad or not got:
            raise ValueError(f"unknown {what} {', '.join(map(repr, bad)) or '(none given)'}; "
                             f"valid: {', '.join(valid)}")
    counts = _thread_counts(threads)
    repeats = repeats if repeats is not None else 3 if quick else 7
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    key = machine_key()
    if output is None:
        output = table_path(key) or default_path(key)
        if Path(output).parent == cache_dir():
            cache_dir().mkdir(parents=True, exist_ok=True)
    path = check_writable(output)

    total = len(counts) * len(dtypes) * len(names) * len(ops)
    total += len(dtypes) * len(ops) * len(CROSSOVER_LADDER) if crossovers else 0
    tile_ops = [op for op in ("forward", "grad_input") if op in ops]
    if crossovers:
        total += len(dtypes) * len(IN_TILE_LADDER) * len(tile_ops)
        total += len(dtypes) * len(IN_PLACE_LADDER) if "forward" in ops else 0
    done = 0
    packed = None
    from .backends import auto, loops

    sample_s = 2e-4 if quick else 2e-3  # the shortest sample of calls, seconds

    def rung(what: str, kind: str = "direct or packed: ") -> None:
        nonlocal done
        if progress:
            progress(done, total, f"{counts[-1]} thread{'s' * (counts[-1] > 1)}, {kind}{what}")
        done += 1

    try:
        if crossovers:
            packed = {"threads": counts[-1], "ladder": [list(s) for s in CROSSOVER_LADDER],
                      "above": {}, "rungs": {}}
            with _threads.threads(counts[-1]):
                # first, so that the crossovers are timed with the limits they are stored with;
                # the in-tile limit before the in-place one, which is timed against the way the
                # forward would otherwise go
                limits = {}
                for kind, measure, ladder, more in (
                        ("in_tile", in_tile_rows, IN_TILE_LADDER, {"ops": tile_ops}),
                        ("in_place", in_place_rows, IN_PLACE_LADDER, {})):
                    if not tile_ops or (kind == "in_place" and "forward" not in ops):
                        continue
                    prefix = W_LIMITS[kind][0]
                    packed[f"{prefix}_ladder"] = [list(s) for s in ladder]
                    packed[f"{prefix}_rows"], packed[f"{prefix}_rungs"] = {}, {}
                    for dtype in dtypes:
                        found = measure(dtype, repeats=repeats, min_sample_s=sample_s,
                                        progress=lambda what: rung(what, ""), **more)
                        packed[f"{prefix}_rows"][dtype] = found["rows"]
                        packed[f"{prefix}_rungs"][dtype] = found["rungs"]
                    limits[f"{prefix}_rows"] = packed[f"{prefix}_rows"]
                    loops.use_packed_limits(limits)
                for dtype in dtypes:
                    for op in ops:
                        found = crossover(op, dtype, repeats=repeats, min_sample_s=sample_s,
                                          progress=rung)
                        packed["above"].setdefault(op, {})[dtype] = found["above"]
                        packed["rungs"].setdefault(op, {})[dtype] = found["rungs"]
        loops.use_packed_limits(packed)  # the entries below time loops with the new limits
        entries = _measure_entries(counts, dtypes, names, ops, repeats, quick, progress, done,
                                   total)
    finally:
        # the next call reads the table in use again (the old one, if this raised)
        auto.reload()
    if progress:
        progress(total, total, "done")
    table = {"command": COMMAND, "format": FORMAT, "key": key,
             "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "python": platform.python_version(), "quick": quick, "repeats": repeats,
             "prefer_loops_within": PREFER_LOOPS_WITHIN,
             "shape_classes": {c: list(s) for c, s in problems.SHAPE_CLASSES.items()},
             "entries": entries}
    if packed is not None:
        table["packed"] = packed
    with atomic_write(path, "w") as f:
        json.dump(table, f, indent=1)
        f.write("\n")
    auto.reload()  # the next auto call reads the new table if it is the one in use
    return {**table, "path": str(path)}


def _measure_entries(counts: list[int], dtypes: list[str], names: list[str], ops: list[str],
                     repeats: int, quick: bool, progress, done: int, total: int) -> list[dict]:
    """The loops-against-blas entries of `tune`, in its order; progress counts on from
    ``done``."""
    from . import _threads
    from .cli import harness, problems

    entries = []
    for t in counts:
        with _threads.threads(t):
            for dtype in dtypes:
                for name in names:
                    n, k, m = problems.SHAPE_CLASSES[name]

                    def step(what: str, name=name) -> None:
                        nonlocal done
                        if progress:
                            progress(done, total, f"{t} thread{'s' * (t > 1)}, {what} ({name})")
                        done += 1

                    results = harness.run([(n, k, m)], [dtype], list(CHOICES), tuple(ops),
                                          repeats=repeats,
                                          min_sample_s=2e-4 if quick else 2e-3,
                                          settle=True, progress=step)
                    for op in ops:
                        rows = {r.backend: r for r in results if r.op == op}
                        entries.append(_entry(op, dtype, name, t, rows))
    return entries


def describe() -> dict:
    """Which table ``auto`` uses in this process (loading it if no auto call has yet):
    ``{"source": "table" | "defaults", "path": str | None, "reason": str, "blas": [...],
    "packed": {...}}``, where ``blas`` lists the (op, dtype, class, threads) that run BLAS,
    ``reason`` says why the defaults are in use and ``packed`` holds the loop kernels'
    direct-or-packed crossovers in use (``fastlinear.backends.loops.packed_limits``)."""
    from .backends import auto

    return auto.table_in_use()
