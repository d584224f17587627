"""The unseen-study check (benchmarks/unseen_check.py): its seeds, its counts, one real run."""

from __future__ import annotations

import pytest

from benchmarks.unseen_check import UNSEEN_SEEDS, check_unseen, main, summarise
from synthetic.splits import SPLIT_SEEDS


def test_the_check_refuses_seeds_a_split_holds() -> None:
    assert check_unseen(UNSEEN_SEEDS) is UNSEEN_SEEDS
    for split, seeds in SPLIT_SEEDS.items():
        overlapping = range(seeds.stop - 1, seeds.stop + 5)
        with pytest.raises(ValueError, match=f"belong to the {split} split"):
            check_unseen(overlapping)


def test_failures_and_flags_are_counted_apart() -> None:
    dices = [0.30, 0.49, 0.50, 0.80, 0.95]
    # a failure flagged, a failure missed, a false flag (only Dice < 0.5 fails), two not
    flagged = [True, False, True, False, False]
    row = summarise("MR", dices, flagged)
    assert (row.studies, row.failures, row.failures_flagged, row.false_flags) == (5, 2, 1, 1)
    assert row.recall == 0.5 and row.false_flag_rate == pytest.approx(1 / 3)
    assert row.below_goal == 4 and row.median_dice == 0.50
    assert summarise("CT", dices[2:], flagged[2:]).recall is None  # no failure: no recall
    assert summarise("CT", dices[:2], flagged[:2]).false_flag_rate is None  # no success


def test_one_unseen_study_runs_through_the_shipped_ensemble(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--studies", "1", "--modality", "MR"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| MR |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "1" and 0.5 < float(cells[2]) <= 1.0  # a typical study succeeds
    with pytest.raises(SystemExit):
        main(["--first-seed", str(SPLIT_SEEDS["test"].start), "--studies", "2"])
