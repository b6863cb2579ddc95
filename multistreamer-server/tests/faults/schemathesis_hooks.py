"""Hooks of the API fuzzing run (SCHEMATHESIS_HOOKS=schemathesis_hooks): a WHIP offer
(application/sdp) is text, sent the way schemathesis sends text/plain."""

import schemathesis

schemathesis.serializer.alias("application/sdp", "text/plain")
