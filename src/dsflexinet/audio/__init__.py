"""Audio: mel frontends, augmentations (time roll, Freq-MixStyle, DIR, ADIR, masking) and clip energy.

`pipeline.TrainingInput` shows how they compose in a training step.
"""
