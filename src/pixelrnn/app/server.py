"""The page's HTTP API (FastAPI): models, example images, uploads, sampling jobs streamed as
server-sent events, per-pixel likelihoods, and one pixel's receptive field and predictions. Every
bad request gets a 400 with one line in ``error``; the server keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from importlib import resources

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ..errors import PixelRNNError
from ..models.distribution import bits_per_dim
from ..receptive_field import check_pixel, describe, earlier_values, receptive_field
from .catalog import Catalog
from .jobs import Job, JobRunner
from .pictures import field_url, grid_url, heatmap_url

MAX_UPLOAD_BYTES = 20_000_000
MAX_UPLOAD_PIXELS = 40_000_000  # larger images (decompression bombs) are refused before decoding
MAX_IMAGES = 16


class Drawing(BaseModel):
    """Values of one image, flattened (C, H, W), for ``model``."""

    model: str
    values: list[int] | None = None
    label: int | None = None


class FieldRequest(Drawing):
    """A pixel of the drawing, whose prediction's receptive field is asked for."""

    row: int = Field(ge=0)
    column: int = Field(ge=0)


class JobRequest(Drawing):
    task: str = Field(pattern="^(complete|sample)$")
    known_rows: int = 0
    count: int = Field(4, ge=1, le=MAX_IMAGES)
    temperature: float = Field(1.0, gt=0, le=10)
    seed: int | None = Field(None, ge=0, lt=2**63)


