"""Tools the model can call during a call: the configured kinds and the per-call runner.

Public surface::

    tool = HttpTool(HttpToolSpec(name="lookup", url="https://...", hmac_key="..."), client)
    toolbox = Toolbox([tool], max_in_flight=4)      # shared by every call (CallDeps.tools)
    async with anyio.create_task_group() as tg:     # owned by the call's SonicSession
        runner = ToolRunner(toolbox, tg, answer=conv.send_tool_result, record=journal.record_tool_call)
        await runner.submit(tool_use_id, name, input_json)   # never blocks on the tool

See :mod:`actors.tools.core` (results, structured errors, signing), :mod:`actors.tools.http` (the
``http`` kind), :mod:`actors.tools.builtin` (``end_call``, ``transfer_call``) and
:mod:`actors.tools.runner` (concurrency, bounds, logging).
"""

from __future__ import annotations

from actors.tools.builtin import EndCallTool, TransferCallTool
from actors.tools.core import (
    SIGNATURE_HEADER,
    CallAction,
    EndCall,
    Tool,
    Toolbox,
    ToolOutcome,
    ToolResult,
    TransferCall,
    error_result,
    sign_body,
    signature_header_value,
    verify_signature,
)
from actors.tools.http import MAX_RESPONSE_BYTES, HttpTool, HttpToolSpec
from actors.tools.runner import ToolCall, ToolRunner

__all__ = [
    "MAX_RESPONSE_BYTES",
    "SIGNATURE_HEADER",
    "CallAction",
    "EndCall",
    "EndCallTool",
    "HttpTool",
    "HttpToolSpec",
    "Tool",
    "ToolCall",
    "ToolOutcome",
    "ToolResult",
    "ToolRunner",
    "Toolbox",
    "TransferCall",
    "TransferCallTool",
    "error_result",
    "sign_body",
    "signature_header_value",
    "verify_signature",
]
