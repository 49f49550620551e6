#!/usr/bin/env bash
# Installs what tests/cluster needs; idempotent (installs only what is missing), safe to run on every CI run.
#   - slurm-wlm + munge (Debian): the tests start a throw-away single-node Slurm cluster (tests/cluster/slurm_cluster.py)
#   - shellcheck (Debian): lints slurm/train.sh
#   - kubernetes-validate (PyPI): Kubernetes JSON schemas, to validate the k8s/ manifests offline
#   - kubectl is not installed here: it comes with the machine image (Google Cloud SDK's `kubectl` package, whose
#     apt source is disabled here). Without it the kustomize rendering tests skip and say so.
# Usage: bash .ci/install-cluster-deps.sh        (as root, or with passwordless sudo)
set -euo pipefail

log() { echo "[install-cluster-deps] $*"; }

SUDO=()
if [[ $(id -u) != 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        SUDO=(false)
    fi
fi

have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; }

packages=()
for bin in munged slurmctld slurmd sbatch srun scontrol scancel squeue; do
    have "$bin" || { packages+=(slurm-wlm munge); break; }
done
have shellcheck || packages+=(shellcheck) # lints slurm/train.sh in the tests
if ((${#packages[@]})); then
    if [[ ${SUDO[*]-} == false ]]; then
        log "missing ${packages[*]} and this is neither root nor passwordless sudo: cannot apt-get install" >&2
        exit 1
    fi
    log "installing ${packages[*]} (Debian packages)"
    # Do not let the packages' init scripts start a system munged/slurmd: the tests start their own daemons.
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod +x "$policy"
        added_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    status=0
    "${SUDO[@]}" apt-get update -qq || status=$?
    if ((status == 0)); then
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null || status=$?
    fi
    if ((added_policy)); then "${SUDO[@]}" rm -f "$policy"; fi
    if ((status != 0)); then
        log "apt-get failed with status $status" >&2
        exit "$status"
    fi
else
    log "slurm-wlm, munge and shellcheck already installed"
fi

PYTHON=${PYTHON:-python3}
if "$PYTHON" -c "import kubernetes_validate" 2>/dev/null; then
    log "kubernetes-validate already installed"
else
    log "installing kubernetes-validate (PyPI)"
    "$PYTHON" -m pip install -q "kubernetes-validate==1.37.0"
fi

if command -v kubectl >/dev/null; then
    log "kubectl: $(kubectl version --client 2>/dev/null | head -n 1)"
else
    log "kubectl not found: the kustomize rendering tests will skip (the machine image normally ships it)"
fi
