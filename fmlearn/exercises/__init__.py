"""Exercises: student versions built from the solutions, and the checks with hints that learners run.

========= ======
build     solutions/exNN_topic -> exercises/exNN_topic (solution regions blanked, hidden tests removed)
checks    one ``check_*`` call after each task: a verdict, and a hint when the answer is wrong
          (expect_close: the same kind of failure for the hidden tests)
forbidden which fmlearn functions a task's answer may not call: they raise ForbiddenCall while it runs, in the
          check and in the grader (a task is not answered by calling the course's own implementation of it)
========= ======

Grading (the sandbox, the hidden tests, the gradebook) is the instructor's side and lives apart, in
:mod:`fmlearn.grading`. Command line: ``python -m fmlearn.exercises {build,check}``.
"""

from .build import ExerciseSourceError, build, student_source
from ._base import expect_close
from ._forbid import ForbiddenCall
from .checks import (ExerciseCheckError, check_cfm_loss, check_conditional_path, check_euler_sampler,
                     check_flow_samples, check_gaussian_marginal, check_schedule)
from .checks_couplings import check_count_crossings, check_ot_pairing, check_sinkhorn
from .checks_guidance import check_cfg_forward, check_guided_velocity, check_label_dropout
from .checks_diffusion import check_em_step, check_langevin_step, check_score_from_velocity
from .checks_likelihood import check_divergence, check_hutchinson, check_paired_kl
from .checks_paths_solvers import (check_continuity_residual, check_gaussian_velocity, check_mixture_velocity,
                                   check_observed_order, check_step)