def display_scale(height: int) -> int:
    """Pixels per value on the page (about 256 pixels for the whole image)."""
    return max(1, 256 // height)


def create_app(catalog: Catalog, workers: int = 2) -> FastAPI:
    runner = JobRunner(workers)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        runner.shutdown()  # cancel what runs, so that the server stops at once

    app = FastAPI(title="pixelrnn", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.catalog, app.state.runner = catalog, runner
    static = resources.files("pixelrnn.app") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(PixelRNNError)
    async def bad_input(request: Request, error: PixelRNNError):
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=400)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (static / "index.html").read_text(encoding="utf-8")

    @app.get("/api/models")
    def models() -> list[dict]:
        return [catalog.describe(name) for name in catalog.names()]

    @app.get("/api/models/{name}/examples")
    def examples(name: str, count: int = 12) -> dict:
        images, note = catalog.examples(name, max(0, min(count, 64)))
        return {"images": [] if images is None else [x.flatten().tolist() for x in images], "note": note}

    @app.post("/api/models/{name}/decode")
    async def decode(name: str, request: Request) -> dict:
        """An uploaded PNG or JPEG -> the model's values (cropped to the central square, resized)."""
        blob = await request.body()
        return {"values": decoded_values(catalog, name, blob).flatten().tolist()}

    @app.post("/api/likelihood")
    def likelihood(drawing: Drawing) -> dict:
        """-ln p of each pixel (its channels summed) and of the whole image."""
        model, info = catalog.open(drawing.model)
        x = checked_values(info, drawing.values).unsqueeze(0)
        labels = None if drawing.label is None else torch.tensor([checked_label(info, drawing.label)])
        with torch.no_grad():
            per_value = model.log_prob_per_value(x, labels)[0]
        nats = -per_value.sum(0)  # (H, W)
        total = float(nats.double().sum())
        return {"nll_nats": total, "bits_per_dim": bits_per_dim(total, x[0].numel()),
                "max_pixel_nats": float(nats.max()), "per_pixel_nats": nats.tolist(),
                "heatmap": heatmap_url(nats, display_scale(info["height"]))}

    @app.post("/api/receptive-field")
    def field(request: FieldRequest) -> dict:
        """What the prediction of a pixel (its first value) depends on at this image: each earlier
        pixel's gradient (its channels summed), given the chosen class (else the first)."""
        model, info = catalog.open(request.model)
        x = checked_values(info, request.values).unsqueeze(0)
        label = 0 if request.label is None else checked_label(info, request.label)
        pixel = (request.row, request.column)
        field = receptive_field(model, info["height"], info["width"], pixel, at=x, label=label).sum(0)
        earlier = earlier_values(model, info["height"], info["width"], pixel)[0]  # the pixels before it
        counts = describe(field, earlier)
        return {"row": request.row, "column": request.column, "seen": counts["seen"], "earlier": counts["earlier"],
                "picture": field_url(field, earlier, pixel, display_scale(info["height"]))}

    @app.post("/api/predictions")
    def predictions(request: FieldRequest) -> dict:
        """A pixel's predictive distributions at this image, p(x_t = v | x_<t) for every level v of
        each of its channels (given the chosen class, else the marginal over classes), and its values."""
        model, info = catalog.open(request.model)
        x = checked_values(info, request.values).unsqueeze(0)
        check_pixel((request.row, request.column), info["height"], info["width"])
        labels = None if request.label is None else torch.tensor([checked_label(info, request.label)])
        with torch.no_grad():
            predictive = model.predictive_log_probs(x, labels)[0, :, :, request.row, request.column].exp()
        return {"row": request.row, "column": request.column, "levels": info["levels"],
                "channels": [{"probs": probs.tolist(), "value": int(x[0, c, request.row, request.column])}
                             for c, probs in enumerate(predictive.double())]}

    @app.post("/api/jobs")
    def start(request: JobRequest) -> dict:
        model, info = catalog.open(request.model)
        label = None if request.label is None else checked_label(info, request.label)
        if request.task == "complete":
            image = checked_values(info, request.values)
            if not 0 <= request.known_rows <= info["height"]:
                raise PixelRNNError(f"known rows {request.known_rows}: must be in 0..{info['height']}")
            if info["classes"] and label is None:
                raise PixelRNNError("this model is class-conditional: choose a class to complete with")
        job = runner.submit(lambda job: run_job(job, model, info, request, label,
                                                image if request.task == "complete" else None))
        return {"job": job.id}

    @app.delete("/api/jobs/{job_id}")
    def cancel(job_id: str) -> dict:
        runner.cancel(job_id)
        return {"cancelled": job_id}

    @app.get("/api/jobs/{job_id}/events")
    async def events(job_id: str, request: Request) -> StreamingResponse:
        job = runner.get(job_id)
        return StreamingResponse(event_stream(job, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    return app


async def event_stream(job: Job, request: Request):
    """The job's events as server-sent events; a client that goes away cancels its job."""
    try:
        while True:
            if await request.is_disconnected():
                job.cancel.set()
                return
            try:
                event = await asyncio.to_thread(job.events.get, True, 0.5)
            except Exception:  # queue.Empty: look at the connection again
                continue
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
            if event["type"] in ("done", "cancelled", "error"):
                return
    except asyncio.CancelledError:
        job.cancel.set()
        raise


def run_job(job: Job, model, info: dict, request: JobRequest, label: int | None, image) -> dict:
    """Sample or complete ``request.count`` images, publishing each finished row."""
    height, width, levels = info["height"], info["width"], info["levels"]
    scale = max(1, display_scale(height) // 2)

    def on_row(i: int, images: torch.Tensor) -> None:
        job.check()
        if images.shape[-2:] == (height, width):  # not a multi-scale model's small image
            shown = images.clone()
            shown[:, :, i + 1 :] = -1
            job.publish({"type": "progress", "row": i + 1, "rows": height, "picture": grid_url(shown, levels, scale)})

    options = dict(seed=request.seed, temperature=request.temperature, progress=on_row, labels=label)
    if request.task == "complete":
        images = model.complete(image.expand(request.count, -1, -1, -1), request.known_rows, **options)
    else:
        images = model.sample(request.count, height, width, **options)
    return {"picture": grid_url(images, levels, scale), "values": [x.flatten().tolist() for x in images],
            "rows": height}


def checked_values(info: dict, values: list[int] | None) -> torch.Tensor:
    """Flat values -> (C, H, W) long, checked against the model's size and levels."""
    shape = (info["channels"], info["height"], info["width"])
    expected = shape[0] * shape[1] * shape[2]
    if values is None or len(values) != expected:
        raise PixelRNNError(f"an image for this model has {expected} values (C x H x W = "
                            f"{' x '.join(map(str, shape))}), got {0 if values is None else len(values)}")
    x = torch.tensor(values, dtype=torch.long).view(shape)
    if x.min() < 0 or x.max() >= info["levels"]:
        raise PixelRNNError(f"values must be in 0..{info['levels'] - 1}")
    return x


def checked_label(info: dict, label: int) -> int:
    if not info["classes"]:
        raise PixelRNNError("this model is not class-conditional: it takes no class")
    if not 0 <= label < len(info["classes"]):
        raise PixelRNNError(f"class {label}: must be in 0..{len(info['classes']) - 1}")
    return label


def decoded_values(catalog: Catalog, name: str, blob: bytes) -> torch.Tensor:
    """An uploaded image's bytes -> (C, H, W) long values at the model's size and levels."""
    from PIL import Image

    from ..data.images import decode_image

    info = catalog.describe(name)
    if not blob:
        raise PixelRNNError("the upload is empty")
    if len(blob) > MAX_UPLOAD_BYTES:
        raise PixelRNNError(f"the upload is {len(blob) / 1e6:.1f} MB; at most {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    try:
        width, height = Image.open(io.BytesIO(blob)).size  # the header only
    except Exception:  # noqa: BLE001 - decode_image words the error
        width = height = 0
    if width * height > MAX_UPLOAD_PIXELS:
        raise PixelRNNError(f"the image is {width}x{height} pixels; at most {MAX_UPLOAD_PIXELS / 1e6:.0f} million")
    if info["height"] != info["width"]:
        raise PixelRNNError("uploads need a model of square images")
    pixels = decode_image(blob, "the upload", info["channels"], info["height"], resize=True)
    return torch.from_numpy(pixels.copy()).long() * info["levels"] // 256
