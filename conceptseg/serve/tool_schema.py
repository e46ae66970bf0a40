"""The JSON schemas of the LLM tools (``segment_concepts``, ``refine_instance``): inputs and
outputs, written once here. ``conceptseg mcp`` publishes them (and validates arguments against
them); ``conceptseg tool-schema`` prints them as OpenAI- or Anthropic-style tool definitions.

Plain dictionaries (JSON Schema draft 2020-12 subset that OpenAI, Anthropic and MCP all read):
no dependency, so ``tool-schema`` works without the ``mcp`` extra.
"""

from __future__ import annotations

import copy

from ..errors import InputError

__all__ = ["FORMATS", "MAX_INSTANCES", "MAX_PHRASES", "OUTPUTS", "TOOLS", "export", "tool"]

MAX_PHRASES = 16  # phrases per segment_concepts call (each one a batched decoder pass)
MAX_INSTANCES = 200  # the largest max_instances a call may ask for
MAX_POINTS = 64  # clicks per refine_instance call
MAX_EXEMPLARS = 32  # exemplar boxes per call
OUTPUTS = ("boxes", "polygons", "rle")  # what each instance carries besides its box
FORMATS = ("mcp", "openai", "anthropic")  # conceptseg tool-schema --format

_BOX = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
        "description": "[x0, y0, x1, y1] in pixels of the original image (x right, y down); "
                       "a box partly outside the image is clipped to it"}
_IMAGE = {
    "image_path": {"type": "string", "description": "path of a local image file (PNG, JPEG, "
                   "WEBP, BMP, GIF, TIFF); '~' is expanded, relative paths resolve against the "
                   "server's root"},
    "image_base64": {"type": "string", "description": "the image file's bytes in base64 "
                     "(a data: URL prefix is accepted)"},
    "image_id": {"type": "string", "description": "the image.id returned by an earlier call: "
                 "reuses that image without sending it again"},
}
_OUTPUT = {"type": "string", "enum": list(OUTPUTS), "default": "polygons",
           "description": "per instance: 'boxes' (box, score, area only), 'polygons' (plus a "
                          "simplified outline) or 'rle' (plus the exact mask as COCO RLE)"}

SEGMENT_INPUT = {
    "type": "object",
    "properties": {
        **_IMAGE,
        "phrases": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 500},
                    "minItems": 1, "maxItems": MAX_PHRASES,
                    "description": "short noun phrases to find, e.g. ['red car', 'person']; "
                                   "each is answered separately"},
        "exemplars": {"type": "array", "maxItems": MAX_EXEMPLARS,
                      "description": "optional example boxes that show what to find (positive) "
                                     "or what not to (negative); applied to every phrase",
                      "items": {"type": "object", "required": ["box"],
                                "additionalProperties": False,
                                "properties": {"box": _BOX, "label": {
                                    "type": "string", "enum": ["positive", "negative"],
                                    "default": "positive"}}}},
        "threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
                      "description": "an instance is reported when its score exceeds this"},
        "max_instances": {"type": "integer", "minimum": 1, "maximum": MAX_INSTANCES,
                          "default": 20, "description": "at most this many instances listed "
                          "per phrase (best first); count still says how many were found"},
        "output": _OUTPUT,
    },
    "required": ["phrases"],
    "additionalProperties": False,
}

REFINE_INPUT = {
    "type": "object",
    "properties": {
        **_IMAGE,
        "instance": {"type": "object", "required": ["phrase", "id"], "additionalProperties": False,
                     "description": "an instance from the last segment_concepts call on this "
                                    "image: its phrase and its id",
                     "properties": {"phrase": {"type": "string", "minLength": 1},
                                    "id": {"type": "integer", "minimum": 0}}},
        "box": _BOX,
        "points": {"type": "array", "maxItems": MAX_POINTS,
                   "items": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                             "maxItems": 2},
                   "description": "clicks [[x, y], ...] in pixels"},
        "labels": {"type": "array", "items": {"type": "integer", "enum": [0, 1]},
                   "maxItems": MAX_POINTS,
                   "description": "per point: 1 = part of the object, 0 = not part of it "
                                  "(default: all 1)"},
        "output": _OUTPUT,
    },
    "additionalProperties": False,
}

_NUM = {"type": "number"}
_POLYGONS = {"type": "array", "description": "outer outlines, largest first, each "
             "[[x, y], ...] in pixels, simplified (see polygon_tolerance)",
             "items": {"type": "array", "items": {"type": "array", "items": _NUM,
                                                  "minItems": 2, "maxItems": 2}}}
