"""A short soak (`make soak` is 20,000 predictions at 16 clients): every request answered 200,
and a report with the resident memory of every process of the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests.servers import own_bentoml_home
from loadtests.soak import SoakSettings, format_report, serve_and_soak
from sentiment.config import load_serving_config

pytestmark = [pytest.mark.performance, pytest.mark.integration, pytest.mark.slow]


def test_short_soak_answers_everything_and_reports_rss_per_process(
    bento_env: dict[str, str], tmp_path: Path
) -> None:
    env = own_bentoml_home(bento_env, tmp_path / "home")
    report = serve_and_soak(env, SoakSettings(requests=1000, clients=8), tmp_path)
    print("\n" + format_report(report))
    (tmp_path / "soak.json").write_text(json.dumps(report))

    assert report["non_200"] == 0, report["statuses"]
    assert report["errors"] == {}
    assert report["statuses"] == {"200": 1000}
    assert report["warmup_requests"] == 100

    roles = [p["role"] for p in report["processes"]]
    assert roles[:2] == ["supervisor (bentoml serve)", "server worker"]
    model_processes = [r for r in roles if r.startswith("model process")]
    import torch

    expected = 0 if torch.cuda.is_available() else load_serving_config().model.processes
    assert len(model_processes) == expected, roles
    for proc in report["processes"]:
        assert proc["samples"] >= 2, proc
        assert 0 < proc["after_warmup_mb"] <= proc["peak_mb"], proc
        assert proc["growth_mb"] == round(proc["end_mb"] - proc["after_warmup_mb"], 1)
        assert isinstance(proc["growth_second_half_mb"], float), proc
    # The first reading is taken before the load, the last once every answer is in.
    assert report["samples"][0]["done"] == 0
    assert report["samples"][-1]["done"] == 1000
    assert json.loads((tmp_path / "soak.json").read_text())["processes"] == report["processes"]
