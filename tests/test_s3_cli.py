"""The CLI end to end against a real S3 endpoint (moto's server on 127.0.0.1),
configured the usual way: AWS_* environment variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_cli_round_trip_on_s3(s3_endpoint, s3_url, tmp_path):
    source = tmp_path / "bins" / "D20240501T000000_IFCB107"
    source.mkdir(parents=True)
    originals = {}
    for roi in range(1, 4):
        image_id = f"D20240501T000000_IFCB107_{roi:05d}"
        originals[image_id] = os.urandom(2000 + roi)
        (source / f"{image_id}.png").write_bytes(originals[image_id])
    env = dict(os.environ, AWS_ENDPOINT_URL=s3_endpoint)

    def improv(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "improv_vcs.cli", *args],
            env=env,
            capture_output=True,
            timeout=120,
        )

    assert improv("init", s3_url).returncode == 0
    done = improv("commit", str(tmp_path / "bins"), "-i", "IFCB107", "--repo", s3_url, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["new_images"] == 3
    log = json.loads(improv("log", "--repo", s3_url, "--json").stdout)
    assert [c["images"] for c in log] == [3]
    for image_id, data in originals.items():
        got = improv("get", image_id, "--repo", s3_url)
        assert got.returncode == 0 and got.stdout == data
    missing = improv("log", "--repo", s3_url.replace("/repo", "/nothing"))
    assert missing.returncode == 3 and b"not an improv repository" in missing.stderr
