#!/bin/sh
# Installs the project into the venv /opt/venv in two separate image layers:
#   venv-install.sh deps REQUIREMENTS [--slim]
#                                      the pinned dependencies (from pyproject_requirements.py), before any
#                                      code is copied, so this layer is rebuilt only when the pins change;
#                                      --slim then deletes the test suites the scientific packages ship
#                                      (about 170 MB with their bytecode; nothing imports them);
#   venv-install.sh app SRC            the project itself, no dependencies, into the prefix /opt/app that
#                                      the final stage copies over /opt/venv: a code change rebuilds only
#                                      that small layer.
set -eu

# Behind a TLS-intercepting proxy the build passes that proxy's CA bundle as the build secret "pip-ca"
# (tests/infra/build-images.sh does when BUILD_CA_BUNDLE or PIP_CERT is set). It is mounted only for
# the RUN that needs it and never stored in a layer.
if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore

case "${1:-}:${2:-}" in
deps:?*)
  python3 -m venv /opt/venv
  # setuptools and wheel are the build backend of `app`: installed here so that step needs no network.
  /opt/venv/bin/pip install --requirement "$2" 'setuptools>=69' wheel
  if [ "${3:-}" = "--slim" ]; then
    for pkg in numpy scipy pandas sklearn pyarrow; do
      for dir in /opt/venv/lib/python3*/site-packages/"$pkg"; do
        if [ -d "$dir" ]; then find "$dir" -depth -type d -name tests -exec rm -rf {} +; fi
      done
    done
  fi ;;
app:?*)
  /opt/venv/bin/pip install --no-deps --no-build-isolation --prefix /opt/app "$2" ;;
*)
  echo "usage: $0 deps REQUIREMENTS_FILE [--slim] | app SOURCE_DIR" >&2; exit 2 ;;
esac
