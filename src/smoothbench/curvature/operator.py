"""The Hessian of one batch's loss as a matrix-free operator: `HessianOperator`.

The Hessian of the batch's MEAN loss with respect to the trainable parameters, applied by double
backward (`torch.autograd.grad`, eager, in the parameters' dtype, fp32 for every model here,
autocast off). The first-order graph is built once and reused for every product, which saves
rebuilding it each time (measured on a CPU, BN VGG-11 at width 1/8, batch 32: building it costs
1.1 forward-backward passes, each product 3.4, a product that rebuilds the graph 4.5; double
backward through convolutions is the bulk).

Vectors are FLAT tensors over the trainable parameters (those with requires_grad), in
`model.named_parameters()` order; `HessianOperator.unflatten` gives the per-parameter view.

`bn_mode` says which statistics the norm layers use: "train" (the batch's own statistics, the
default, the Hessian of the loss the optimizer sees) or "eval" (the stored running statistics,
what PyHessian silently uses). The model is put in `train()` or `eval()` for the forward pass and
every module's own flag is restored afterwards. The forward runs through
`torch.func.functional_call` on copies of the parameters and buffers, so running statistics are
never updated and the model's tensors are never part of the graph; `preserved` restores modes
and RNG states as well. Noisy BatchNorm layers reuse their step's noise and need nothing special.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from smoothbench.preserve import preserved

BN_MODES = ("train", "eval")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = Sequence[torch.Tensor]


def _check_bn_mode(bn_mode: str) -> None:
    """Refuse a bn_mode other than "train" or "eval", naming it and the choices."""
    if bn_mode not in BN_MODES:
        raise ValueError(f"unknown bn_mode {bn_mode!r}; choose one of: {', '.join(BN_MODES)}")


class HessianOperator:
    """The Hessian of `loss_fn(model(inputs), targets)` (a batch mean) as a matrix-free operator.

    `matvec(v)` returns H v for a flat vector v (see the module docstring for the layout) and
    counts products in `hvps`; `gradient` is the flat first-order gradient from the same pass.
    The operator stays valid while the model changes afterwards: it keeps its own copy of the
    parameters, so it describes the model as it was when built. Drop it to free the graph.

    `chunk_size` splits a batch too large for one graph into chunks of that many examples. The
    loss stays the batch MEAN (each chunk's mean loss weighted by its share of the examples);
    each product then recomputes every chunk's graph (one more pass per product) from the
    model's buffers at that moment. With bn_mode="train" the norm layers then use each chunk's
    statistics: a different function from the whole batch's.

    second_order=False computes only `gradient` (no graph kept); `matvec` then raises.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batch: Batch,
        bn_mode: str = "train",
        *,
        chunk_size: int | None = None,
        second_order: bool = True,
    ) -> None:
        _check_bn_mode(bn_mode)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        self.model, self.loss_fn, self.bn_mode = model, loss_fn, bn_mode
        inputs, targets = batch
        self.inputs, self.targets = inputs, targets
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters")
        dtypes = {p.dtype for _, p in named}
        if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
            raise ValueError(
                f"parameters must share one floating dtype, got {sorted(map(str, dtypes))}"
            )
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.size = sum(self.sizes)
        # One leaf holding every parameter: gradients and products come back already flat.
        self.point = torch.cat([p.detach().reshape(-1) for _, p in named]).requires_grad_(True)
        self.dtype, self.device = self.point.dtype, self.point.device
        self.hvps = 0
        n_examples = len(inputs)
        self.chunks = (
            [(0, n_examples)]
            if chunk_size is None or chunk_size >= n_examples
            else [(i, min(i + chunk_size, n_examples)) for i in range(0, n_examples, chunk_size)]
        )
        self.second_order = second_order
        self._graph_grad: torch.Tensor | None = None
        if second_order and len(self.chunks) == 1:
            (grad,) = self._gradients(self.chunks, create_graph=True)
            self._graph_grad = grad
            self.gradient = grad.detach()
        else:
            self.gradient = sum(self._gradients(self.chunks, create_graph=False))

    def _gradients(self, chunks: list[tuple[int, int]], create_graph: bool) -> list[torch.Tensor]:
        """Each chunk's weighted gradient (weights: its share of the examples)."""
        n_examples = len(self.inputs)
        out = []
        with (
            preserved(self.model),
            torch.enable_grad(),
            torch.autocast(self.device.type, enabled=False),
        ):
            views = {
                name: t.view(shape)
                for name, t, shape in zip(
                    self.names, self.point.split(self.sizes), self.shapes, strict=True
                )
            }
            self.model.train(self.bn_mode == "train")
            for lo, hi in chunks:
                # Fresh buffer copies: running statistics updated in train mode land in these.
                buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
                outputs = functional_call(self.model, {**views, **buffers}, (self.inputs[lo:hi],))
                loss = self.loss_fn(outputs, self.targets[lo:hi]) * ((hi - lo) / n_examples)
                (grad,) = torch.autograd.grad(
                    loss, self.point, create_graph=create_graph, allow_unused=True
                )
                out.append(torch.zeros_like(self.point) if grad is None else grad)
        return out

    def _vector(self, v: torch.Tensor) -> torch.Tensor:
        v = torch.as_tensor(v).reshape(-1)
        if v.numel() != self.size:
            raise ValueError(f"vector has {v.numel()} entries; the parameters have {self.size}")
        return v.to(device=self.device, dtype=self.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v for a flat vector v; returns a flat tensor in the parameters' dtype and device."""
        if not self.second_order:
            raise RuntimeError("this operator was built with second_order=False: no products")
        v = self._vector(v)
        self.hvps += 1
        if self._graph_grad is not None:
            return self._product(self._graph_grad, v, retain_graph=True)
        total = torch.zeros_like(v)
        for chunk in self.chunks:  # one chunk's graph alive at a time: the memory saving
            (grad,) = self._gradients([chunk], create_graph=True)
            total += self._product(grad, v, retain_graph=False)
        return total

    def _product(self, grad: torch.Tensor, v: torch.Tensor, retain_graph: bool) -> torch.Tensor:
        if not grad.requires_grad:  # the loss is at most linear in the parameters
            return torch.zeros_like(v)
        (hv,) = torch.autograd.grad(
            grad, self.point, grad_outputs=v, retain_graph=retain_graph, allow_unused=True
        )
        return torch.zeros_like(v) if hv is None else hv

    __call__ = matvec

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """A per-parameter dict (every trainable parameter's name) as one flat vector."""
        return torch.cat([tensors[n].reshape(-1).to(self.point) for n in self.names])

    def unflatten(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector as {parameter name: tensor of that parameter's shape} (views of v)."""
        v = self._vector(v)
        return {
            n: t.view(s)
            for n, t, s in zip(self.names, v.split(self.sizes), self.shapes, strict=True)
        }
