"""Numbers quoted from the paper (TAU22, the authors' runs), printed beside this pipeline's measurements.

They are never used as results: the report shows them in a separate, labelled block so a reader can compare a
run with the paper at a glance. Table III's other systems are published results of other papers that this
pipeline does not retrain; they appear only as quotations, as does the DCASE'24 baseline beside the
data-efficiency curve.
"""

DEVICE_COLUMNS = ("A", "B", "C", "S1", "S2", "S3", "S4", "S5", "S6")

TABLE2 = {  # system: (params K, MACs M, size KB, acc %, acc QAT %)
    "sm1": (13.76, 3.88, 55.03, 56.54, 53.44),
    "sm2": (30.69, 8.27, 177.79, 61.42, 58.25),
    "sm3": (54.98, 14.34, 219.93, 63.03, 60.29),
    "sm4": (126.12, 23.03, 504.47, 65.26, 62.11),
}

TABLE3_OTHER_SYSTEMS = {  # model: (params K, MACs M, acc %), as the paper lists them
    "Baseline [20]": (46.51, 29.23, 42.9),
    "CP-ResNet [21]": (63.5, 19.5, 57.0),
    "BSConv-CNN [22]": (73.39, 13.18, 55.6),
}

TABLE4 = {  # method: per-device accuracy % (A..S6) and overall
    "Teacher(w/o)": (58.07, 70.58, 64.90, 58.24, 56.67, 60.38, 52.43, 58.30, 49.36, 59.36),
    "Averaged": (60.53, 71.61, 66.50, 65.20, 59.53, 65.78, 62.05, 61.53, 56.71, 63.48),
    "Fused": (62.33, 74.24, 68.64, 66.44, 61.31, 67.02, 62.71, 62.90, 59.04, 65.26),
}

TABLE5 = {
    "DS-FlexiNet+FMS+DIR": (61.09, 71.77, 66.43, 64.26, 60.85, 65.72, 62.26, 62.69, 56.88, 63.86),
    "DS-FlexiNet+BN+FMS+DIR": (58.63, 71.90, 66.97, 64.55, 59.91, 65.65, 60.68, 61.63, 56.70, 63.38),
    "DS-FlexiNet+BN+FMS+ADIR": (64.75, 72.78, 68.54, 64.75, 62.06, 66.23, 61.76, 62.42, 56.45, 64.68),
    "DS-FlexiNet+RN+FMS+DIR": (63.75, 71.78, 68.18, 65.36, 62.48, 66.89, 61.41, 62.92, 57.35, 64.58),
    "DS-FlexiNet+RN+FMS+ADIR": (62.33, 74.24, 68.64, 66.44, 61.31, 67.02, 62.71, 62.90, 59.04, 65.26),
}

# Not from the paper: the DCASE 2024 Task 1 baseline's published results (CPJKU/dcase2024_task1_baseline), the
# reference beside the data-efficiency curve. Macro (class-averaged) accuracy % on TAU22's development test
# split, mean and std over its 5 runs, per training subset (% of fold1_train).
DCASE24_BASELINE = {
    "system": "DCASE'24 Task 1 baseline",
    "params": 61_148,
    "macs_m": 29.42,
    "runs": 5,
    "macro_accuracy": {5: (42.40, 0.42), 10: (45.29, 1.01), 25: (50.29, 0.87), 50: (53.19, 0.68), 100: (56.99, 1.11)},
}
