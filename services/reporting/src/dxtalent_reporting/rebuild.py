"""How `dxtalent rebuild reporting` rebuilds the read models (decision 0220).

The source is all of `DX_EVENTS` from its first message, through the live consumer's parser
and handler. The whole schema is the projection: every table the read-model migrations create
(whatever they add later), the inbox and the checkpoint; so the swap renames schemas.
"""

from __future__ import annotations

from dxtalent_infra.delivery import Handler
from dxtalent_infra.rebuild import RebuildContext, RebuildSpec
from dxtalent_reporting.service import SPEC, read_model_handler


def _handler(ctx: RebuildContext) -> Handler:
    return read_model_handler(ctx.schema)


REBUILD = RebuildSpec(service=SPEC, handler=_handler)
