"""Every command given a wrong path answers in one sentence on stderr with exit code 2, never a traceback."""

import pytest

from skin_demo.__main__ import main


@pytest.fixture
def paths(tmp_path):
    """A missing path, a file and a folder (holding no model, no data set), to hand to commands."""
    (tmp_path / "a_file.txt").write_text("not what was asked for")
    (tmp_path / "a_folder").mkdir()
    return {"missing": str(tmp_path / "missing"), "file": str(tmp_path / "a_file.txt"),
            "folder": str(tmp_path / "a_folder"), "in_missing": str(tmp_path / "missing" / "out.onnx"),
            "no_suffix": str(tmp_path / "exported")}


WRONG = {  # command line (with placeholders) -> words the sentence must contain
    "evaluate, missing model": ("evaluate --model {missing} --images {folder} --metadata {file}", "does not exist"),
    "evaluate, missing CSV": ("evaluate --model {folder} --images {folder} --metadata {missing}", "does not exist"),
    "evaluate, folder as CSV": ("evaluate --model {folder} --images {folder} --metadata {folder}", "not a file"),
    "evaluate, file as image folder": ("evaluate --model {folder} --images {file} --metadata {file}", "not a folder"),
    "evaluate, not a model folder": ("evaluate --model {folder} --images {folder} --metadata {file}", "missing"),
    "predict, missing model": ("predict --model {missing} x.jpg", "does not exist"),
    "predict, file as model": ("predict --model {file} x.jpg", "not a folder"),
    "explain, missing image": ("explain {missing}", "does not exist"),
    "explain, folder as image": ("explain {folder}", "not a file"),
    "explain, missing registry": ("explain {file} --registry {missing}", "does not exist"),
    "explain, file as output folder": ("explain {file} --out {file}", "give a folder"),
    "train, missing model to continue": ("train --backbone custom_cnn --out {folder} --init-from {missing}",
                                         "does not exist"),
    "train, file as output folder": ("train --backbone custom_cnn --out {file}", "give a folder"),
    "train, no data set": ("train --backbone custom_cnn --out {folder}/m --data {folder}", "HAM10000 not found"),
    "benchmark, missing weights": ("benchmark --weights {missing}", "does not exist"),
    "benchmark, no model folders": ("benchmark --weights {folder}", "No model folders"),
    "benchmark, folder as README": ("benchmark --weights {folder} --readme {folder}", "give a file name"),
    "benchmark-explain, missing model": ("benchmark-explain --model {missing}", "does not exist"),
    "benchmark-explain, missing compared model": ("benchmark-explain --model {folder} --compare {missing}",
                                                  "does not exist"),
    "eda, file as output folder": ("eda --out {file}", "give a folder"),
    "eda, no data set": ("eda --out {folder} --data {folder}", "HAM10000 not found"),
    "push, missing model": ("push --model {missing} --repo me/model", "does not exist"),
    "calibrate, missing model": ("calibrate --model {missing}", "does not exist"),
    "calibrate, not a model folder": ("calibrate --model {folder}", "missing"),
    "ood-fit, file as model": ("ood-fit --model {file}", "not a folder"),
    "export, missing model": ("export --model {missing} --format onnx", "does not exist"),
    "export, output in a missing folder": ("export --model {folder} --format onnx --out {in_missing}",
                                           "does not exist"),
    "export, a file name without the format's suffix": ("export --model {folder} --format tflite --out {no_suffix}",
                                                        "a tflite file must end in .tflite"),
    "models, missing registry": ("models --registry {missing}", "does not exist"),
    "models, folder as registry": ("models --registry {folder}", "not a file"),
}


@pytest.mark.parametrize("case", WRONG)
def test_a_wrong_path_gets_one_sentence_and_exit_code_2(case, paths, capsys):
    command, words = WRONG[case]
    status = main(command.format(**paths).split())
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("error: ") and words in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_help_exits_0_and_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("train", "evaluate", "predict", "explain", "export", "models"))


def test_benchmark_explain_refuses_a_detail_out_of_range_before_any_work(capsys):
    from skin_demo.paths import REPO_ROOT

    status = main(["benchmark-explain", "--model", str(REPO_ROOT / "weights" / "custom_cnn"), "--detail", "99"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: detail must be") and err.count("\n") == 1, err


def test_benchmark_explain_of_an_unknown_registry_entry_is_one_sentence(capsys):
    status = main(["benchmark-explain", "--entry", "no_such_model"])
    err = capsys.readouterr().err
    assert status == 2 and "Unknown model 'no_such_model'" in err and err.count("\n") == 1, err
