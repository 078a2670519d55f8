# Sourced by scripts/test and .ci/run: create .venv and install the project into it.
# Reinstalls only when pyproject.toml changed since the last install (its sha256 is
# kept in .venv/.pyproject.sha256), so repeated test runs start fast.

ensure_venv() {
  local stamp=.venv/.pyproject.sha256
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [[ ! -x .venv/bin/python ]]; then
    echo "venv: creating .venv" >&2
    python3 -m venv .venv
  fi
  if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "venv: installing the project with its dev extras" >&2
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    echo "$want" > "$stamp"
  fi
}
