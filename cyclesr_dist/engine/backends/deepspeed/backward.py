"""The joint backward over several DeepSpeed engines, and the `StepOps` built on it."""

from __future__ import annotations

import torch
from torch import nn

from ....torch_utils import unwrap


def joint_backward(loss: torch.Tensor, engines: list[nn.Module]) -> list[nn.Module]:
    """`engine.backward(loss)` for every engine the loss reaches, with one `loss.backward()`.

    Mirrors DeepSpeed 0.19.8 `DeepSpeedEngine.backward` (GAS 1, no loss scaling): while
    `_running_engine_backward` is set, an engine's post-backward hook leaves the epilogue to the caller. An
    engine took part iff its backward prologue ran, i.e. its ZeRO optimizer entered backward
    (`_backward_active_depth > 0`; once per engine *forward* whose output got a gradient). Its epilogue (the
    gradient reduction into ZeRO's partitions) then runs once, and the depth is reset because several
    forwards raised it several times. Returns the engines that took part.
    """
    for engine in engines:
        with engine._running_engine_backward_lock:
            engine._running_engine_backward_count += 1
            engine._running_engine_backward = True
    try:
        loss.backward()
        reached = [e for e in engines if e.optimizer._backward_active_depth > 0]
        for engine in reached:
            engine._backward_epilogue()
            engine.optimizer._backward_active_depth = 0
        return reached
    finally:
        for engine in engines:
            with engine._running_engine_backward_lock:
                engine._running_engine_backward_count -= 1
                engine._running_engine_backward = engine._running_engine_backward_count > 0


def check_engine_internals(engine: nn.Module) -> None:
    missing = [
        name
        for name in ("_running_engine_backward_lock", "_running_engine_backward_count", "_backward_epilogue")
        if not hasattr(engine, name)
    ]
    if not hasattr(engine.optimizer, "_backward_active_depth"):
        missing.append("optimizer._backward_active_depth")
    if missing:
        import deepspeed

        raise RuntimeError(
            f"deepspeed {deepspeed.__version__} lacks {missing}, which the joint backward relies on "
            "(written against 0.19.8); check `_joint_backward` against this version's DeepSpeedEngine.backward"
        )


class DeepSpeedOps:
    """`StepOps` for DeepSpeed engines: joint backward, per-group `engine.step()`, raw frozen forwards."""

    def __init__(self, engines: dict[str, nn.Module]) -> None:
        self.engines = engines
        self.grad_norms: dict[str, torch.Tensor] = {}

    def backward(self, loss: torch.Tensor) -> None:
        joint_backward(loss, list(self.engines.values()))

    def step(self, group: str) -> None:
        engine = self.engines[group]
        engine.step()  # clip at gradient_clipping, optimizer step, zero grad
        norm = engine.get_global_grad_norm()  # before clipping, like clip_grad_norm_'s return value
        if norm is not None:
            self.grad_norms[group] = torch.as_tensor(float(norm))

    def frozen(self, net: nn.Module) -> nn.Module:
        # The raw module, never the engine: a frozen engine forward would run that engine's backward
        # prologue/epilogue with no gradients (deepspeed 0.19: IndexError in reduce_ipg_grads).
        return unwrap(net)
