"""Every seed and split of the synthetic data engines, in one place.

The training stream draws scenes from ``TRAIN_SEED`` (``conceptseg train --seed``) onwards; the
other splits start far from it so that no scene is shared. Held-out colour-shape pairs (the
``test`` split's compositional generalisation check) are defined by :mod:`conceptseg.data.phrases`.
"""

TRAIN_SEED = 0                 # default seed of the training stream (train and tracker stages)
TEST_SEED = 1_000_003          # held-out test split: `eval --data synthetic:N` (images and videos)
EXEMPLAR_TEST_SEED = TEST_SEED + 17  # `eval --exemplars`: its own scenes of the test distribution
VALIDATION_SEED = 2_000_029    # calibration (`python -m conceptseg.train.calibrate`), never tested
QUICK_EVAL_SEED = 987_654_321  # the training loop's periodic quick evaluation (train distribution)
FOREIGN_TEST_SEED = 3_000_017  # the second renderer (data/foreign, never trained on): `eval --data foreign:N`

__all__ = ["TRAIN_SEED", "TEST_SEED", "EXEMPLAR_TEST_SEED", "VALIDATION_SEED", "QUICK_EVAL_SEED",
           "FOREIGN_TEST_SEED"]
