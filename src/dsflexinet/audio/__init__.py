"""Audio: mel frontends, augmentations (time roll, Freq-MixStyle, DIR, ADIR, masking) and clip energy."""