_RLE = {"type": "object", "required": ["size", "counts"],
        "description": "COCO compressed RLE (pycocotools)",
        "properties": {"size": {"type": "array", "items": {"type": "integer"}},
                       "counts": {"type": "string"}}}
_MASK_FIELDS = {"score": _NUM, "area": {"type": "integer", "description": "pixels"},
                "box": {"type": "array", "items": _NUM, "minItems": 4, "maxItems": 4,
                        "description": "[x0, y0, x1, y1] pixels"},
                "polygons": _POLYGONS, "rle": _RLE}
_IMAGE_OUT = {"type": "object", "required": ["id", "width", "height"],
              "properties": {"id": {"type": "string"}, "width": {"type": "integer"},
                             "height": {"type": "integer"}}}
_COMMON_OUT = {"image": _IMAGE_OUT, "model": {"type": "string"},
               "notes": {"type": "array", "items": {"type": "string"}},
               "polygon_tolerance": {"type": ["number", "null"]}}

SEGMENT_OUTPUT = {
    "type": "object",
    "required": ["image", "model", "threshold", "results", "notes"],
    "properties": {
        **_COMMON_OUT,
        "threshold": _NUM,
        "results": {"type": "array", "items": {
            "type": "object",
            "required": ["phrase", "present", "presence", "count", "instances", "summary"],
            "properties": {
                "phrase": {"type": "string"},
                "present": {"type": "boolean", "description": "at least one instance scored "
                            "above the threshold"},
                "presence": {"type": "number", "description": "the model's probability that "
                             "the concept is in the image at all"},
                "count": {"type": "integer", "description": "instances above the threshold"},
                "listed": {"type": "integer"},
                "summary": {"type": "string"},
                "instances": {"type": "array", "items": {
                    "type": "object", "required": ["id", "score", "box", "area"],
                    "properties": {"id": {"type": "integer"}, **_MASK_FIELDS}}},
            }}},
    },
}

REFINE_OUTPUT = {
    "type": "object",
    "required": ["image", "model", "mask", "summary", "notes"],
    "properties": {
        **_COMMON_OUT,
        "mask": {"type": "object", "required": ["score", "box", "area"], "properties": {
            **_MASK_FIELDS, "score": {"type": "number", "description": "predicted IoU"}}},
        "summary": {"type": "string"},
    },
}

TOOLS = [
    {"name": "segment_concepts",
     "description": "Find every instance of one or more concepts (short noun phrases, "
                    "optionally helped by example boxes) in an image and return, per phrase, "
                    "whether it is present, how many instances, and each instance's box, "
                    "score, area and outline, with a one-line summary. Give exactly one of "
                    "image_path, image_base64, image_id.",
     "input_schema": SEGMENT_INPUT, "output_schema": SEGMENT_OUTPUT},
    {"name": "refine_instance",
     "description": "Refine one object's mask with clicks: start from an instance found by "
                    "segment_concepts (phrase + id) or a box, add positive/negative points, "
                    "and get the refined mask's box, area, score and outline. Give exactly "
                    "one of image_path, image_base64, image_id.",
     "input_schema": REFINE_INPUT, "output_schema": REFINE_OUTPUT},
]


def tool(name: str) -> dict:
    """The definition of one tool (a deep copy)."""
    for t in TOOLS:
        if t["name"] == name:
            return copy.deepcopy(t)
    raise InputError(f"unknown tool {name!r}; the tools are "
                     + ", ".join(t["name"] for t in TOOLS))


def export(fmt: str = "mcp") -> list[dict]:
    """Every tool as an MCP tool (``name, description, inputSchema, outputSchema``), an OpenAI
    function (``{"type": "function", "function": {name, description, parameters}}``) or an
    Anthropic tool (``name, description, input_schema``)."""
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = []
    for t in copy.deepcopy(TOOLS):
        if fmt == "openai":
            out.append({"type": "function", "function": {
                "name": t["name"], "description": t["description"],
                "parameters": t["input_schema"]}})
        elif fmt == "anthropic":
            out.append({"name": t["name"], "description": t["description"],
                        "input_schema": t["input_schema"]})
        else:
            out.append({"name": t["name"], "description": t["description"],
                        "inputSchema": t["input_schema"], "outputSchema": t["output_schema"]})
    return out
