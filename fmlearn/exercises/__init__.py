"""Exercises: student versions built from the solutions, checks with hints, grading.

build   solutions/exNN_topic -> exercises/exNN_topic (solution regions blanked, hidden tests removed)
checks  one check_* call after each task: a verdict, and a hint when the answer is wrong
grade   run a submission with the hidden tests restored; points per task

Command line: ``python -m fmlearn.exercises {build,check,grade}``.
"""

from .build import ExerciseSourceError, build, student_source
from .checks import (ExerciseCheckError, check_cfm_loss, check_conditional_path, check_euler_sampler,
                     check_gaussian_marginal, check_schedule)
from .grade import TaskScore, grade, write_report
