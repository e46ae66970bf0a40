"""``conceptseg mcp``: the LLM tools as a Model Context Protocol server over stdio (the official
``mcp`` SDK 2.x, :class:`mcp.server.MCPServer`).

The tools are registered from :mod:`.tool_schema` (their published input and output schemas
are those dictionaries, nothing derived from Python signatures) and each call:

1. has its arguments checked against that input schema (JSON-encoded arrays/objects, which
   some clients send as strings, are decoded first);
2. runs :class:`~.tool_engine.ToolEngine` in a worker thread under the time budget;
3. answers with the result as structured content plus the same JSON as text, or, for any
   :class:`~conceptseg.errors.ConceptSegError` or a spent budget, the SDK's tool error
   (``is_error`` with a one-line message the model can act on). Anything else is a bug: the
   SDK logs its traceback to stderr and the model sees only "Error executing tool <name>".

stdout carries the protocol: nothing in this process may print to it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio
import anyio.to_thread
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import ConfigDict

from .. import __version__
from ..errors import ConceptSegError
from .tool_engine import Deadline, ToolEngine
from .tool_schema import TOOLS

INSTRUCTIONS = ("conceptseg finds every instance of a visual concept (a short noun phrase) in "
                "an image: call segment_concepts with an image and phrases; refine one "
                "instance with refine_instance. Coordinates are pixels of the original image, "
                "boxes [x0, y0, x1, y1]. Reuse image.id from an answer to avoid resending "
                "the image.")


class _Arguments(ArgModelBase):
    """Takes the arguments as they come: :func:`_check` validates them against the schema of
    :mod:`.tool_schema`, so the SDK must not build (and enforce) a second one."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.model_extra or {})}


def _check(arguments: dict, schema: dict, validator: Draft202012Validator) -> dict:
    """Arguments decoded and validated against the input schema, or a ToolError naming the
    first problem."""
    args = dict(arguments)
    for key, value in arguments.items():
        kind = schema["properties"].get(key, {}).get("type")
        if isinstance(value, str) and kind in ("array", "object"):
            try:
                args[key] = json.loads(value)
            except ValueError:
                pass  # left as is: validation names the type error
    error = best_match(validator.iter_errors(args))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "arguments"
        raise ToolError(f"invalid {where}: {error.message[:300]}")
    return args


def _tool(name: str, description: str, input_schema: dict, output_schema: dict, run,
          timeout: float) -> Tool:
    validator = Draft202012Validator(input_schema)

    async def call(arguments: dict) -> CallToolResult:
        args = _check(arguments, input_schema, validator)
        deadline = Deadline(timeout)
        try:
            with anyio.fail_after(timeout):
                # abandon_on_cancel: a stage over budget finishes in its thread and the engine
                # stops at its next deadline check; this call answers now
                result = await anyio.to_thread.run_sync(functools.partial(run, args, deadline),
                                                        abandon_on_cancel=True)
        except TimeoutError:
            raise ToolError(f"the call ran out of its time budget of {timeout:g} s; try "
                            "fewer phrases or a smaller image") from None
        except ConceptSegError as e:
            raise ToolError(str(e)) from None
        return CallToolResult(content=[TextContent(type="text", text=json.dumps(result))],
                              structured_content=result)

    return Tool(fn=call, name=name, description=description, parameters=input_schema,
                fn_metadata=FuncMetadata(arg_model=_Arguments, output_schema=output_schema),
                is_async=True,
                annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))


def build_server(engine: ToolEngine, timeout: float = 60.0) -> MCPServer:
    """An MCPServer exposing segment_concepts and refine_instance over ``engine``."""
    runs = {"segment_concepts": engine.segment, "refine_instance": engine.refine}
    tools = [_tool(t["name"], t["description"], t["input_schema"], t["output_schema"],
                   runs[t["name"]], timeout) for t in TOOLS]
    return MCPServer(name="conceptseg", version=__version__, instructions=INSTRUCTIONS,
                     tools=tools, log_level="WARNING")
