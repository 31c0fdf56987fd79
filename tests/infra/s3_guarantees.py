"""Probe an S3 server for the guarantees the operator's artifact store relies on (docs/storage.md).

    set -a; . .local/env; set +a
    .venv/bin/python tests/infra/s3_guarantees.py main     # S3_ENDPOINT_URL, S3_BUCKET, AWS_* (the local MinIO)
    .venv/bin/python tests/infra/s3_guarantees.py alt      # S3_ALT_* (the local versitygw)

Every probe sends real requests to that one endpoint, under a fresh prefix probes/<uuid>/ of the bucket
(removed afterwards), and prints one line: the guarantee, PASS/FAIL, and what was observed. Exit status 1
when a guarantee the operator needs fails. The storage-contract integration tests reuse ``Probe``.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import sys
import threading
import uuid
from typing import Any, Callable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ROUNDS, WRITERS = 20, 8          # conditional put under concurrency
RAW_ITERATIONS = 50              # read-after-write
LIST_KEYS, PAGE = 23, 5          # ListObjectsV2 pagination
BIG = 8 * 1024 * 1024 + 123      # streaming GET (not a multiple of the chunk size)


def client_for(server: str, checksums: str = "when_required") -> tuple[Any, str, str | None]:
    env = os.environ
    if server == "main":
        url, bucket, key, secret = (env.get("S3_ENDPOINT_URL"), env["S3_BUCKET"], env["AWS_ACCESS_KEY_ID"],
                                    env["AWS_SECRET_ACCESS_KEY"])
    else:
        url, bucket, key, secret = (env["S3_ALT_ENDPOINT_URL"], env["S3_ALT_BUCKET"], env["S3_ALT_ACCESS_KEY_ID"],
                                    env["S3_ALT_SECRET_ACCESS_KEY"])
    cfg = Config(request_checksum_calculation=checksums, response_checksum_validation=checksums,
                 s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"},
                 max_pool_connections=WRITERS * 2)
    region = env.get("AWS_REGION", "us-east-1") if server == "main" else "us-east-1"
    client = boto3.session.Session().client("s3", endpoint_url=url, region_name=region, aws_access_key_id=key,
                                            aws_secret_access_key=secret, config=cfg)
    return client, bucket, url


def code_of(exc: ClientError) -> str:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return f"{status} {exc.response.get('Error', {}).get('Code')}"


class Probe:
    def __init__(self, s3: Any, bucket: str, root: str) -> None:
        self.s3, self.bucket, self.root = s3, bucket, root
        self.results: list[tuple[str, bool, str]] = []

    def key(self, name: str) -> str:
        return f"{self.root}{name}"

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def record(self, name: str, ok: bool, seen: str) -> None:
        self.results.append((name, ok, seen))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {seen}", flush=True)

    def run(self, name: str, fn: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, seen = fn()
        except Exception as exc:  # a probe that crashes is a failed guarantee, with the reason shown
            ok, seen = False, f"{type(exc).__name__}: {exc}"
        self.record(name, ok, seen)

    # -- conditional PutObject -----------------------------------------------------------------

    def conditional_put(self) -> tuple[bool, str]:
        k = self.key("cond/manifest.json")
        self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"first", IfNoneMatch="*")
        try:
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"second", IfNoneMatch="*")
            outcome = "second put SUCCEEDED (header ignored)"
        except ClientError as exc:
            outcome = f"second put refused: {code_of(exc)}"
        kept = self.get(k)
        ok = outcome.startswith("second put refused: 412") and kept == b"first"
        return ok, f"{outcome}; object {'kept' if kept == b'first' else 'OVERWRITTEN'}"

    def conditional_put_after_delete(self) -> tuple[bool, str]:
        k = self.key("cond-del/manifest.json")
        self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"v1", IfNoneMatch="*")
        self.s3.delete_object(Bucket=self.bucket, Key=k)
        self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"v2", IfNoneMatch="*")
        return self.get(k) == b"v2", "a deleted key can be created again with If-None-Match: *"

    def conditional_put_concurrent(self) -> tuple[bool, str]:
        winners_per_round: list[int] = []
        loser_codes: collections.Counter[str] = collections.Counter()
        mismatched = 0
        for r in range(ROUNDS):
            k = self.key(f"race/{r}/manifest.json")
            barrier, won, lock = threading.Barrier(WRITERS), [], threading.Lock()

            def writer(i: int) -> None:
                body = f"writer-{i}".encode() * 32768  # ~256 KiB: the uploads overlap on the wire
                barrier.wait()
                try:
                    self.s3.put_object(Bucket=self.bucket, Key=k, Body=body, IfNoneMatch="*")
                    with lock:
                        won.append(body)
                except ClientError as exc:
                    with lock:
                        loser_codes[code_of(exc)] += 1

            threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners_per_round.append(len(won))
            if len(won) != 1 or self.get(k) != won[0]:
                mismatched += 1
        dist = collections.Counter(winners_per_round)
        seen = (f"{ROUNDS} rounds x {WRITERS} writers: winners per round {dict(dist)}, losers got "
                f"{dict(loser_codes)}; stored object == the winner's body in {ROUNDS - mismatched}/{ROUNDS}")
        return dist == {1: ROUNDS} and mismatched == 0, seen

    def conditional_put_if_match(self) -> tuple[bool, str]:
        k = self.key("cas/obj")
        etag = self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"one")["ETag"]
        try:
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"two", IfMatch='"0000"')
            wrong = "wrong ETag ACCEPTED"
        except ClientError as exc:
            wrong = f"wrong ETag refused: {code_of(exc)}"
        self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"three", IfMatch=etag)
        ok = wrong.startswith("wrong ETag refused: 412") and self.get(k) == b"three"
        return ok, f"{wrong}; right ETag accepted (not used by the operator, informative)"

    # -- consistency ---------------------------------------------------------------------------

    def read_after_write(self) -> tuple[bool, str]:
        bad: list[str] = []
        for i in range(RAW_ITERATIONS):
            k = self.key(f"raw/{i}")
            a, b = os.urandom(2048), os.urandom(3000)
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=a)
            if self.get(k) != a:
                bad.append(f"{i}: new object")
            if self.s3.head_object(Bucket=self.bucket, Key=k)["ContentLength"] != len(a):
                bad.append(f"{i}: head")
            listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=k).get("Contents", [])
            if [o["Key"] for o in listed] != [k]:
                bad.append(f"{i}: list after put")
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=b)
            if self.get(k) != b:
                bad.append(f"{i}: overwrite")
            self.s3.delete_object(Bucket=self.bucket, Key=k)
            try:
                self.get(k)
                bad.append(f"{i}: read after delete")
            except ClientError as exc:
                if not code_of(exc).startswith("404"):
                    bad.append(f"{i}: read after delete gave {code_of(exc)}")
            if self.s3.list_objects_v2(Bucket=self.bucket, Prefix=k).get("KeyCount", 0):
                bad.append(f"{i}: list after delete")
        return not bad, (f"{RAW_ITERATIONS} x (put/get/head/list, overwrite/get, delete/get/list): "
                         + ("all immediately visible" if not bad else f"stale: {bad[:5]}"))

    # -- DeleteObjects -------------------------------------------------------------------------

    def delete_objects(self) -> tuple[bool, str]:
        keys = [self.key(f"del/a-{i:02d}/f") for i in range(10)]
        for k in keys:
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"x")
        missing = self.key("del/never-written")
        out = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys + [missing]]})
        deleted = {d["Key"] for d in out.get("Deleted", [])}
        errors = out.get("Errors", [])
        left = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.key("del/")).get("KeyCount", 0)
        more = [self.key(f"del/q-{i}") for i in range(3)]
        for k in more:
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"y")
        quiet = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in more],
                                                                   "Quiet": True})
        left_quiet = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.key("del/")).get("KeyCount", 0)
        ok = set(keys) <= deleted and not errors and left == 0 and left_quiet == 0 and not quiet.get("Errors")
        return ok, (f"10 keys + 1 never written: {len(deleted)} reported Deleted (missing key reported: "
                    f"{missing in deleted}), {len(errors)} Errors, {left} left; Quiet=True: "
                    f"{len(quiet.get('Deleted', []))} listed, {left_quiet} left")

    # -- ListObjectsV2 -------------------------------------------------------------------------

    def list_pagination(self) -> tuple[bool, str]:
        base = self.key("list/")
        keys = sorted(f"{base}{name}" for name in [f"k{i:02d}" for i in range(LIST_KEYS - 3)]
                      + ["d1/x", "d1/y", "d2/z"])
        for k in keys:
            self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"")
        got, pages, token, counts = [], 0, None, []
        while True:
            kw = {"ContinuationToken": token} if token else {}
            page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=base, MaxKeys=PAGE, **kw)
            pages += 1
            got += [o["Key"] for o in page.get("Contents", [])]
            counts.append(page.get("KeyCount"))
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        flat_ok = got == keys
        # Delimiter: "directories" come back once, as CommonPrefixes, also across pages.
        seen_prefixes, seen_keys, token = [], [], None
        while True:
            kw = {"ContinuationToken": token} if token else {}
            page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=base, Delimiter="/", MaxKeys=4, **kw)
            seen_prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            seen_keys += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        delim_ok = sorted(seen_prefixes) == [f"{base}d1/", f"{base}d2/"] and len(seen_keys) == LIST_KEYS - 3
        after = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=base, StartAfter=keys[10]).get("Contents", [])
        start_ok = [o["Key"] for o in after] == keys[11:]
        paginator = [o["Key"] for p in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base, PaginationConfig={"PageSize": PAGE}) for o in p.get("Contents", [])]
        return (flat_ok and delim_ok and start_ok and paginator == keys,
                f"{LIST_KEYS} keys, MaxKeys={PAGE}: {pages} pages, KeyCount {counts}, all keys once in order: "
                f"{flat_ok}; Delimiter='/' prefixes {sorted(p[len(base):] for p in seen_prefixes)} + "
                f"{len(seen_keys)} keys: {delim_ok}; StartAfter: {start_ok}; boto3 paginator: {paginator == keys}")

    # -- streaming GET -------------------------------------------------------------------------

    def streaming_get(self) -> tuple[bool, str]:
        k = self.key("big/model.joblib")
        data = os.urandom(BIG)
        self.s3.put_object(Bucket=self.bucket, Key=k, Body=data)
        resp = self.s3.get_object(Bucket=self.bucket, Key=k)
        digest, size, chunks = hashlib.sha256(), 0, 0
        for chunk in resp["Body"].iter_chunks(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
            chunks += 1
        whole = digest.hexdigest() == hashlib.sha256(data).hexdigest() and size == BIG
        ranged = self.s3.get_object(Bucket=self.bucket, Key=k, Range="bytes=1000-1999")
        part = ranged["Body"].read()
        range_ok = part == data[1000:2000] and ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
        self.s3.put_object(Bucket=self.bucket, Key=self.key("big/empty"), Body=b"")
        empty_ok = self.get(self.key("big/empty")) == b""
        return (whole and range_ok and resp["ContentLength"] == BIG and empty_ok,
                f"{BIG} bytes in {chunks} chunks, sha256 matches: {whole}; Content-Length right: "
                f"{resp['ContentLength'] == BIG}; Range 206 + right bytes: {range_ok}; empty object: {empty_ok}")

    # -- informative ---------------------------------------------------------------------------

    def object_and_prefix_same_name(self) -> tuple[bool, str]:
        """S3 keys are flat strings; a filesystem-backed server may not hold both "a" and "a/b"."""
        k = self.key("shape/a")
        self.s3.put_object(Bucket=self.bucket, Key=k, Body=b"file")
        try:
            self.s3.put_object(Bucket=self.bucket, Key=k + "/b", Body=b"below")
            return True, "both 'a' and 'a/b' stored (the operator never needs this: informative)"
        except ClientError as exc:
            return True, f"'a/b' refused while object 'a' exists: {code_of(exc)} (the operator never needs this)"

    def default_checksums(self, server: str) -> tuple[bool, str]:
        """botocore's default (CRC32 on every put, aws-chunked bodies); the operator asks for 'when_required'."""
        s3, bucket, _ = client_for(server, checksums="when_supported")
        k = self.key("crc/obj")
        try:
            s3.put_object(Bucket=bucket, Key=k, Body=b"crc" * 1000)
            got = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
            return True, f"accepted; read back intact: {got == b'crc' * 1000} (operator sends none: informative)"
        except ClientError as exc:
            return True, f"refused: {code_of(exc)} (operator sends none: informative)"

    def cleanup(self) -> None:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.root):
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objs, "Quiet": True})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", choices=["main", "alt"])
    args = parser.parse_args()
    s3, bucket, url = client_for(args.server)
    kind = "S3_ENDPOINT_URL" if args.server == "main" else os.environ.get("S3_ALT_KIND", "alt")
    print(f"# {kind} at {url or 'AWS S3'}, bucket {bucket}", flush=True)
    probe = Probe(s3, bucket, f"probes/{uuid.uuid4().hex}/")
    try:
        probe.run("conditional put (If-None-Match: *) on an existing key -> 412", probe.conditional_put)
        probe.run("conditional put after delete", probe.conditional_put_after_delete)
        probe.run("conditional put under concurrency: exactly one winner", probe.conditional_put_concurrent)
        probe.run("If-Match put (compare-and-swap)", probe.conditional_put_if_match)
        probe.run("read-after-write (new, overwrite, delete, list)", probe.read_after_write)
        probe.run("DeleteObjects", probe.delete_objects)
        probe.run("ListObjectsV2 pagination", probe.list_pagination)
        probe.run("streaming GET", probe.streaming_get)
        probe.run("object and prefix of the same name", probe.object_and_prefix_same_name)
        probe.run("botocore default checksums", lambda: probe.default_checksums(args.server))
    finally:
        probe.cleanup()
    return 0 if all(ok for _, ok, _ in probe.results) else 1


if __name__ == "__main__":
    sys.exit(main())
