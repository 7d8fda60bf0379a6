"""The request contract of the serving endpoints, checked before any work is done.

Every endpoint takes KServe V1 JSON, `{"instances": [...]}`; `recommender` also
takes V2 (Open Inference Protocol) tensors. Anything malformed raises
`kserve.errors.InvalidInput`, which the KServe front answers with HTTP 400 and
the reason. A reason names the bad field the way a client would write it, for
example `instances[2].filters.category[0]: Input should be a valid string`.

IDs are strings (the data contract keeps them verbatim); a JSON integer is
accepted as an id and read as its decimal string, because clients that hold
MovieLens-style numeric ids send them as numbers. Counts are strict integers:
`"10"`, `10.0` and `true` are not a `k`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import orjson
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

MAX_K = 100  # items per answer
MAX_INSTANCES = 64  # instances per request
MAX_IDS = 1000  # exclude_ids, ranker candidates
MAX_SESSION_ITEMS = 50
MAX_CONTEXT_KEYS = 32
MAX_ID_LENGTH = 256
SHOWN_ERRORS = 5  # a reason lists at most this many problems


def _integer_as_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


# The constraint first, so that the integer-to-string step runs before it.
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, strict=True),
               BeforeValidator(_integer_as_id)]
Count = Annotated[int, Field(ge=1, le=MAX_K, strict=True)]
Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Filters(_Strict):
    """Attribute filters: `category` keeps items in any of the listed categories;
    `available` false also admits items marked unavailable (default: available only)."""

    category: list[Id] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    available: bool | None = Field(default=None, strict=True)


class RecommendRequest(_Strict):
    user_id: Id
    k: Count = 10
    exclude_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS)
    filters: Filters = Filters()  # frozen: sharing it is safe
    context: dict[str, Scalar] = Field(default_factory=dict, max_length=MAX_CONTEXT_KEYS)
    session_items: list[Id] = Field(default_factory=list, max_length=MAX_SESSION_ITEMS)


class SimilarItemsRequest(_Strict):
    item_id: Id
    k: Count = 10
    exclude_ids: list[Id] = Field(default_factory=list, max_length=MAX_IDS)
    filters: Filters = Filters()  # frozen: sharing it is safe


class RankRequest(_Strict):
    user_id: Id
    candidates: list[Id] = Field(min_length=1, max_length=MAX_IDS)
    context: dict[str, Scalar] = Field(default_factory=dict, max_length=MAX_CONTEXT_KEYS)


Request = TypeVar("Request", bound=BaseModel)


def _path(prefix: str, loc: Sequence[int | str]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _reason(error: ValidationError, prefix: str) -> str:
    problems = [f"{_path(prefix, e['loc']).lstrip('.') or 'body'}: {e['msg']}"
                for e in error.errors()]
    more = len(problems) - SHOWN_ERRORS
    return "; ".join(problems[:SHOWN_ERRORS]) + (f"; and {more} more" if more > 0 else "")


def _json(body: Any) -> Any:
    """A V1 body as KServe hands it over: parsed already (a dict) or raw bytes when the
    client sent no JSON content type. orjson, as KServe parses: it refuses text that is
    not Unicode (a lone surrogate such as \\ud800), which no store downstream can hold."""
    if isinstance(body, bytes | bytearray | str):
        return parse_json(body)
    return body


def parse_json(body: bytes | bytearray | str, what: str = "body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


def parse_v1(body: Any, model: type[Request]) -> list[Request]:
    """`{"instances": [...]}` into validated requests, or InvalidInput saying why not."""
    body = _json(body)
    if not isinstance(body, dict) or "instances" not in body:
        raise InvalidInput('expected a JSON object {"instances": [...]}')
    extra = sorted(str(key) for key in body if key != "instances")
    if extra:
        raise InvalidInput(f"unknown top-level field(s) {', '.join(extra)}; "
                           'expected only "instances"')
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("instances: expected a non-empty list")
    if len(instances) > MAX_INSTANCES:
        raise InvalidInput(f"instances: at most {MAX_INSTANCES} per request, "
                           f"got {len(instances)}")
    parsed = []
    for n, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise InvalidInput(f"instances[{n}]: expected an object, "
                               f"got {type(instance).__name__}")
        try:
            parsed.append(model.model_validate(instance))
        except ValidationError as exc:
            raise InvalidInput(_reason(exc, f"instances[{n}]")) from None
    return parsed


V2_USER_ID, V2_K = "user_id", "k"
V2_INTEGER_TYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")


def _v2_values(tensor: InferInput) -> list[Any]:
    """A 1-D tensor's elements (shape [n] or [n, 1]), as a list."""
    shape = list(tensor.shape)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise InvalidInput(f"input {tensor.name}: shape must be [n] or [n, 1], got {shape}")
    try:
        values = tensor.as_numpy().reshape(-1).tolist()
    except Exception as exc:  # kserve raises several types for data/shape mismatches
        raise InvalidInput(f"input {tensor.name}: {exc}") from None
    if len(values) != shape[0]:
        raise InvalidInput(f"input {tensor.name}: shape {shape} but {len(values)} values")
    return values


