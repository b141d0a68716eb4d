"""`--impl` end to end: a checkpoint trained with the fused kernels runs the same under the cells."""

import json

from conftest import TINY_MODEL


def test_trained_fused_evaluates_the_same_with_cells(cli, corpus_file):
    trained = cli("train", corpus_file, "-o", "run", "--steps", "20", "--layers", "2", "--device", "cpu",
                  *TINY_MODEL[2:])
    assert "| cpu (onednn, fp32) |" in trained.stderr
    info = json.loads(cli("info", "-c", "run", "--json").stdout)
    assert (info["device"], info["backend"], info["precision"]) == ("cpu", "onednn", "fp32")

    fused = json.loads(cli("eval", "-c", "run", "--json", "--impl", "fused").stdout)
    cells = json.loads(cli("eval", "-c", "run", "--json", "--impl", "cells").stdout)
    assert fused["chars"] == cells["chars"] > 0
    assert abs(fused["bpc"] - cells["bpc"]) < 1e-4
