"""`DataParallel`: one model replica per process, kept bitwise identical by summing the
gradients of every rank's slice of each global batch in one allreduce per step."""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

from .._memory import ALIGN, zeros_aligned
from ..layer import Linear
from .comm import Communicator, check_communicator, default_communicator


class ReplicaMismatch(RuntimeError):
    """The replica check found a rank whose parameters differ from rank 0's."""


def _layers(model: object) -> list[Linear]:
    """The Linear layers that hold every parameter of ``model`` (a Linear or a Sequential)."""
    if isinstance(model, Linear):
        layers = [model]
    elif hasattr(model, "linears"):
        layers = list(model.linears)
    else:
        raise TypeError(f"DataParallel takes a fastlinear.Linear or an nn.Sequential, got "
                        f"{type(model).__name__}")
    held = {id(a) for layer in layers for pair in layer.parameters() for a in pair}
    for i, (p, g) in enumerate(model.parameters()):
        if id(p) not in held or id(g) not in held:
            # A module with parameters of its own: DataParallel would not know how to move its
            # gradient into the shared buffer.
            raise TypeError(f"parameter {i} of the model ({p.shape} {p.dtype}) does not belong to "
                            f"a fastlinear.Linear layer; DataParallel can only share Linear layers' "
                            f"gradients")
    return layers