def parse_v2_recommend(request: InferRequest) -> list[RecommendRequest]:
    """V2 `recommender` inputs: `user_id` (BYTES, [n]) and optionally `k` (an integer
    type, [n] or [1] for all). Other request fields use their V1 defaults."""
    inputs = {tensor.name: tensor for tensor in request.inputs}
    unknown = sorted(set(inputs) - {V2_USER_ID, V2_K})
    if unknown:
        raise InvalidInput(f"unknown input(s) {', '.join(unknown)}; expected "
                           f"{V2_USER_ID} (BYTES) and optionally {V2_K} (INT32)")
    if V2_USER_ID not in inputs:
        raise InvalidInput(f"missing input {V2_USER_ID} (BYTES, shape [n])")
    users = inputs[V2_USER_ID]
    if users.datatype != "BYTES":
        raise InvalidInput(f"input {V2_USER_ID}: datatype must be BYTES, got {users.datatype}")
    ids = []
    for value in _v2_values(users):
        if isinstance(value, bytes):
            try:
                value = value.decode()
            except UnicodeDecodeError:
                raise InvalidInput(f"input {V2_USER_ID}: ids must be UTF-8") from None
        ids.append(value)
    if not ids or len(ids) > MAX_INSTANCES:
        raise InvalidInput(f"input {V2_USER_ID}: 1 to {MAX_INSTANCES} ids, got {len(ids)}")
    ks: list[Any] = [10] * len(ids)
    if V2_K in inputs:
        k = inputs[V2_K]
        if k.datatype not in V2_INTEGER_TYPES:
            raise InvalidInput(f"input {V2_K}: datatype must be an integer type such as "
                               f"INT32, got {k.datatype}")
        values = _v2_values(k)
        if len(values) not in (1, len(ids)):
            raise InvalidInput(f"input {V2_K}: {len(values)} values for {len(ids)} users; "
                               "give one for all or one per user")
        ks = values * len(ids) if len(values) == 1 else values
    out = []
    for n, (user_id, k_value) in enumerate(zip(ids, ks, strict=True)):
        try:
            out.append(RecommendRequest.model_validate({"user_id": user_id, "k": k_value}))
        except ValidationError as exc:  # named by input tensor and element: k[3]
            raise InvalidInput("; ".join(f"{e['loc'][0]}[{n}]: {e['msg']}"
                                         for e in exc.errors()[:SHOWN_ERRORS])) from None
    return out


class _BinaryInput(BaseModel):
    """An input of a binary-extension request's JSON header: `data` inline, or
    `parameters.binary_data_size` bytes of the body after the header."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class _BinaryHeader(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_BinaryInput]
    outputs: list[dict[str, Any]] | None = None


def decode_v2(body: bytes, headers: Mapping[str, str], model_name: str) -> InferRequest:
    """A V2 infer body into KServe's InferRequest, or InvalidInput saying why not.

    JSON whatever the content type says (tritonclient's JSON mode sends none), or
    the binary tensor extension when `Inference-Header-Content-Length` is given: a
    JSON header of that many bytes, then each input's `binary_data_size` bytes, which
    must add up to the rest of the body."""
    declared = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
    if declared is None:
        request = _validated(InferenceRequest, parse_json(body))
        return _kserve_parse(lambda: InferRequest.from_inference_request(request, model_name))
    if not declared.isdigit() or int(declared) > len(body):
        raise InvalidInput(f"{INFERENCE_CONTENT_LENGTH_HEADER}: expected the length of the "
                           f"JSON header, 0 to {len(body)} bytes, got {declared!r}")
    length = int(declared)
    header = _validated(_BinaryHeader, parse_json(body[:length], "the JSON header"))
    declared_bytes = 0
    for n, tensor in enumerate(header.inputs):
        if tensor.data is not None:  # inline: no bytes of its own after the header
            continue
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            raise InvalidInput(f"inputs[{n}] ({tensor.name}): neither data nor "
                               "parameters.binary_data_size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"inputs[{n}].parameters.binary_data_size: expected a "
                               f"number of bytes, got {size!r}")
        declared_bytes += size
    if declared_bytes != len(body) - length:
        raise InvalidInput(f"binary data: the inputs declare {declared_bytes} bytes "
                           f"(binary_data_size), the body holds {len(body) - length} "
                           "after the JSON header")
    return _kserve_parse(lambda: InferRequest.from_bytes(body, length, model_name))


def _validated(model: type[Request], raw: Any) -> Request:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(_reason(exc, "")) from None


def _kserve_parse(parse: Callable[[], InferRequest]) -> InferRequest:
    """KServe's own tensor decoding, whose errors on a client's bytes (struct.error,
    ValueError from numpy on a short BYTES element) are the client's: a 400."""
    try:
        return parse()
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput(f"tensor data: {exc}") from None
