"""Small validation helpers shared by the schema modules: each raises ValueError("key: message")."""

from __future__ import annotations

EVENT_TYPES = ("play", "thumb_up", "thumb_down", "add_to_list", "trailer", "autoplay_preview")


def require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{key}: {message}")


def choice(value: str, key: str, choices: tuple[str, ...]) -> None:
    require(value in choices, key, f"got {value!r}, expected one of {', '.join(choices)}")
