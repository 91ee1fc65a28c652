"""Study 5 (kind `logreg`): the paper's logistic-regression account of why a weak-over-weaker delta helps."""

from .. import Study

STUDY = Study(
    kind="logreg", package=__name__,
    about="logistic regression: preferring A over B against SFT on A, in closed form on synthetic data",
    schema="study:LogRegStudy", run="study:run_logreg", summary="study:summary", report="study:logreg_report",
)
