"""Agreement metrics on small examples whose expected values are worked out by hand."""

import math

import pandas as pd
import pytest

from callqa.evaluation.agreement import (
    POOLED,
    agreement,
    agreement_table,
    average_ranks,
    quadratic_weighted_kappa,
    spearman,
)


def test_perfect_agreement():
    # Same scores on both sides: every pair equal, so exact = within_one = 4/4 = 1;
    # observed disagreement 0 -> kappa = 1 - 0/chance = 1; identical ranks -> rho = 1;
    # equal means -> bias 0.
    result = agreement([1, 3, 5, 2], [1, 3, 5, 2], 1, 5)
    assert result.pairs == 4 and result.excluded == 0
    assert result.exact == 1.0 and result.within_one == 1.0
    assert result.qwk == pytest.approx(1.0)
    assert result.spearman == pytest.approx(1.0)
    assert result.bias == 0.0


def test_known_qwk_spearman_and_bias():
    model, human = [1, 2, 3], [2, 2, 3]  # scale 1-3, k = 3 categories
    # exact: (1,2) differs, (2,2) and (3,3) agree -> 2/3; every |diff| <= 1 -> within_one 1.
    # QWK: w(i,j) = (i-j)^2 / (k-1)^2 = diff^2 / 4, so diff 1 -> 0.25, diff 2 -> 1.
    #   observed: one pair at diff 1 -> sum w*O = 0.25.
    #   histograms: model [1,1,1], human [0,2,1], n = 3; expected E(i,j) = hm(i)*hh(j)/3
    #   = hh(j)/3 for every row i -> row = [0, 2/3, 1/3].
    #   sum w*E: row 1: 0.25*2/3 + 1*1/3 = 1/2; row 2: 0.25*1/3 = 1/12;
    #            row 3: 0.25*2/3 = 1/6  -> 6/12 + 1/12 + 2/12 = 3/4.
    #   kappa = 1 - 0.25 / 0.75 = 2/3.
    # Spearman: ranks model [1,2,3], human [1.5,1.5,3] (tie shares ranks 1 and 2);
    #   deviations [-1,0,1] and [-0.5,-0.5,1]: cov = 0.5+0+1 = 1.5, var 2 and 1.5,
    #   rho = 1.5 / sqrt(2*1.5) = sqrt(3)/2.
    # bias: mean 2 - mean 7/3 = -1/3 (the model is the harsher side here).
    result = agreement(model, human, 1, 3)
    assert result.exact == pytest.approx(2 / 3)
    assert result.within_one == 1.0
    assert result.qwk == pytest.approx(2 / 3)
    assert result.spearman == pytest.approx(math.sqrt(3) / 2)
    assert result.bias == pytest.approx(-1 / 3)


def test_qwk_on_scale_one_to_five_with_a_large_miss():
    # model [1,5], human [1,1], scale 1-5 -> w = diff^2/16.
    # observed: (1,1) w 0; (5,1) diff 4 -> w 1: sum w*O = 1.
    # histograms: model [1,0,0,0,1], human [2,0,0,0,0], n = 2: E(i,1) = hm(i)*2/2 = hm(i):
    #   E(1,1) = 1 (w 0), E(5,1) = 1 (w 1) -> sum w*E = 1; kappa = 1 - 1/1 = 0.
    assert quadratic_weighted_kappa([1, 5], [1, 1], 1, 5) == pytest.approx(0.0)
    # Systematic disagreement scores below chance: model [1,5], human [5,1]:
    # observed both at diff 4 -> 2; histograms [1,0,0,0,1] each, E = outer/2: E(1,1) = E(5,5)
    # = E(1,5) = E(5,1) = 1/2 -> sum w*E = 1/2 + 1/2 = 1; kappa = 1 - 2/1 = -1.
    assert quadratic_weighted_kappa([1, 5], [5, 1], 1, 5) == pytest.approx(-1.0)


def test_a_constant_side():
    model, human = [3, 3, 3], [1, 3, 5]
    # exact: only (3,3) -> 1/3; within_one: |diffs| 2,0,2 -> 1/3.
    # QWK: a constant side makes observed equal expected: E(3,j) = 3*hh(j)/3 = hh(j) = O(3,j),
    #   so kappa = 1 - x/x = 0 (chance explains the agreement), not None.
    # Spearman: undefined for a constant side -> None.  bias: 3 - 3 = 0.
    result = agreement(model, human, 1, 5)
    assert result.exact == pytest.approx(1 / 3)
    assert result.within_one == pytest.approx(1 / 3)
    assert result.qwk == pytest.approx(0.0)
    assert result.spearman is None
    assert result.bias == 0.0


