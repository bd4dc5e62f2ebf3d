"""Model loading. bitsandbytes logs a harmless message at import on some CPUs: the filter for it
(and the project's other known-harmless messages) goes in before any module here imports it."""

from lit_verbrec.config.console import quiet_known_warnings

quiet_known_warnings()