class DataParallel:
    r"""Data-parallel training of ``model`` over the ranks of ``comm``.

    Every rank holds a full replica of the model. At construction rank 0's parameters are
    broadcast, so replicas start equal however each rank initialised its copy. Every layer's
    ``grad_weight`` and ``grad_bias`` are then re-pointed to views into one contiguous buffer,
    ``[gradients..., loss sum, rows]``, so that a step needs a single in-place allreduce (sum) of
    that buffer, after which the gradients are multiplied by 1/(rows over all ranks).

    With layers of ``reduction="sum"`` (the default) and a loss of ``reduction="sum"`` on each
    rank's rows, this gives the gradient of the mean loss over the whole global batch: the same
    gradient one process computes on that batch with a ``reduction="mean"`` loss, up to rounding
    (the sums are grouped per rank). A rank whose slice of a batch is empty (a short last batch,
    or more ranks than rows) adds zeros and still takes part in every collective.

    Args:
        model: a `fastlinear.Linear` or an `nn.Sequential` of them; its layers must use
            ``reduction="sum"``. Build optimizers after wrapping (or pass them to `step` or
            `sync_optimizer`, which re-point stale gradient references).
        comm: a `Communicator`; default MPI's COMM_WORLD (needs mpi4py).
        check_every: every this many steps (0: never), compare a digest of the parameters
            across ranks and raise `ReplicaMismatch` on every rank if any differ from rank 0's.

    Attributes:
        buffer: the array the allreduce works on, in the model's dtype: every gradient, each
            starting on a 64-byte line (zeros between them), then the loss sum and the rows.
        grads: ``buffer[:-2]``, every gradient, in layer order (weight, then bias).
        steps: allreduces done so far.

    Raises:
        TypeError: model or comm of the wrong kind.
        ValueError: a layer with ``reduction="mean"``.

    Examples:
        >>> dp = DataParallel(model)                       # doctest: +SKIP
        >>> opt = nn.Adam(model, lr=1e-3)                  # doctest: +SKIP
        >>> loss_fn = nn.CrossEntropyLoss(reduction="sum") # doctest: +SKIP
        >>> rows = shard_rows(len(batch), dp.rank, dp.size) # doctest: +SKIP
        >>> mean_loss = dp.step(x[batch[rows]], y[batch[rows]], loss_fn, opt)  # doctest: +SKIP
    """

    def __init__(self, model: object, comm: Communicator | None = None, *, check_every: int = 0) -> None:
        self.comm = check_communicator(default_communicator() if comm is None else comm)
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 0:
            raise ValueError(f"check_every must be an integer >= 0, got {check_every!r}")
        self.model = model
        self.layers = _layers(model)
        for i, layer in enumerate(self.layers):
            if layer.reduction != "sum":
                raise ValueError(
                    f"layer {i} has reduction={layer.reduction!r}; DataParallel needs 'sum' so that "
                    f"it can divide the summed gradient by the rows of the whole global batch")
        self.dtype = self.layers[0].dtype
        self.check_every = check_every
        self.steps = 0
        # Each gradient starts on a 64-byte line of the buffer (the kernels write and read them
        # as vectors, `fastlinear._memory`); the few elements of padding between them stay zero
        # and sum to zero in the allreduce.
        line = ALIGN // self.dtype.itemsize
        grads = [g for layer in self.layers for g in (layer.grad_weight, layer.grad_bias)
                 if g is not None]
        offsets, total = [], 0
        for g in grads:
            offsets.append(total)
            total += -(-g.size // line) * line
        self.buffer = zeros_aligned(total + 2, self.dtype)
        self.grads = self.buffer[:total]
        self._stats = self.buffer[total:]  # [loss sum, rows], reduced with the gradients
        # float32 counts rows exactly up to 2**24, float64 up to 2**53.
        self._max_rows = 2 ** (np.finfo(self.dtype).nmant + 1)
        views = iter(self._view(g, offset) for g, offset in zip(grads, offsets))
        for layer in self.layers:
            layer.grad_weight = next(views)
            if layer.grad_bias is not None:
                layer.grad_bias = next(views)
        self._params = [p for layer in self.layers for p, _ in layer.parameters()]
        self.broadcast_parameters()

    def _view(self, grad: np.ndarray, offset: int) -> np.ndarray:
        view = self.buffer[offset : offset + grad.size].reshape(grad.shape)
        view[...] = grad  # keep any gradient already accumulated
        return view

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def size(self) -> int:
        return self.comm.size

    def broadcast_parameters(self) -> None:
        """Copy rank 0's parameters to every rank (one broadcast of all of them packed)."""
        packed = np.concatenate([p.reshape(-1) for p in self._params])
        self.comm.bcast(packed, root=0)
        offset = 0
        for p in self._params:
            p.reshape(-1)[...] = packed[offset : offset + p.size]
            offset += p.size

    def _bind(self, optimizer) -> None:
        """Point the optimizer's gradient references at the shared buffer's views, if an
        optimizer built before `DataParallel` still holds the layers' old gradient arrays."""
        current = self.model.parameters()
        params = getattr(optimizer, "params", None)
        if params is None or len(params) != len(current) or any(
                p is not q for (p, _), (q, _) in zip(params, current)):
            raise ValueError("the optimizer does not update this model's parameters (in order); "
                             "build it from the wrapped model")
        if any(g is not h for (_, g), (_, h) in zip(params, current)):
            optimizer.params = current

    def sync_optimizer(self, optimizer) -> None:
        """Broadcast rank 0's optimizer state (step count and buffers), e.g. after every rank
        loaded a checkpoint, or when only rank 0 did; re-points stale gradient references."""
        self._bind(optimizer)
        steps = np.array([optimizer.steps], dtype=np.int64)
        self.comm.bcast(steps, root=0)
        # Optimizer state is created lazily (a buffer exists once a step needed it), so rank 0
        # first says which buffers it has; the others create or drop theirs to match.
        names = sorted(optimizer.state)
        present = np.array([a is not None for n in names for a in optimizer.state[n]], dtype=np.int8)
        self.comm.bcast(present, root=0)
        flags = iter(present.tolist())
        for name in names:
            arrays = optimizer.state[name]
            for i, (p, _) in enumerate(optimizer.params):
                if next(flags):
                    if arrays[i] is None:
                        arrays[i] = zeros_aligned(p.shape, p.dtype)
                    self.comm.bcast(arrays[i], root=0)
                else:
                    arrays[i] = None
        optimizer.steps = int(steps[0])

    def zero_grad(self) -> None:
        """Zero every gradient (through the model, so its layers know they start from zero)."""
        self.model.zero_grad()

    def allreduce_gradients(self, loss_sum: float, rows: int) -> tuple[float, int]:
        """Sum gradients, loss and rows over the ranks, then divide the gradients by the rows.

        Call it on every rank after the local backward, even with ``rows == 0`` (the rank's
        gradients are then zeros).

        Args:
            loss_sum: this rank's loss summed over its rows (0.0 for none).
            rows: the number of rows this rank's gradients were summed over.

        Returns:
            (mean loss over the global batch, rows in the global batch).

        Raises:
            ValueError: no rank had any rows, or more rows than the dtype counts exactly.
            ReplicaMismatch: the replica check (if due) found differing parameters.
        """
        if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 0:
            raise ValueError(f"rows must be an integer >= 0, got {rows!r}")
        if self.check_every and self.steps % self.check_every == 0:
            self.check_replicas()
        self._stats[0] = loss_sum
        self._stats[1] = rows
        self.comm.allreduce(self.buffer)
        total = float(self._stats[1])
        if not 0 < total < self._max_rows:
            raise ValueError(f"the global batch has {total:.0f} rows; it needs 1 to "
                             f"{self._max_rows - 1} for {self.dtype} gradients")
        np.multiply(self.grads, self.dtype.type(1.0 / total), out=self.grads)
        self.steps += 1
        return float(self._stats[0]) / total, int(total)

    def step(self, x: np.ndarray, labels: np.ndarray, loss_fn: Callable, optimizer) -> float:
        """One training step on this rank's rows of a global batch; returns the global mean loss.

        Args:
            x: (rows, in_features) this rank's slice (rows may be 0).
            labels: the matching targets (what ``loss_fn`` takes).
            loss_fn: a loss with ``reduction="sum"``, called as ``loss, grad = loss_fn(out, labels)``.
            optimizer: an `nn` optimizer of this model; it steps after the allreduce.
        """
        if getattr(loss_fn, "reduction", "sum") != "sum":
            raise ValueError(f"loss_fn has reduction={loss_fn.reduction!r}; DataParallel needs "
                             f"'sum' and divides by the rows of the global batch itself")
        self._bind(optimizer)
        self.zero_grad()
        rows = int(x.shape[0])
        loss = 0.0
        if rows:
            loss, grad = loss_fn(self.model(x), labels)
            self.model.backward(grad, need_input_grad=False)
        mean, _ = self.allreduce_gradients(loss, rows)
        optimizer.step()
        return mean

    def parameter_digest(self) -> bytes:
        """A 16-byte BLAKE2b digest of every parameter's bytes, in order."""
        h = hashlib.blake2b(digest_size=16)
        for p in self._params:
            h.update(np.ascontiguousarray(p).data)
        return h.digest()

    def check_replicas(self) -> None:
        """Compare the parameter digest of every rank with rank 0's (a collective: call it on
        every rank); raise `ReplicaMismatch` on every rank if any differs."""
        mine = np.frombuffer(self.parameter_digest(), dtype=np.uint8).copy()
        root = mine.copy()
        self.comm.bcast(root, root=0)
        differ = np.array([0.0 if np.array_equal(mine, root) else 1.0])
        self.comm.allreduce(differ)
        if differ[0]:
            raise ReplicaMismatch(f"after {self.steps} steps the parameters of {int(differ[0])} of "
                                  f"{self.size} ranks differ from rank 0's")

    def warm_cache(self, batches: list[tuple[np.ndarray, np.ndarray]], loss_fn: Callable, optimizer,
                   eval_x: np.ndarray | None = None) -> None:
        """Compile (or load) the kernels a step uses on node-local rank 0 first, then the others.

        The node's first rank runs a forward, backward and optimizer step for each of
        ``batches`` (this rank's (x, labels) slices; give one of every row count the run will
        see, such as a full batch and the short last one, since the kernels are chosen by shape)
        and then restores the parameters and optimizer state bit for bit, while Numba writes its
        on-disk cache; the other ranks wait at a barrier and then load the cached code
        instead of compiling the same kernels at the same time. ``eval_x``, if given, is also run
        through the model in evaluation mode (``predict``). A collective: call it on every rank.
        """
        warm_cache(self.comm, lambda: _local_steps(self.model, optimizer, loss_fn, batches, eval_x))


def _local_steps(model, optimizer, loss_fn, batches, eval_x=None) -> None:
    """Run training steps (and a predict) for their compiles only, then put the parameters,
    gradients and optimizer state back exactly as they were."""
    saved = [p.copy() for p, _ in model.parameters()]
    state = optimizer.state_dict()
    try:
        for x, labels in batches:
            model.zero_grad()
            if x.shape[0]:
                _, grad = loss_fn(model(x), labels)
                model.backward(grad, need_input_grad=False)
            optimizer.step()
        if eval_x is not None and hasattr(model, "predict"):
            model.predict(eval_x)
    finally:
        for (p, _), value in zip(model.parameters(), saved):
            np.copyto(p, value)
        optimizer.load_state_dict(state)
        model.zero_grad()


def warm_cache(comm: Communicator, work: Callable[[], object]) -> None:
    """Run ``work`` on the first rank of each machine, then let every rank continue together."""
    if getattr(comm, "node_rank", 0) == 0:
        work()
    comm.barrier()
