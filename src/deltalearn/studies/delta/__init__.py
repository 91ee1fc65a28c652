"""Weak-over-weaker delta studies (kind `delta`): answers from a ladder of tiers, pairs per condition,
their audit, training, evaluation against the untrained student, and a report; run whole or stage by
stage, each stage resumable."""

from .. import Study

STUDY = Study(
    kind="delta", package=__name__,
    about="weak-over-weaker pairs from a model ladder: train each condition, evaluate it against the student",
    schema="study:DeltaStudy", run="study:run_delta", summary="report:summary", report="report:delta_report",
    stages=("all", "data", "train", "eval", "report"), status="status:view", plan="plan:view", by_condition=True,
)
