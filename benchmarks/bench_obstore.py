"""Conditional S3 writes through s3fs (``S3Store``) against obstore, on a
moto server on 127.0.0.1 (dummy credentials).

Times, for each client, ``--n`` creates of new keys (``If-None-Match: *``),
``--n`` refused creates of existing keys, and ``--n`` compare-and-swap moves
of one ref (a GET for the body and ETag, then ``If-Match``), and checks the
refusals (a second create, a stale swap). Prints one JSON object. obstore
is optional (not a dependency): without it only s3fs is measured.

    python benchmarks/bench_obstore.py --scale full
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

REF = "refs/heads/main"


def moto_endpoint() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def timed(n: int, step: Callable[[int], None]) -> float:
    """Operations per second of ``step(0) .. step(n - 1)``."""
    began = time.perf_counter()
    for i in range(n):
        step(i)
    return round(n / (time.perf_counter() - began), 1)


def with_s3fs(endpoint: str, bucket: str, n: int) -> dict[str, Any]:
    from improv_vcs.core.errors import ConflictError
    from improv_vcs.storage import S3Store

    store = S3Store(f"s3://{bucket}/s3fs", endpoint_url=endpoint)
    refs = [f"{i}\n".encode() for i in range(n + 1)]
    store.compare_and_swap(REF, None, refs[0])
    report = {
        "create_per_s": timed(n, lambda i: store.put_if_absent(f"objects/ab/{i}", b"v")),
        "refused_create_per_s": timed(n, lambda i: store.put_if_absent(f"objects/ab/{i}", b"w")),
        "swap_per_s": timed(n, lambda i: store.compare_and_swap(REF, refs[i], refs[i + 1])),
    }
    try:
        store.compare_and_swap(REF, refs[0], b"stale\n")
        report["stale_swap_refused"] = False
    except ConflictError:
        report["stale_swap_refused"] = True
    report["second_create_refused"] = store.put_if_absent("objects/ab/0", b"x") is False
    store.close()
    return report


def with_obstore(endpoint: str, bucket: str, n: int) -> dict[str, Any]:
    import obstore
    from obstore.exceptions import AlreadyExistsError, PreconditionError
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        prefix="obstore",
        endpoint=endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )

    def create(key: str, data: bytes) -> bool:
        try:
            obstore.put(store, key, data, mode="create")
            return True
        except AlreadyExistsError:
            return False

    def swap(expected: bytes, new: bytes) -> bool:
        found = obstore.get(store, REF)
        if bytes(found.bytes()) != expected:
            return False
        try:
            obstore.put(store, REF, new, mode={"e_tag": found.meta["e_tag"]})
            return True
        except PreconditionError:
            return False

    refs = [f"{i}\n".encode() for i in range(n + 1)]
    create(REF, refs[0])
    return {
        "create_per_s": timed(n, lambda i: create(f"objects/ab/{i}", b"v")),
        "refused_create_per_s": timed(n, lambda i: create(f"objects/ab/{i}", b"w")),
        "swap_per_s": timed(n, lambda i: swap(refs[i], refs[i + 1])),
        "stale_swap_refused": swap(refs[0], b"stale\n") is False,
        "second_create_refused": create("objects/ab/0", b"x") is False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["ci", "full"], default="ci", help="ci: 50, full: 500")
    parser.add_argument("--n", type=int, help="operations of each kind (instead of --scale)")
    args = parser.parse_args()
    n = args.n or {"ci": 50, "full": 500}[args.scale]
    import boto3

    server, endpoint = moto_endpoint()
    try:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        report: dict[str, Any] = {"n": n, "s3fs": with_s3fs(endpoint, bucket, n)}
        try:
            report["obstore"] = with_obstore(endpoint, bucket, n)
        except ImportError:
            report["obstore"] = None  # not installed
    finally:
        server.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
