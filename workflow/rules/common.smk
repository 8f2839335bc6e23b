# Shared definitions: config validation, paths, and the functions that list each step's targets.
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

from dsflexinet.config import validate_config
from dsflexinet.data.download import read_manifest
from dsflexinet.data.tau22 import DATASET_DIRNAME, SPLIT_FILES
from dsflexinet.errors import PipelineError

try:
    validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
except PipelineError as error:
    raise WorkflowError(str(error)) from None

# Jobs run `python -m dsflexinet` from this checkout, in the venv, a conda env (--sdm conda) or on a cluster
# node; Snakemake's default strict-mode prefix is kept.
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH='{Path(workflow.basedir) / 'src'}'${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)

DATA = config["data"]
DATA_ROOT = DATA["root"]
DATASET = f"{DATA_ROOT}/{DATASET_DIRNAME}"
DATASET_TABLES = [f"{DATASET}/meta.csv"] + [f"{DATASET}/{path}" for path in SPLIT_FILES.values()]
TAU22_ARCHIVES = read_manifest("tau22.md5")
SPLITS = list(DATA["splits"])
IR_DIR = f"{DATA_ROOT}/impulse_responses/{DATA['impulse_responses']['source']}"
ENV = "../../envs/pipeline.yaml"


def as_json(value):
    """Compact, key-sorted JSON for `--spec` params: equal settings give equal strings (no spurious reruns)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def final_targets():
    return [f"results/data/dataset.json"] + expand("results/cache/{split}.npy", split=SPLITS) + [IR_DIR]
