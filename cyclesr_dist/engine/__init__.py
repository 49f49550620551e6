"""The training engine: Accelerate setup, update ops, checkpoints, preemption, tracking, the loop."""
