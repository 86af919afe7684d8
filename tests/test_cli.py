"""The command line: every job is registered, --help is fast and imports no heavy library."""

import subprocess
import sys

from genoseq.cli import COMMANDS, normalize_option_names

HEAVY = ("torch", "lightning", "pysam", "sklearn", "h5py", "fastapi", "matplotlib", "faiss")


def test_building_every_parser_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from genoseq import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    for name in COMMANDS:
        assert name in out


def test_dashed_option_names():
    assert normalize_option_names(["score", "--max-new-tokens=3", "--trainer.max-steps", "5", "-h", "ACG-T"]) == [
        "score", "--max_new_tokens=3", "--trainer.max_steps", "5", "-h", "ACG-T"]
