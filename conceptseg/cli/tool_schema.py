"""``conceptseg tool-schema``: the LLM tools' JSON schema, as OpenAI functions, Anthropic tools
or MCP tools (the same definitions ``conceptseg mcp`` serves)."""

from __future__ import annotations

import json
import sys

from ..errors import InputError
from ..serve.tool_schema import FORMATS, export


def register(sub) -> None:
    s = sub.add_parser("tool-schema", help="print the LLM tools' definitions as JSON")
    s.add_argument("--format", choices=FORMATS, default="openai",
                   help="openai: {'type': 'function', 'function': {...}}; anthropic: "
                        "{'name', 'description', 'input_schema'}; mcp: as tools/list")
    s.add_argument("--tool", help="print only this tool (segment_concepts, refine_instance)")
    s.set_defaults(func=cmd_tool_schema)


def cmd_tool_schema(args) -> int:
    tools = export(args.format)
    if args.tool:
        names = [t.get("name") or t["function"]["name"] for t in tools]
        if args.tool not in names:
            raise InputError(f"unknown tool {args.tool!r}; the tools are {', '.join(names)}")
        tools = [tools[names.index(args.tool)]]
    json.dump(tools, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
