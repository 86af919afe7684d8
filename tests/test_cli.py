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


# --- option groups: nested (--table.sequence_column) and flat (--sequence_column), the same values --------------

FLAT_AND_NESTED = {
    ("classify", "predict"): (["--classifier", "C", "--out", "O"],
                              {"table": {"input": "x.tsv", "split": "train", "sequence_column": "seq",
                                         "label_column": "y"}}),
    ("classify", "evaluate"): (["--classifier", "C", "--out", "O"], {"table": {"input": "x.tsv", "label_column": "y"}}),
    ("classify", "fit"): (["--model", "M", "--train", "t.tsv", "--out", "O"],
                          {"embedding": {"layer": "2", "pooling": "mean", "rc_average": "true", "rc_concat": "false",
                                         "max_length": "100"}}),
    ("embed",): (["--model", "M", "--tsv", "t.tsv", "--out", "O"],
                 {"embedding": {"layer": "null", "pooling": "phase+ends", "rc_concat": "true"}}),
    ("interpret", "ism"): (["--model", "M", "--out", "O"], {"table": {"input": "x.fa", "sequence_column": "s"}}),
    ("interpret", "dependencies"): (["--model", "M", "--out", "O"], {"table": {"input": "x.fa", "split": "val"}}),
    ("interpret", "attributions"): (["--model", "M", "--out", "O"], {"table": {"input": "x.tsv", "label_column": "c"}}),
}


def parsed_group(command: tuple, args: list[str]):
    """The parsed namespace of ``command`` (the subcommand's own options)."""
    from genoseq.cli import build_parser

    cfg = build_parser().parse_args(normalize_option_names([*command, *args]))
    for name in command:
        cfg = cfg[name]
    return cfg


def test_option_groups_read_flat_and_nested_alike(tmp_path):
    import json

    for command, (required, groups) in FLAT_AND_NESTED.items():
        flat = [arg for options in groups.values() for key, value in options.items() for arg in (f"--{key}", value)]
        nested = [arg for group, options in groups.items() for key, value in options.items()
                  for arg in (f"--{group}.{key}", value)]
        dashed = [arg.replace("_", "-") if arg.startswith("--") else arg for arg in flat]
        config = tmp_path / f"{'_'.join(command)}.json"  # a workflow rule's --config: flat keys
        config.write_text(json.dumps({key: json.loads(value) if value in ("true", "false", "null") or value.isdigit()
                                      else value for options in groups.values() for key, value in options.items()}))
        expected = parsed_group(command, required + nested)
        for group, options in groups.items():  # the values given, not the defaults
            assert {key: str(expected[group][key]).lower().replace("none", "null") for key in options} == options
        for args in (flat, dashed, ["--config", str(config)]):
            got = parsed_group(command, required + args)
            assert {g: got[g] for g in groups} == {g: expected[g] for g in groups}, (command, args)


def test_table_input_is_required_where_it_was(capsys):
    import pytest

    from genoseq.cli import main

    with pytest.raises(SystemExit) as exit:
        main(["classify", "predict", "--classifier", "C", "--out", "O"])
    assert exit.value.code == 2 and "table.input" in capsys.readouterr().err
    assert parsed_group(("interpret", "ism"), ["--model", "M", "--out", "O"]).table.input is None  # --fasta instead


def test_a_flat_option_cannot_shadow_another():
    import pytest
    from jsonargparse import ArgumentParser

    from genoseq.cli import parser_class
    from genoseq.options import TableInput

    def command(table: TableInput, split: str = "x"):
        """A command whose own option would clash with a group's flat one."""

    with pytest.raises(ValueError, match="--table.split cannot also be read as --split"):
        parser_class()().add_function_arguments(command, as_group=False)
    assert issubclass(parser_class(), ArgumentParser)
