"""Grading a class: the instructor's side, apart from the checks that learners import (:mod:`fmlearn.exercises`).

=========== ======
submissions what a submitted notebook is, read as data, and the exercise its cells belong to
sandbox     the submission's code in a confined process of its own; its functions as the grader's tests see them
grade       the submission's cells in the sandbox, the solution's tests (hidden ones included) here; points
report      grades as text, JSON and CSV (ours, or the columns Canvas, Moodle and nbgrader import)
gradebook   a class: who handed in each file, several at once, a journal a rerun resumes from, slices, merge
=========== ======

Command line: ``python -m fmlearn.grading SUBMISSION_OR_FOLDER...`` (``python -m fmlearn.exercises grade`` says
the same).
"""

from .grade import Result, TaskScore, grade, grade_submission
from .report import write_report, write_table
from .submissions import SubmissionRefused

__all__ = ["Result", "SubmissionRefused", "TaskScore", "grade", "grade_submission", "write_report", "write_table"]
