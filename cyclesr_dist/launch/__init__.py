"""Launchers: build a Submitit job (``submit``) around the trainer's entry point; ``slurm/`` and ``k8s/`` hold the
shell and YAML launchers. No training logic lives here."""
