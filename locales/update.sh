#!/bin/sh
# Re-extract the translatable strings from bot/ into locales/messages.pot and merge them
# into every language's catalog (creating a catalog that is missing).
#   locales/update.sh            # from anywhere; the repository root is found from here
#   LANGUAGES="en ru uk pl de" locales/update.sh   # to add a language (also bot/i18n.py)
# Then translate the new or changed entries (empty or "#, fuzzy") in
# locales/<lang>/LC_MESSAGES/messages.po and run pytest tests/test_locales.py.
set -eu

cd "$(dirname "$0")/.."
LANGUAGES="${LANGUAGES:-en ru uk pl}"

if [ -n "${PYBABEL:-}" ]; then
    :
elif [ -x .venv/bin/pybabel ]; then  # the virtualenv README's commands make
    PYBABEL=.venv/bin/pybabel
elif command -v pybabel >/dev/null 2>&1; then
    PYBABEL=pybabel
else
    echo "pybabel not found: install Babel (pip install babel) or set PYBABEL" >&2
    exit 1
fi

"$PYBABEL" extract -F babel.cfg \
    -k _ -k __ -k _n:1,2 \
    --add-comments=TRANSLATORS: \
    --no-wrap --sort-by-file --omit-header \
    -o locales/messages.pot .

for lang in $LANGUAGES; do
    po="locales/$lang/LC_MESSAGES/messages.po"
    if [ ! -f "$po" ]; then
        "$PYBABEL" init -D messages -i locales/messages.pot -d locales -l "$lang" --no-wrap
    fi
    "$PYBABEL" update -D messages -i locales/messages.pot -d locales -l "$lang" \
        --no-wrap --ignore-obsolete --ignore-pot-creation-date
done
