#!/usr/bin/env bash
# The package as a stranger gets it: build the wheel and sdist, install the wheel itself (not -e) into a
# fresh venv, and from an empty folder use it. Passing proves the package data ships (the catalogue, the
# web page's template): a checkout hides their absence, an installed wheel does not.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "wheel smoke: $*" >&2; exit 1; }

python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; fail "python -m build failed"; }
wheels=("$work"/dist/*.whl)
sdists=("$work"/dist/*.tar.gz)
[ ${#wheels[@]} -eq 1 ] && [ -f "${wheels[0]}" ] || fail "expected one wheel, found: ${wheels[*]}"
[ -f "${sdists[0]}" ] || fail "no sdist was built"
python - "${wheels[0]}" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = [name for name in ("charrnn/catalogue.json", "charrnn/export_page.html", "charrnn/py.typed") if name not in names]
sys.exit(f"wheel smoke: the wheel lacks {', '.join(missing)}" if missing else 0)
PY

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet torch==2.13.0   # the CPU build first, as .ci/run does
"$work/venv/bin/pip" install --quiet "${wheels[0]}"
charrnn="$work/venv/bin/charrnn"

mkdir "$work/empty" && cd "$work/empty"
version=$(sed -n 's/^__version__ = "\([^"]*\)".*/\1/p' "$root/charrnn/__init__.py")
[ "$("$charrnn" --version)" = "charrnn $version" ] || fail "charrnn --version does not say $version"
python3 - <<'PY'
text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
open("corpus.txt", "w", encoding="utf-8").write(text * 40)
PY
"$charrnn" train corpus.txt -o run --steps 20 --layers 1 --hidden 32 --embed 16 --seq-len 32 --batch-size 4 --seed 1 -q \
    || fail "a 20-step train failed"
[ -f run/best.pt ] && [ -f run/last.pt ] || fail "training left no best.pt and last.pt"
sample=$("$charrnn" sample -c run --length 50 --seed 1) || fail "charrnn sample failed"
[ -n "$sample" ] || fail "charrnn sample wrote nothing"
"$charrnn" export run --format html -o page.html || fail "charrnn export --format html failed"
grep -q "<html" page.html || fail "page.html is no web page"
echo "wheel smoke: $(basename "${wheels[0]}") installs and trains, samples and exports from an empty folder"
