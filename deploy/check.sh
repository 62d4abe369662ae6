#!/usr/bin/env bash
# Checks the operators' kit in deploy/: the Prometheus rules and their unit tests (promtool), the Grafana
# dashboard (its JSON, and that every query parses), and the systemd unit (systemd-analyze verify).
#   bash deploy/check.sh [SIGIL_BINARY]    (.ci/run passes target/debug/sigil)
# A missing tool is skipped, loudly; under CI=true it fails the check instead, so CI cannot pass by
# checking nothing.
set -euo pipefail

# The unit is verified with ExecStart pointing at a binary that exists, since verify refuses a missing one
# and /usr/local/bin/sigil is only there once installed. Resolved before the cd below.
binary=${1:-}
if [ -n "$binary" ]; then
  binary=$(realpath "$binary")
  [ -x "$binary" ] || { echo "deploy/check.sh: $1 is not an executable" >&2; exit 1; }
fi

cd "$(dirname "$0")"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

missing() {
  if [ "${CI:-}" = true ]; then
    echo "deploy/check.sh: $1 not found (CI=true): FAILING" >&2
    exit 1
  fi
  echo "!!!!! $1 not found: SKIPPING $2 !!!!!"
}

# promtool comes with Debian's prometheus package. (On a machine booted with systemd, installing the package
# also starts a Prometheus server; CI containers do not start services.)
if ! command -v promtool >/dev/null && command -v apt-get >/dev/null; then
  sudo=
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then sudo="sudo -n"; fi
  install_prometheus() {
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null
  }
  echo "promtool not found: installing Debian's prometheus package"
  # A fresh container has no package lists: fetch them only when the install needs them.
  install_prometheus || { $sudo apt-get update -q >/dev/null && install_prometheus; } || true
fi

if command -v promtool >/dev/null; then
  promtool check rules prometheus/sigil-alerts.yml
  promtool test rules prometheus/sigil-alerts.test.yml
else
  missing promtool "the Prometheus rule checks and their unit tests"
fi

if command -v python3 >/dev/null; then
  # Well-formed JSON, the two template variables operators rely on, every panel on the chosen data source;
  # the queries, with their variables filled in, are written out as rules for promtool to parse.
  python3 - grafana/sigil-dashboard.json "$scratch/dashboard-queries.yml" <<'EOF'
import json, sys

dashboard_path, queries_path = sys.argv[1], sys.argv[2]
with open(dashboard_path) as file:
    dashboard = json.load(file)
variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus", \
    "the datasource variable must choose a Prometheus data source"
assert "label_values(sigil_conflicts_total, workspace)" in json.dumps(variables["workspace"]["query"]), \
    "the workspace variable must come from sigil_conflicts_total's workspace label"
panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
ids = [panel["id"] for panel in dashboard["panels"]]
assert len(ids) == len(set(ids)), "panel ids must be unique"
rules = []
for panel in panels:
    assert panel["datasource"]["uid"] == "${datasource}", f"{panel['title']}: not on ${{datasource}}"
    assert panel["targets"], f"{panel['title']}: no query"
    for target in panel["targets"]:
        expr = target["expr"]
        for variable, value in [("$__rate_interval", "5m"), ("$job", ".*"), ("$workspace", ".*")]:
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{panel['title']}: unknown variable in {target['expr']}"
        rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
with open(queries_path, "w") as file:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, file)
print(f"{dashboard_path}: {len(panels)} panels, {len(rules)} queries")
EOF
  if command -v promtool >/dev/null; then
    promtool check rules "$scratch/dashboard-queries.yml"
  fi
else
  missing python3 "the Grafana dashboard check"
fi

if command -v systemd-analyze >/dev/null; then
  mkdir "$scratch/unit"
  sed "s|^ExecStart=/usr/local/bin/sigil |ExecStart=${binary:-$(command -v true)} |" sigil.service \
    >"$scratch/unit/sigil.service"
  # verify exits 0 on an unknown key or a value it cannot parse, and only says so: any line about the unit
  # fails the check. (Lines about the host's own units are shown, not held against it.)
  report=$(systemd-analyze verify --man=no "$scratch/unit/sigil.service" 2>&1) || {
    echo "$report"
    echo "deploy/check.sh: systemd-analyze verify failed on deploy/sigil.service" >&2
    exit 1
  }
  if [ -n "$report" ]; then echo "$report"; fi
  if grep -q "sigil.service" <<<"$report"; then
    echo "deploy/check.sh: systemd-analyze verify complained about deploy/sigil.service" >&2
    exit 1
  fi
  echo "deploy/sigil.service: systemd-analyze verify OK"
else
  missing systemd-analyze "the systemd unit check"
fi
