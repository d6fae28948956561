"""Issue 21's acceptance probe: each careless or bad input of careless_cases.py, as one test.

A case passes when its call ends as it must: a clear error (raised on purpose by fmlearn's own code, the
message naming the argument and what it got) or the right answer (checked against a reference computed
another way). Cases listed in careless_cases.BROKEN are strict xfail: their fix has not landed, and when it
does the test fails until the id is removed from BROKEN. benchmarks/careless_inputs.py prints the counts.
"""

from __future__ import annotations

import warnings

import pytest

from careless_cases import BROKEN, CASES, CASES_BY_ID, classify

PARAMS = [pytest.param(case, id=case.id,
                       marks=[pytest.mark.xfail(strict=True, reason=f"issue 21: {BROKEN[case.id]}")]
                       if case.id in BROKEN else [])
          for case in CASES]


@pytest.mark.parametrize("case", PARAMS)
def test_careless_input(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome, detail = classify(case)
    assert outcome in case.ok, f"{case.id} must end as {' or '.join(case.ok)}, got {outcome}: {detail} " \
                               f"[{case.owner}]"


def test_probe_size_and_broken_list():
    """At least 250 cases (the issue's acceptance), and BROKEN names only cases that exist."""
    assert len(CASES) >= 250
    assert not set(BROKEN) - set(CASES_BY_ID), sorted(set(BROKEN) - set(CASES_BY_ID))


#: The issue's own list, one case (at least) for each item it names.
ISSUE_ITEMS = [
    "obj.sphere_default_source_on_sphere", "obj.torus_default_source_uniform", "obj.data_off_sphere",
    "ll.sphere_without_space", "sample.sphere_without_space", "ll.sphere_euclidean_source",
    "obj.euclidean_source_on_sphere", "ds.nan_logits", "ds.neginf_logits", "draw.nan_row", "draw.zero_row",
    "draw.negative_weight", "exact.nll_token_ge_V", "exact.nll_negative_token", "exact.state_index_token_ge_V",
    "exact.tabulated_token_out_of_range", "train.resume_other_target", "tok.resume_ce_then_gkl",
    "ds.mask_model_on_uniform_path", "elbo.mask_model_on_uniform_path", "tok.losses_kl", "mp.sample_x1_column",
    "mp.sample_t_above_1", "mp.sample_float_tokens", "mp.sample_tokens_ge_V", "gen.flow_column_velocity",
    "ctmc.rows_not_summing_to_zero", "js.kernel_unnormalised_later", "ds.model_without_mask_state",
    "tok.train_without_mask_state", "tok.train_data_out_of_vocab", "ll.dopri5",
]


def test_issue_items_are_probed():
    assert not [i for i in ISSUE_ITEMS if i not in CASES_BY_ID]