def test_both_sides_constant_and_equal_kappa_is_undefined():
    # Both always 4: chance agreement is total, sum w*E = 0 -> kappa undefined (None).
    result = agreement([4, 4], [4, 4], 1, 5)
    assert result.exact == 1.0
    assert result.qwk is None
    assert result.spearman is None


def test_na_pairs_are_excluded_and_counted():
    # Pairs (None,1) and (2,None) go; only (3,3) is compared.
    result = agreement([None, 2, 3], [1, None, 3], 1, 5)
    assert result.pairs == 1 and result.excluded == 2
    assert result.exact == 1.0
    assert result.spearman is None  # one pair: no correlation
    empty = agreement([None], [None], 1, 5)
    assert empty.pairs == 0 and empty.excluded == 1
    assert (empty.exact, empty.within_one, empty.qwk, empty.spearman, empty.bias) == (None,) * 5


def test_scores_outside_the_scale_are_an_error():
    with pytest.raises(ValueError, match=r"scores \[6\] outside the scale 1-5"):
        agreement([6], [5], 1, 5)
    with pytest.raises(ValueError, match="unpaired"):
        agreement([1, 2], [1], 1, 5)


def test_average_ranks_share_ties():
    # 10 ranks 1; the three 20s span ranks 2-4 -> 3 each; 30 ranks 5.
    assert average_ranks([20, 10, 20, 30, 20]) == [3.0, 1.0, 3.0, 5.0, 3.0]


def test_spearman_of_a_reversed_order():
    # Ranks [1,2,3,4] against [4,3,2,1]: perfectly reversed -> -1.
    assert spearman([1, 2, 3, 4], [5, 4, 3, 1]) == pytest.approx(-1.0)


def test_agreement_table_per_criterion_and_pooled():
    frame = pd.DataFrame(
        {
            "criterion": ["greeting", "greeting", "tone", "tone", "tone"],
            "model": [5, 3, 4, None, 2],
            "human": [5, 4, 4, 3, 4],
        }
    )
    table = agreement_table(frame)
    assert list(table["criterion"]) == ["greeting", "tone", POOLED]
    rows = table.set_index("criterion")
    # greeting: (5,5) (3,4): exact 1/2, within 1, bias (8-9)/2 = -0.5.
    assert rows.loc["greeting", "pairs"] == 2
    assert rows.loc["greeting", "exact"] == 0.5
    assert rows.loc["greeting", "within_one"] == 1.0
    assert rows.loc["greeting", "bias"] == -0.5
    # tone: (4,4) kept, (None,3) excluded, (2,4) kept: exact 1/2, within_one 1/2, bias -1.
    assert rows.loc["tone", "pairs"] == 2 and rows.loc["tone", "excluded"] == 1
    assert rows.loc["tone", "within_one"] == 0.5
    assert rows.loc["tone", "bias"] == -1.0
    # pooled: 4 pairs (5,5) (3,4) (4,4) (2,4): exact 2/4, within_one 3/4,
    # bias (14 - 17)/4 = -0.75; one excluded.
    assert rows.loc[POOLED, "pairs"] == 4 and rows.loc[POOLED, "excluded"] == 1
    assert rows.loc[POOLED, "exact"] == 0.5
    assert rows.loc[POOLED, "within_one"] == 0.75
    assert rows.loc[POOLED, "bias"] == -0.75
    # Spearman pooled: model ranks of [5,3,4,2] = [4,2,3,1]; human [5,4,4,4] -> [4,2,2,2].
    #   deviations from 2.5: [1.5,-0.5,0.5,-1.5]; human from 2.5: [1.5,-0.5,-0.5,-0.5]:
    #   cov = 2.25+0.25-0.25+0.75 = 3; var 5 and 3 -> rho = 3/sqrt(15).
    assert rows.loc[POOLED, "spearman"] == pytest.approx(3 / math.sqrt(15), abs=1e-4)
