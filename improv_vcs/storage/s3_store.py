"""The S3 store, over s3fs.

S3 gets atomic put-if-absent and compare-and-swap from conditional writes
(``If-None-Match: *`` and ``If-Match: <etag>``).

S3 requests are retried by botocore's ``standard`` retry mode (exponential
backoff with jitter; 5 attempts unless ``AWS_MAX_ATTEMPTS`` says otherwise).
Every request the store makes is safe to repeat: reads, existence checks,
create-if-absent writes, and a ref's compare-and-swap, which stays guarded
by its condition. A swap whose answer was lost, though, may be refused by
its own earlier attempt, or end with no answer at all: it then reads the ref
back and looks for the token its write carried (see
:meth:`S3Store.compare_and_swap`).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from typing import Any

from ..core.errors import (
    ConflictError,
    ImprovError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    StorageError,
)
from ..core.http import describe, note_retry
from .fsspec_store import FsspecStore, MissingBucketError, visible_key
from .store import Bytes, check_listing

S3_ATTEMPTS = 5
"""Attempts per S3 request (first try included) unless ``AWS_MAX_ATTEMPTS`` is set."""
_PRECONDITION = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
_WRITER = "improv-write"
"""Object metadata naming the compare-and-swap that wrote a ref."""
_DENIED = (
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
)


class S3CredentialsError(ReadOnlyError):
    """S3 found no credentials, or refused the ones it was given (exit code 6).
    A server whose own store fails so answers 503, not 401: the client's
    token is not what is wrong."""


class S3Store(FsspecStore):
    """An ``s3://bucket/prefix`` store through s3fs, using conditional writes."""

    def __init__(self, url: str, read_only: bool = False, **storage_options: Any):
        from aiohttp import ClientError
        from botocore.exceptions import BotoCoreError

        endpoint = storage_options.get("endpoint_url")
        if endpoint is not None and not str(endpoint).startswith(("http://", "https://")):
            raise InvalidInputError(
                f"the S3 endpoint must be an http:// or https:// URL, not {endpoint!r}"
            )
        options = {"use_listings_cache": False, "skip_instance_cache": True}
        options.update(storage_options)
        options["config_kwargs"] = _retry_config(options.get("config_kwargs"))
        fs = _filesystem_class()(**options)
        fs.retries = 1  # one retry policy, botocore's, rather than s3fs's on top of it
        super().__init__(fs, fs._strip_protocol(url), url, read_only)
        # an unreachable endpoint, a timeout, missing credentials: not OSErrors
        self.errors = (OSError, BotoCoreError, ClientError)

    @property
    def bucket(self) -> str:
        return self.root.split("/", 1)[0]

    def _endpoint(self) -> str:
        endpoint = (
            self.fs.endpoint_url
            or self.fs.client_kwargs.get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        return f" at {endpoint}" if endpoint else ""

    def _missing(self, key: str, exc: BaseException) -> ImprovError:
        if _s3_code(exc) == "NoSuchBucket":
            return MissingBucketError(
                f"bucket {self.bucket!r} does not exist{self._endpoint()}; create it "
                f"(`improv init --create-bucket {self.url}`, or S3Store.create_bucket()) or check "
                f"the URL"
            )
        return super()._missing(key, exc)

    def _failed(self, doing: str, exc: BaseException) -> ImprovError:
        from botocore.exceptions import (
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ParamValidationError,
            PartialCredentialsError,
        )

        code = _s3_code(exc)
        if code == "NoSuchBucket":
            return self._missing("", exc)
        if code == "InvalidBucketName" or _caused_by(exc, (ParamValidationError,)):
            return InvalidInputError(f"{doing}: {_one_line(exc)}")
        if _caused_by(exc, (NoCredentialsError, PartialCredentialsError)):
            return S3CredentialsError(
                f"{doing}: no S3 credentials found; set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE) in the environment"
            )
        if code in _DENIED or (code is None and isinstance(exc, PermissionError)):
            return S3CredentialsError(
                f"{doing}: S3 refused the credentials ({_one_line(exc)}); check them and the "
                f"bucket's policy"
            )
        if _caused_by(exc, (EndpointConnectionError, ConnectTimeoutError)):
            return StorageError(
                f"{doing}: cannot reach the S3 endpoint{self._endpoint()} ({_one_line(exc)})"
            )
        return StorageError(f"{doing}: {_one_line(exc)}")

    def _bucket_key(self, key: str) -> tuple[str, str]:
        bucket, _, path = self._path(key).partition("/")
        return bucket, path

    def create_bucket(self) -> bool:
        """Create this store's bucket (in the client's region); False if it
        already exists and is ours. :class:`ConflictError` if another
        account owns a bucket of that name."""
        self._check_writable("create a bucket")
        params: dict[str, Any] = {"Bucket": self.bucket}
        try:
            try:
                self.fs.call_s3("head_bucket", Bucket=self.bucket)
                return False
            except FileNotFoundError:
                pass
            region = self.fs.s3.meta.region_name
            if region and region != "us-east-1":  # the one region that takes no constraint
                params["CreateBucketConfiguration"] = {"LocationConstraint": region}
            self.fs.call_s3("create_bucket", **params)
        except self.errors as exc:
            code = _s3_code(exc)
            if code == "BucketAlreadyOwnedByYou":
                return False
            if code == "BucketAlreadyExists":
                raise ConflictError(
                    f"bucket {self.bucket!r} belongs to someone else; choose another name"
                ) from None
            raise self._failed(
                f"cannot create bucket {self.bucket!r}{self._endpoint()}", exc
            ) from exc
        return True

    def get_if_exists(self, key: str) -> bytes | None:
        try:
            return self.get(key)
        except MissingBucketError:
            raise
        except NotFoundError:
            return None

    def exists(self, key: str) -> bool:
        """One ``HEAD`` (``isfile`` would read a failure as "absent")."""
        bucket, path = self._bucket_key(key)
        try:
            self.fs.call_s3("head_object", Bucket=bucket, Key=path)
        except FileNotFoundError:
            return False
        except self.errors as exc:
            raise self._failed(f"cannot stat {key} on {self.url}", exc) from exc
        return True

    def put_if_absent(self, key: str, data: Bytes) -> bool:
        self._check_writable("write")
        try:
            self.fs.pipe_file(self._path(key), bytes(data), mode="create")
        except FileExistsError:
            return False
        except self.errors as exc:
            if _s3_code(exc) in _PRECONDITION:
                return False
            raise self._failed(f"cannot write {key} to {self.url}", exc) from exc
        return True

    def freshen(self, key: str) -> bool:
        """Copy the object onto itself, which sets its ``LastModified`` to now."""
        self._check_writable("freshen")
        bucket, path = self._bucket_key(key)
        source = {"Bucket": bucket, "Key": path}
        try:
            self.fs.call_s3(
                "copy_object",
                Bucket=bucket,
                Key=path,
                CopySource=source,
                MetadataDirective="REPLACE",
            )
        except self.errors as exc:
            if _s3_code(exc) in ("NoSuchKey", "404") or (
                isinstance(exc, FileNotFoundError) and _s3_code(exc) != "NoSuchBucket"
            ):
                return False
            raise self._failed(f"cannot refresh {key} on {self.url}", exc) from exc
        return True

    def compare_and_swap(self, key: str, expected: bytes | None, new: bytes) -> None:
        """A conditional ``PUT`` (``If-None-Match: *`` or ``If-Match: <etag>``)
        that carries a token of its own (object metadata).

        The ``PUT`` may be sent more than once when an answer is lost
        (botocore's retries; aiohttp resends once on a dropped connection).
        That is safe, as the condition still guards the write, but a
        refusal may then answer our own earlier attempt, which landed; and
        when every answer is lost the outcome is unknown. In both cases the
        ref is read again: carrying our token, it moved."""
        self._check_writable("compare and swap")
        bucket, path = self._bucket_key(key)
        condition: dict[str, str]
        if expected is None:
            condition = {"IfNoneMatch": "*"}
        else:
            try:
                content, etag = _get_with_etag(self.fs, bucket, path)
            except FileNotFoundError as exc:
                if _s3_code(exc) == "NoSuchBucket":
                    raise self._missing(key, exc) from None
                raise ConflictError(f"{key} changed concurrently") from None
            except self.errors as exc:
                raise self._failed(f"cannot read {key} from {self.url}", exc) from exc
            if content != expected:
                raise ConflictError(f"{key} changed concurrently")
            condition = {"IfMatch": etag}
        token = uuid.uuid4().hex
        try:
            self.fs.call_s3(
                "put_object",
                Bucket=bucket,
                Key=path,
                Body=new,
                Metadata={_WRITER: token},
                **condition,
            )
        except self.errors as exc:
            if isinstance(exc, FileExistsError) or _s3_code(exc) in _PRECONDITION:
                if self._written_by(bucket, path, token):
                    return  # the refusal answered a repeat of our own write, which had landed
                raise ConflictError(f"{key} changed concurrently") from None
            error = self._failed(f"cannot write {key} to {self.url}", exc)
            if isinstance(error, StorageError) and self._written_by(bucket, path, token):
                return  # every answer was lost, but the write landed
            raise error from exc

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """Pages of ``ListObjectsV2`` from ``StartAfter`` (S3 lists keys in
        order), read as they are needed."""
        self._check_open()
        after = check_listing(prefix, start_after)
        bucket, _, root = self.root.partition("/")
        base = f"{root}/" if root else ""
        params = {"Bucket": bucket, "Prefix": base + prefix}
        if after:
            params["StartAfter"] = base + after
        return self._listed(params, len(base))

    def _listed(self, params: dict[str, str], cut: int) -> Iterator[str]:
        while True:
            try:
                page = self.fs.call_s3("list_objects_v2", **params)
            except FileNotFoundError as exc:
                if isinstance(self._missing("", exc), MissingBucketError):
                    raise self._missing("", exc) from None
                return
            except self.errors as exc:
                raise self._failed(f"cannot list {self.url}", exc) from exc
            for item in page.get("Contents", ()):
                if visible_key(item["Key"][cut:]):
                    yield item["Key"][cut:]
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    def close(self) -> None:
        """Close the S3 client's connections too (s3fs would only at exit)."""
        creator = getattr(self.fs, "_s3creator", None)
        if not self._closed and creator is not None:
            self.fs.close_session(self.fs.loop, creator)
        super().close()

    def _written_by(self, bucket: str, path: str, token: str) -> bool:
        """Whether the object at ``path`` was written by the swap holding ``token``."""
        try:
            head = self.fs.call_s3("head_object", Bucket=bucket, Key=path)
        except self.errors:
            return False
        return (head.get("Metadata") or {}).get(_WRITER) == token


def _get_with_etag(fs: Any, bucket: str, key: str) -> tuple[bytes, str]:
    """Body and ETag of one object from a single GET (no race between them)."""
    from fsspec.asyn import sync

    async def get() -> tuple[bytes, str]:
        response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
        async with response["Body"] as body:
            return await body.read(), response["ETag"]

    return sync(fs.loop, get)


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code behind an exception s3fs translated, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code"))
        seen = seen.__cause__ or seen.__context__
    return None


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _retry_config(config_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """botocore ``Config`` arguments with the ``standard`` retry mode and
    :data:`S3_ATTEMPTS` attempts, unless the caller or the environment
    (``AWS_RETRY_MODE``, ``AWS_MAX_ATTEMPTS``) chose otherwise."""
    config = dict(config_kwargs or {})
    retries = dict(config.get("retries") or {})
    if "mode" not in retries and not os.environ.get("AWS_RETRY_MODE"):
        retries["mode"] = "standard"
    if not {"max_attempts", "total_max_attempts"} & set(retries) and not os.environ.get(
        "AWS_MAX_ATTEMPTS"
    ):
        retries["total_max_attempts"] = S3_ATTEMPTS
    config["retries"] = retries
    return config


class _RetryNotes:
    """botocore event handlers that announce each retry (see
    :func:`improv_vcs.core.http.note_retry`) with the failure that caused it."""

    @staticmethod
    def failed(
        request_dict: Any = None, response: Any = None, caught_exception: Any = None, **_: Any
    ) -> None:
        if request_dict is None:
            return
        if caught_exception is not None:
            why = describe(caught_exception)
        elif response is not None:
            status = getattr(response[0], "status_code", "?")
            code = (
                (response[1] or {}).get("Error", {}).get("Code")
                if isinstance(response[1], dict)
                else None
            )
            why = f"HTTP {status}" + (f" {code}" if code and code != str(status) else "")
        else:
            why = "a failure"
        request_dict.setdefault("context", {})["improv_failure"] = why

    @staticmethod
    def created(request: Any = None, operation_name: str = "", **_: Any) -> None:
        context = getattr(request, "context", None) or {}
        attempt = context.get("retries", {}).get("attempt", 1)
        if attempt > 1:
            limit = None
            config = context.get("client_config")
            retries = getattr(config, "retries", None) or {}
            if "total_max_attempts" in retries:
                limit = retries["total_max_attempts"]
            note_retry(
                f"S3 {operation_name} {request.url}",
                context.get("improv_failure", "a failure"),
                attempt,
                limit,
            )


@functools.cache
def _filesystem_class() -> type:
    """s3fs's filesystem, announcing botocore's retries (a subclass, made on
    first use so that importing this module does not import s3fs)."""
    import s3fs

    class RetryNotingS3FileSystem(s3fs.S3FileSystem):  # type: ignore[misc]
        async def set_session(self, refresh: bool = False, kwargs: dict[str, Any] = {}) -> Any:  # noqa: B006 (s3fs's signature)
            client = await super().set_session(refresh=refresh, kwargs=kwargs)
            if getattr(self, "_improv_noted", None) is not client:
                client.meta.events.register("needs-retry.s3", _RetryNotes.failed)
                client.meta.events.register("request-created.s3", _RetryNotes.created)
                self._improv_noted = client
            return client

    return RetryNotingS3FileSystem
