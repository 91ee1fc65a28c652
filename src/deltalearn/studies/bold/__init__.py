"""Study 1, the bold-section study (the paper's section 3): the demo's recipe kind `bold`."""

from .. import Study

STUDY = Study(
    kind="bold", package=__name__,
    about="bold sections: DPO on 3- over 2-section answers, against SFT and the zero-delta pairs (the demo)",
    schema="study:BoldStudy", run="study:run_bold", summary="report:summary", report="report:bold_report",
)
