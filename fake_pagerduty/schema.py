"""What PagerDuty's Events API v2 refuses, as plain checks on one decoded event.

``problems(body)`` returns one human-readable string per problem (empty when the event is valid); the
server answers them as the ``errors`` of a 400. Pure: no I/O, no state, so tests and the bot's own
sender can call it directly.

Sources: PagerDuty's "Send an Alert Event" page and the Events API v2 OpenAPI document
(PagerDuty/developer-docs, PagerDuty/api-schema). Where those are silent the fake refuses, because a
fake that accepts what PagerDuty refuses hides bugs; each such choice is marked "strict" below. Error
strings follow the wording real 400s are reported with ("Length of 'routing_key' is incorrect (should
be 32 characters)", "'payload.severity' is missing or blank") so logs read the same in both places.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ROUTING_KEY_LENGTH = 32
DEDUP_KEY_MAX = 255
SUMMARY_MAX = 1024
# "Events API payloads are limited to 512 KB"; read as 512,000 bytes, the smaller of the two readings.
MAX_BODY_BYTES = 512_000

TOP_LEVEL_KEYS = frozenset({"routing_key", "event_action", "dedup_key", "payload", "client", "client_url",
                            "links", "images"})
PAYLOAD_KEYS = frozenset({"summary", "source", "severity", "timestamp", "component", "group", "class",
                          "custom_details"})
LINK_KEYS = frozenset({"href", "text"})
IMAGE_KEYS = frozenset({"src", "href", "alt"})


def problems(body: Any) -> list[str]:
    """Everything PagerDuty would refuse in this event, one string each; ``[]`` when it is valid."""
    if not isinstance(body, dict):
        return ["Event object must be a JSON object"]
    found: list[str] = []
    # Strict: the docs neither allow nor forbid other keys. Refusing them catches v1 leftovers
    # (service_key, event_type, incident_key, description) and typos that PagerDuty may drop silently.
    found += [f"'{key}' is not a property of an Events API v2 event" for key in sorted(set(body) - TOP_LEVEL_KEYS)]
    found += _routing_key(body.get("routing_key"))
    action = body.get("event_action")
    found += _event_action(action)
    found += _dedup_key(body, required=action in ("acknowledge", "resolve"))
    if action == "trigger" or "payload" in body:
        found += _payload(body.get("payload"), required=action == "trigger")
    found += _optional_string(body, "client")
    found += _optional_url(body, "client_url")
    found += _objects(body, "links", LINK_KEYS, required=("href",), urls=("href",))
    found += _objects(body, "images", IMAGE_KEYS, required=("src",), urls=("href",), https=("src",))
    return found


def _routing_key(key: Any) -> list[str]:
    if key is None or key == "":
        return ["'routing_key' is missing or blank"]
    if not isinstance(key, str):
        return ["'routing_key' must be a string"]
    found = []
    if len(key) != ROUTING_KEY_LENGTH:
        found.append(f"Length of 'routing_key' is incorrect (should be {ROUTING_KEY_LENGTH} characters)")
    if not (key.isascii() and key.isalnum()):
        found.append("'routing_key' cannot contain non-alphanumeric characters")
    return found


def _event_action(action: Any) -> list[str]:
    if action is None or action == "":
        return ["'event_action' is missing or blank"]
    if action not in EVENT_ACTIONS:
        return [f"'event_action' must be one of {', '.join(EVENT_ACTIONS)} (got {action!r})"]
    return []


def _dedup_key(body: dict, *, required: bool) -> list[str]:
    if "dedup_key" not in body:
        return ["'dedup_key' is missing or blank (required to acknowledge or resolve)"] if required else []
    key = body["dedup_key"]
    if not isinstance(key, str):
        return ["'dedup_key' must be a string"]
    if not key.strip():
        # Strict for triggers too: a blank key is a bug; leave the key out to have PagerDuty make one.
        return ["'dedup_key' is missing or blank"]
    if len(key) > DEDUP_KEY_MAX:
        return [f"'dedup_key' is too long (maximum is {DEDUP_KEY_MAX} characters, got {len(key)})"]
    return []


def _payload(payload: Any, *, required: bool) -> list[str]:
    if payload is None:
        return ["'payload' is missing (required to trigger)"] if required else []
    if not isinstance(payload, dict):
        return ["'payload' must be an object"]
    if not required:
        return []  # acknowledge and resolve ignore the payload; PagerDuty only reads it on triggers
    # Strict: anything else belongs in payload.custom_details, where PagerDuty shows it.
    found = [f"'payload.{key}' is not a property of the payload (put extra fields in 'payload.custom_details')"
             for key in sorted(set(payload) - PAYLOAD_KEYS)]
    found += _required_string(payload, "summary", max_length=SUMMARY_MAX)
    found += _required_string(payload, "source")
    severity = payload.get("severity")
    if severity is None or severity == "":
        found.append("'payload.severity' is missing or blank")
    elif severity not in SEVERITIES:
        found.append(f"'payload.severity' must be one of {', '.join(SEVERITIES)} (got {severity!r})")
    found += _timestamp(payload.get("timestamp"))
    for name in ("component", "group", "class"):
        found += _optional_string(payload, name, prefix="payload.")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        found.append("'payload.custom_details' must be an object")
    return found


def _required_string(payload: dict, name: str, max_length: int | None = None) -> list[str]:
    value = payload.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return [f"'payload.{name}' is missing or blank"]
    if not isinstance(value, str):
        return [f"'payload.{name}' must be a string"]
    if max_length is not None and len(value) > max_length:
        return [f"'payload.{name}' is too long (maximum is {max_length} characters, got {len(value)})"]
    return []


def _timestamp(value: Any) -> list[str]:
    if value is None:
        return []  # PagerDuty stamps the event itself
    if not isinstance(value, str):
        return ["'payload.timestamp' must be an ISO 8601 string"]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return [f"'payload.timestamp' is not a valid ISO 8601 date-time (got {value!r})"]
    # Strict: the schema says "date-time", and a time without an offset means a different moment
    # depending on where it is read.
    if parsed.utcoffset() is None:
        return [(f"'payload.timestamp' must be a date-time with a UTC offset, e.g. 2015-07-17T08:42:58.315+0000 "
                 f"(got {value!r})")]
    return []


def _optional_string(obj: dict, name: str, prefix: str = "") -> list[str]:
    if name in obj and not isinstance(obj[name], str):
        return [f"'{prefix}{name}' must be a string"]
    return []


def _is_url(value: str, *, https: bool = False) -> bool:
    parts = urlsplit(value)
    schemes = ("https",) if https else ("http", "https")
    return parts.scheme in schemes and bool(parts.netloc)


def _optional_url(obj: dict, name: str) -> list[str]:
    if name not in obj:
        return []
    value = obj[name]
    if not isinstance(value, str):
        return [f"'{name}' must be a string"]
    if not _is_url(value):
        return [f"'{name}' must be an absolute http(s) URL (got {value!r})"]
    return []


def _objects(body: dict, name: str, allowed: frozenset[str], *, required: tuple[str, ...],
             urls: tuple[str, ...] = (), https: tuple[str, ...] = ()) -> list[str]:
    """Checks ``links`` or ``images``: a list of objects with these required keys and URL-valued keys."""
    if name not in body:
        return []
    items = body[name]
    if not isinstance(items, list):
        return [f"'{name}' must be an array of objects"]
    found: list[str] = []
    for index, item in enumerate(items):
        where = f"{name}[{index}]"
        if not isinstance(item, dict):
            found.append(f"'{where}' must be an object")
            continue
        found += [f"'{where}.{key}' is not a property of {name} entries" for key in sorted(set(item) - allowed)]
        for key in required:
            if item.get(key) in (None, ""):
                found.append(f"'{where}.{key}' is missing or blank")
        for key in sorted(set(item) & allowed):
            value = item[key]
            if not isinstance(value, str):
                found.append(f"'{where}.{key}' must be a string")
            elif key in https and value and not _is_url(value, https=True):
                found.append(f"'{where}.{key}' must be an https URL: PagerDuty only shows images served via HTTPS")
            elif key in urls and value and not _is_url(value):
                found.append(f"'{where}.{key}' must be an absolute http(s) URL (got {value!r})")
    return found
