"""The providers' contracts, checked against what crosses the lab's HTTP servers.

DigitalOcean: every recorded exchange is validated against `contracts/digitalocean/
openapi.json` (DigitalOcean's OpenAPI description, the operations Phoenix uses, with closed
objects): the request's path, query and body, and the answer's status, declared headers and
body. Cloudflare: its SDK's models accept unknown fields, so a result is checked field by
field against the model the SDK parses it into (nothing unknown, nothing required missing),
and error envelopes against Cloudflare's documented shape.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import pydantic
from cloudflare.types.dns import RecordDeleteResponse, RecordResponse
from cloudflare.types.user import TokenVerifyResponse
from cloudflare.types.zones import Zone
from openapi_schema_validator import OAS30Validator
from openapi_schema_validator._format import oas30_format_checker

from phoenix.lab.cloudflare import api as cfapi
from phoenix.lab.httpd import Exchange

DO_SPEC = Path(__file__).resolve().parents[1] / "contracts" / "digitalocean" / "openapi.json"
GITEA_SPEC = Path(__file__).resolve().parents[1] / "contracts" / "gitea" / "api.json"


class DOContract:
    def __init__(self, spec: Path = DO_SPEC) -> None:
        self.spec = json.loads(spec.read_text())
        self.operations = []
        for template, methods in self.spec["paths"].items():
            pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?$")
            for method, op in methods.items():
                self.operations.append((method.upper(), pattern, template, op))

    def _schema_errors(self, schema: dict, value: Any, where: str) -> list[str]:
        validator = OAS30Validator(schema, format_checker=oas30_format_checker)
        return [f"{where}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {_why(e)}"
                for e in validator.iter_errors(value)]

    def check(self, ex: Exchange) -> list[str]:
        """What in `ex` breaks the contract (an empty list: nothing)."""
        where = f"{ex.method} {ex.path} -> {ex.status}"
        for method, pattern, template, op in self.operations:
            match = pattern.match(ex.path)
            if match and method == ex.method:
                break
        else:
            return [f"{where}: not an operation of the contract"]
        problems: list[str] = []
        params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
        for name, value in match.groupdict().items():
            schema = params[("path", name)]["schema"]
            if schema.get("type") == "integer":
                value = int(value) if value.isdigit() else value
            problems += self._schema_errors(schema, value, f"{where}: path {name}")
        for name, values in ex.query.items():
            param = params.get(("query", name))
            if param is None:
                problems.append(f"{where}: query parameter {name!r} is not in the contract")
                continue
            value: Any = values[0]
            if param["schema"].get("type") == "integer" and value.lstrip("-").isdigit():
                value = int(value)
            problems += self._schema_errors(param["schema"], value, f"{where}: query {name}")
        for (kind, name), param in params.items():
            if kind == "query" and param.get("required") and name not in ex.query:
                problems.append(f"{where}: required query parameter {name!r} missing")
        request_body = op.get("requestBody")
        if request_body is None and ex.body is not None:
            problems.append(f"{where}: a request body where the contract has none")
        elif request_body is not None:
            if ex.body is None:
                if request_body.get("required"):
                    problems.append(f"{where}: the request body is missing")
            else:
                schema = request_body["content"]["application/json"]["schema"]
                problems += self._schema_errors(schema, ex.body, f"{where}: request")
        response = op["responses"].get(str(ex.status)) or op["responses"].get("default")
        if response is None:
            return problems + [f"{where}: status {ex.status} is not in the contract"]
        headers = {k.lower(): v for k, v in ex.headers.items()}
        for name, header in (response.get("headers") or {}).items():
            if name.lower() not in headers:  # declared headers are required here (tightened)
                problems.append(f"{where}: header {name} missing")
                continue
            value = headers[name.lower()]
            if header["schema"].get("type") == "integer":
                value = int(value) if value.isdigit() else value
            problems += self._schema_errors(header["schema"], value, f"{where}: header {name}")
        content = response.get("content")
        if not content:
            if ex.answer is not None:
                problems.append(f"{where}: a body where the contract has none")
        elif ex.answer is None:
            problems.append(f"{where}: the body is missing")
        else:
            schema = content["application/json"]["schema"]
            problems += self._schema_errors(schema, ex.answer, f"{where}: answer")
        return problems


class GiteaContract:
    """Gitea 1.22's API subset (contracts/gitea/api.json): an exchange's route, query
    parameters, JSON request body, status and JSON answer."""

    def __init__(self, spec: Path = GITEA_SPEC) -> None:
        self.spec = json.loads(spec.read_text())
        self.operations = []
        for key, op in self.spec["operations"].items():
            method, template = key.split(" ", 1)
            pattern = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+?)",
                                              re.escape(template)) + "/?$")
            self.operations.append((method, pattern, key, op))

    def _errors(self, name: str, value: Any, where: str) -> list[str]:
        schema = {"$ref": f"#/schemas/{name}", "schemas": self.spec["schemas"]}
        validator = OAS30Validator(schema, format_checker=oas30_format_checker)
        return [f"{where}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {_why(e)}"
                for e in validator.iter_errors(value)]

    def check(self, method: str, path: str, query: dict, body: Any, status: int,
              answer: Any) -> list[str]:
        where = f"{method} {path} -> {status}"
        for op_method, pattern, key, op in self.operations:
            if op_method == method and pattern.match(path):
                break
        else:
            return [f"{where}: not an operation of the contract"]
        problems = [f"{where}: query parameter {name!r} is not in the contract"
                    for name in query if name not in op.get("query", [])]
        if op.get("body") and body is not None:
            problems += self._errors(op["body"], body, f"{where}: request")
        elif not op.get("body") and body is not None and not (op.get("multipart")
                                                              or op.get("raw")):
            problems.append(f"{where}: a request body where the contract has none")
        if str(status) not in op["responses"]:
            return problems + [f"{where}: status {status} is not in the contract ({key})"]
        answer_schema = op["responses"][str(status)]
        if op.get("raw"):
            pass  # a file's bytes (attachment, avatar, LFS object): compared by sha256 elsewhere
        elif answer_schema is None:
            if answer not in (None, b"", ""):
                problems.append(f"{where}: a body where the contract has none")
        else:
            problems += self._errors(answer_schema, answer, f"{where}: answer")
        return problems


def _why(error) -> str:
    """The message, with the reasons of each branch when a oneOf/anyOf failed."""
    if not error.context:
        return error.message
    reasons = sorted({_why(sub) for sub in error.context})
    return f"{error.validator} failed: " + " | ".join(reasons)


# -- Cloudflare ------------------------------------------------------------------------------

def model_problems(model: type[pydantic.BaseModel], data: Any, where: str) -> list[str]:
    """Fields of `data` that `model` (and its nested models) does not declare, and fields
    it requires that are missing. The SDK's models accept both silently."""
    if not isinstance(data, dict):
        return [f"{where}: expected an object for {model.__name__}, got {type(data).__name__}"]
    problems = []
    declared = {(info.alias or name): (name, info) for name, info in model.model_fields.items()}
    for key in data:
        if key not in declared:
            problems.append(f"{where}.{key}: not a field of {model.__module__}.{model.__name__}")
    for key, (name, info) in declared.items():
        if info.is_required() and key not in data:
            problems.append(f"{where}.{key}: required by {model.__name__}, missing")
        if key in data and data[key] is not None:
            for nested in _models_in(info.annotation):
                items = data[key] if isinstance(data[key], list) else [data[key]]
                for i, item in enumerate(items):
                    problems += model_problems(nested, item, f"{where}.{key}[{i}]"
                                               if isinstance(data[key], list) else
                                               f"{where}.{key}")
                break
    return problems


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """The pydantic models an annotation names (Optional[X], List[X], Union[...])."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def cf_envelope_problems(body: Any, status: int, where: str) -> list[str]:
    """Cloudflare's v4 envelope: {success, errors, messages, result}; an error lists
    {code (int >= 1000), message} objects and success is false (api.cloudflare.com's
    `api-response-common-failure`). The one exception: a rate-limited request gets code 971,
    below the documented minimum, as Cloudflare is reported to send (the lab keeps it)."""
    if not isinstance(body, dict):
        return [f"{where}: the body is not a JSON object"]
    problems = [f"{where}: {key} missing" for key in ("success", "errors", "messages")
                if key not in body]
    known = {"success", "errors", "messages", "result", "result_info"}
    problems += [f"{where}: {key}: not a field of the envelope" for key in body
                 if key not in known]
    if status >= 400:
        if body.get("success") is not False:
            problems.append(f"{where}: an error answer without success: false")
        errors = body.get("errors")
        if not isinstance(errors, list) or not errors:
            problems.append(f"{where}: an error answer with no errors listed")
        for error in errors or []:
            if not isinstance(error, dict) or not isinstance(error.get("code"), int) or \
                    error["code"] < 1000 and (status, error["code"]) != (429, 971) or \
                    not isinstance(error.get("message"), str):
                problems.append(f"{where}: error {error!r} is not {{code >= 1000, message}}")
            elif set(error) - {"code", "message", "documentation_url", "source"}:
                problems.append(f"{where}: error {error!r} has fields Cloudflare's has not")
        if body.get("result") is not None:
            problems.append(f"{where}: an error answer with a result")
    elif body.get("success") is not True:
        problems.append(f"{where}: a {status} answer without success: true")
    return problems


def record_model(data: dict) -> type:
    for model in RecordResponse.__args__:
        annotation = model.model_fields["type"].annotation
        if data.get("type") in getattr(annotation, "__args__", ()):
            return model
    raise AssertionError(f"no SDK record model for type {data.get('type')!r}")


def cf_problems(exchanges: list[Exchange]) -> list[str]:
    """What in the Cloudflare exchanges breaks the envelope or the SDK's models."""
    problems = []
    for ex in exchanges:
        where = f"{ex.method} {ex.path} -> {ex.status}"
        problems += cf_envelope_problems(ex.answer, ex.status, where)
        result = ex.answer.get("result") if isinstance(ex.answer, dict) else None
        if ex.status >= 400 or result is None:
            continue
        path = ex.path.removeprefix(cfapi.BASE)
        items = result if isinstance(result, list) else [result]
        for i, item in enumerate(items):
            if path == "/user/tokens/verify":
                model = TokenVerifyResponse
            elif path.startswith("/zones") and "/dns_records" not in path:
                model = Zone
            elif ex.method == "DELETE":
                model = RecordDeleteResponse
            else:
                model = record_model(item)
            problems += model_problems(model, item, f"{where} result[{i}]")
    return problems
