"""A client of the Confluent-compatible schema registry API over plain HTTP (Apicurio's /apis/ccompat/v7 here,
Confluent Schema Registry alike). The Avro readers' cached writer-schema resolver is ctxsync/io/avro.py's.

Subjects follow TopicNameStrategy (`<topic>-value`). Compatibility is the registry's own verdict (its check
endpoint): this module never re-implements Avro's rules, it only turns the registry's answer into lines.
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from ctxsync.errors import RuntimeFailure, UsageError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
DEFAULT_LEVEL = "BACKWARD"
LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")


class RegistryError(RuntimeFailure):
    """The registry is unreachable or answered with an error that is not about the request's schema."""


class RegistryNotFound(RegistryError):
    """404: no such subject, version or schema id."""


class Incompatible(RuntimeFailure):
    """The registry refused a schema: one problem per entry of `problems`."""

    def __init__(self, subject: str, problems: list[str]) -> None:
        super().__init__(f"{subject}: the schema is not compatible ({len(problems)} problem(s))")
        self.problems = problems


def subject_for(topic: str) -> str:
    """TopicNameStrategy: the value schema of `topic`."""
    return f"{topic}-value"


def problems_of(answer: dict[str, Any]) -> list[str]:
    """The registry's reasons, one per line (sorted: the registry's order varies): Confluent's verbose
    `messages`, or Apicurio's `reason`/`message` whose `Causes:` part lists one `<field> at <path>` per problem."""
    messages = answer.get("messages")
    if isinstance(messages, list) and messages:
        return sorted(str(m) for m in messages)
    text = str(answer.get("reason") or answer.get("message") or "").strip()
    causes = re.search(r"Causes: (.*)$", text, re.S)
    if causes:
        return sorted(c.strip() for c in re.split(r", (?=[^,]+ at /)", causes.group(1)) if c.strip())
    return [text] if text else ["the registry gave no reason"]


@dataclass
class SchemaRegistry:
    """The registry at `url` (e.g. http://127.0.0.1:8081/apis/ccompat/v7)."""

    url: str
    timeout_s: float = 10.0

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, subject: str = "") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method,
                                         headers={"Content-Type": CONTENT_TYPE, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                answer = json.loads(exc.read() or b"{}")
            except ValueError:
                answer = {}
            if exc.code == 409:
                raise Incompatible(subject, problems_of(answer)) from None
            message = answer.get("message") or exc.reason
            if exc.code == 404:
                raise RegistryNotFound(f"schema registry: {message}") from None
            if exc.code == 422:
                raise UsageError(f"schema registry refused the schema: {message}") from None
            raise RegistryError(f"schema registry answered {exc.code} to {method} {path}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(f"schema registry at {self.url} is not reachable: {reason}",
                                "start it with `ctxsync dev up --with registry`, or check the URL") from None

    @staticmethod
    def _quote(subject: str) -> str:
        return urllib.parse.quote(subject, safe="")

    def subjects(self) -> list[str]:
        return sorted(self._call("GET", "/subjects"))

    def versions(self, subject: str) -> list[int]:
        """The subject's version numbers, [] for a subject with none."""
        try:
            return sorted(self._call("GET", f"/subjects/{self._quote(subject)}/versions"))
        except RegistryNotFound:
            return []

    def version(self, subject: str, version: int | str = "latest") -> dict[str, Any]:
        """{subject, version, id, schema} of one version."""
        return self._call("GET", f"/subjects/{self._quote(subject)}/versions/{version}")

    def register(self, subject: str, schema: str, schema_type: str = "AVRO") -> int:
        """The id of `schema` (AVRO or JSON) under `subject`, registering it as a new version if it is not one
        already; Incompatible (with the registry's reasons) when the subject's compatibility level refuses it."""
        answer = self._call("POST", f"/subjects/{self._quote(subject)}/versions",
                            {"schema": schema, "schemaType": schema_type}, subject)
        return int(answer["id"])

    def check(self, subject: str, schema: str, schema_type: str = "AVRO") -> list[str]:
        """The registry's problems with `schema` as the subject's next version ([] = compatible; a subject
        with no version yet accepts anything)."""
        if not self.versions(subject):
            return []
        answer = self._call("POST", f"/compatibility/subjects/{self._quote(subject)}/versions/latest?verbose=true",
                            {"schema": schema, "schemaType": schema_type})
        return [] if answer.get("is_compatible") else problems_of(answer)

    def compatibility(self, subject: str | None = None) -> str:
        """The level the registry applies to `subject`: its own, else the global one. Confluent answers 404 for
        a subject without a level of its own, Apicurio answers NONE: both mean the global level applies (an
        Apicurio subject set to NONE explicitly reads as the global level too)."""
        if subject is not None:
            try:
                level = _level(self._call("GET", f"/config/{self._quote(subject)}"))
                if level != "NONE":
                    return level
            except RegistryNotFound:
                pass
        return _level(self._call("GET", "/config"))

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        if level not in LEVELS:
            raise UsageError(f"unknown compatibility level {level!r}", f"one of {', '.join(LEVELS)}")
        path = "/config" if subject is None else f"/config/{self._quote(subject)}"
        self._call("PUT", path, {"compatibility": level})

    def schema(self, schema_id: int) -> str:
        """The schema text of a global id (RegistryNotFound if the registry has no such id)."""
        return str(self._call("GET", f"/schemas/ids/{int(schema_id)}")["schema"])


def _level(answer: dict[str, Any]) -> str:
    return str(answer.get("compatibilityLevel") or answer.get("compatibility") or "NONE")


def ensure_default_compatibility(url: str) -> None:
    """A registry whose global level is NONE (Apicurio's answer when none was stored) gets BACKWARD, the
    level `ctxsync schema` documents and Confluent's registry defaults to."""
    registry = SchemaRegistry(url)
    if registry.compatibility() == "NONE":
        registry.set_compatibility(DEFAULT_LEVEL)
