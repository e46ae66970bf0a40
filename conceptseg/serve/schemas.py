"""The request and response models of the v1 API (docs/API.md), as pydantic models: FastAPI
validates requests against them and publishes them in ``/openapi.json``. Masks are typed
loosely (``Any``): their shape depends on the requested format."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

Format = Literal["rle", "polygon", "png", "none"]
VideoFormat = Literal["rle", "polygon", "png", "none"]
Box = list[float]  # [x0, y0, x1, y1] pixels
ExemplarRow = list[Union[float, str, bool]]  # [x0, y0, x1, y1, label]; label pos/neg/1/0


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored


class ErrorBody(BaseModel):
    code: str  # short snake_case
    message: str  # one line


class ErrorResponse(BaseModel):
    error: ErrorBody


class Instance(BaseModel):
    id: int  # 0.. within the phrase, best score first
    score: float
    box_xyxy: Box  # pixels, clipped to the image
    area: int  # pixels
    mask: Any = None  # per format: RLE dict, polygon list, base64 PNG, or null


class PhraseResult(BaseModel):
    text: Optional[str]
    concept_id: Optional[str] = None
    presence: float
    no_match: bool  # nothing passed the threshold
    count: int
    instances: list[Instance]


class ImageInfo(BaseModel):
    width: int
    height: int
    sha256: str


class SegmentResponse(BaseModel):
    image: ImageInfo
    results: list[PhraseResult]


class BatchImage(Strict):
    data: Optional[str] = None  # base64 image bytes
    image_id: Optional[str] = None  # an id from POST /v1/images


class SegmentOptions(Strict):
    """What every JSON segment request carries (the phrases and how to answer)."""

    text: list[str] = Field(default_factory=list)
    exemplars: list[ExemplarRow] = Field(default_factory=list)  # applied to every phrase
    threshold: float = 0.5
    format: Format = "rle"
    max_instances: int = Field(100, ge=0)
    tolerance: float = Field(1.0, ge=0)  # polygon simplification, pixels


class BatchRequest(SegmentOptions):
    images: list[BatchImage] = Field(min_length=1)


class BatchItem(BaseModel):
    index: int
    image_id: Optional[str] = None
    results: Optional[list[PhraseResult]] = None
    error: Optional[ErrorBody] = None


class BatchResponse(BaseModel):
    results: list[BatchItem]


class ImageUploadResponse(BaseModel):
    image_id: str
    width: int
    height: int
    cached: bool


class ImageSegmentRequest(SegmentOptions):
    pass


class ImageSegmentResponse(BaseModel):
    image_id: str
    results: list[PhraseResult]


class InstanceRef(Strict):
    text: str  # the phrase of an earlier /segment on this image
    id: int = Field(ge=0)  # the instance's id in that result


class RefineRequest(Strict):
    points: Optional[list[list[float]]] = None
    labels: Optional[list[int]] = None
    box: Optional[Box] = None
    instance: Optional[InstanceRef] = None
    mask_input_id: Optional[str] = None  # refine_id of an earlier refine on this image
    multimask: bool = False
    format: Format = "rle"
    tolerance: float = Field(1.0, ge=0)


class RefineMask(BaseModel):
    score: float  # predicted IoU
    box_xyxy: Box
    area: int
    mask: Any = None


class RefineResponse(BaseModel):
    image_id: str
    refine_id: str
    masks: list[RefineMask]


class Deleted(BaseModel):
    deleted: bool


class VideoUploadResponse(BaseModel):
    session_id: str
    num_frames: int
    fps: float
    width: int
    height: int


class VideoPromptRequest(Strict):
    frame: int = Field(0, ge=0)
    text: Optional[str] = None
    exemplars: Optional[list[ExemplarRow]] = None
    points: Optional[list[list[float]]] = None
    labels: Optional[list[int]] = None
    obj_id: Optional[int] = None
    replace: bool = True  # text: start over (true) or add the phrase's objects (false)


class VideoObject(BaseModel):
    obj_id: int
    phrase: Optional[str]
    score: float
    box_xyxy: Box
    area: int
    mask: Any = None


class VideoFrame(BaseModel):
    frame: int
    objects: list[VideoObject]


class PropagateRequest(Strict):
    direction: Literal["forward", "backward", "both"] = "forward"
    start: Optional[int] = Field(None, ge=0)
    max_frames: Optional[int] = Field(None, ge=1)
    format: VideoFormat = "rle"
    tolerance: float = Field(1.0, ge=0)


class Removed(BaseModel):
    removed: int


class Closed(BaseModel):
    closed: bool


class Health(BaseModel):
    status: str
    version: str


class ModelInfo(BaseModel):
    layout: str
    config: str
    parameters: int
    device: str
    precision: str
    has_tracker: bool
    shipped: bool
    image_size: int
