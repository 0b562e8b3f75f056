"""The object-detection pipeline: embedded default, transformers' own pipeline, input kinds, ONNX backend, bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import polyhead
from polyhead.errors import InputError
from polyhead.pipelines import PolyheadObjectDetectionPipeline, default_model_dir

TEST_IMAGES = default_model_dir("object-detection").parent.parent / "assets" / "detection_paste" / "test"


@pytest.fixture(scope="module")
def detect():
    return polyhead.pipeline("object-detection")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(TEST_IMAGES / "0001.jpg")


def _check(detections, width, height):
    assert isinstance(detections, list)
    for d in detections:
        assert set(d) == {"score", "label", "box"} and set(d["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        assert 0 <= d["box"]["xmin"] <= d["box"]["xmax"] <= width and 0 <= d["box"]["ymin"] <= d["box"]["ymax"] <= height
    assert [d["score"] for d in detections] == sorted((d["score"] for d in detections), reverse=True)


def _xyxy(detections) -> torch.Tensor:
    return torch.tensor([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in detections], dtype=torch.float32).reshape(-1, 4)


def _truth(image_id: int) -> tuple[torch.Tensor, list[str]]:
    """Ground-truth boxes (xyxy pixels) and class names of a test image of the embedded set."""
    truth = json.loads((TEST_IMAGES.parent / "test.json").read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    annotations = [a for a in truth["annotations"] if a["image_id"] == image_id]
    boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes, [names[a["category_id"]] for a in annotations]


def _found(detections, sx: float = 1.0, sy: float = 1.0) -> float:
    """Mean over the photo's objects (boxes scaled by ``sx``, ``sy``) of the best IoU any detection has with it."""
    from torchvision.ops import box_iou

    boxes, _ = _truth(1)
    return float(box_iou(boxes * torch.tensor([sx, sy, sx, sy]), _xyxy(detections)).max(dim=1).values.mean()) if detections else 0.0


def test_default_model_is_embedded_trained_and_finds_the_objects(detect, photo):
    assert isinstance(detect, PolyheadObjectDetectionPipeline)
    found = detect(photo, threshold=0.3)
    _check(found, photo.width, photo.height)
    assert {d["label"] for d in found} <= {"face", "trouser", "bag", "sneaker"}
    assert len(found) and _found(found) > 0.5


def test_default_model_map_50_measured_on_held_out_images(detect):
    """COCO mAP50 of the default, measured here: the pipeline on 20 test images + torchmetrics (the full split: 0.564)."""
    from torchmetrics.detection import MeanAveragePrecision

    label2id = detect.model.config.label2id
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    images = json.loads((TEST_IMAGES.parent / "test.json").read_text())["images"][:20]
    for image in images:
        found = detect(str(TEST_IMAGES / image["file_name"]), threshold=0.05)
        boxes, names = _truth(image["id"])
        metric.update(
            [{"boxes": _xyxy(found), "scores": torch.tensor([d["score"] for d in found]), "labels": torch.tensor([label2id[d["label"]] for d in found], dtype=torch.long)}],
            [{"boxes": boxes, "labels": torch.tensor([label2id[n] for n in names], dtype=torch.long)}],
        )
    assert float(metric.compute()["map_50"]) > 0.3


def test_transformers_own_pipeline_runs_the_polyhead_model(detect, photo):
    hf = transformers.pipeline("object-detection", model=str(default_model_dir("object-detection")))
    assert type(hf) is transformers.ObjectDetectionPipeline
    ours = detect(photo, threshold=0.3)
    theirs = sorted(hf(photo, threshold=0.3), key=lambda d: -d["score"])
    assert ours and [d["box"] for d in theirs] == [d["box"] for d in ours]


def test_input_kinds_and_boxes_in_input_pixels(detect, photo):
    from_path = detect(str(TEST_IMAGES / "0001.jpg"), threshold=0.3)
    from_array = detect(np.asarray(photo), threshold=0.3)
    assert from_path == detect(photo, threshold=0.3) and [d["box"] for d in from_array] == [d["box"] for d in from_path]
    big = photo.resize((photo.width * 4, photo.height * 4))  # boxes scale with the input
    scaled = detect(big, threshold=0.3)
    _check(scaled, big.width, big.height)
    assert abs(scaled[0]["box"]["xmax"] - 4 * from_path[0]["box"]["xmax"]) <= 8
    batch = detect([photo, np.asarray(photo.convert("L"))], threshold=0.3)
    assert len(batch) == 2 and batch[0] == from_path


@pytest.mark.parametrize("form", ["grayscale", "rgba", "transparent", "tiny-8x8", "huge-4000x3000"])
def test_odd_images_run(detect, photo, form):
    """Odd modes and sizes go through the network and come back in the input's pixels: the photo's objects are found."""
    if form == "grayscale":
        gray = photo.convert("L")
        found = detect(gray, threshold=0.3)
        _check(found, gray.width, gray.height)
        assert _found(found) > 0.5
    elif form == "rgba":  # opaque RGBA: the same pixels as the RGB photo
        assert detect(photo.convert("RGBA"), threshold=0.3) == detect(photo, threshold=0.3) != []
    elif form == "transparent":  # fully transparent: composited on white
        found = detect(Image.new("RGBA", (60, 30), (0, 0, 0, 0)), threshold=0.0)  # every location scores > 0: boxes come back
        _check(found, 60, 30)
        assert found and found == detect(Image.new("RGB", (60, 30), (255, 255, 255)), threshold=0.0)
    elif form == "tiny-8x8":
        found = detect(np.asarray(photo.resize((8, 8))), threshold=0.0)
        assert found
        _check(found, 8, 8)
    else:
        huge = photo.resize((4000, 3000))
        found = detect(huge, threshold=0.3)
        _check(found, 4000, 3000)
        assert _found(found, 4000 / photo.width, 3000 / photo.height) > 0.5


def test_bad_input(detect, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not an image PIL can read"):
        detect(str(text))
    with pytest.raises(InputError, match="not found"):
        detect(str(tmp_path / "missing.jpg"))
    with pytest.raises(InputError, match="empty list of images"):
        detect([])
    with pytest.raises(InputError, match="Expected an image"):
        detect(42)
    with pytest.raises(InputError, match=r"threshold must be a number in \[0, 1\]"):
        detect(np.zeros((8, 8, 3), np.uint8), threshold=2)
    with pytest.raises(InputError, match="Unknown pipeline argument"):
        detect(np.zeros((8, 8, 3), np.uint8), top_k=3)


@pytest.mark.slow
def test_onnx_backend_gives_the_same_detections(photo, tmp_path):
    from polyhead.tasks.detection import DetectionTask

    task = DetectionTask()  # a tiny model keeps the export quick; the default's export is benchmarked (benchmarks/onnx.py)
    config = task.example_config()
    torch.manual_seed(0)
    model_dir = tmp_path / "m"
    task.build_model(config).save_pretrained(model_dir)
    task.build_processor(config).save_pretrained(model_dir)
    polyhead.export_onnx(model_dir)
    torch_out = polyhead.pipeline("object-detection", model=str(model_dir))(photo, threshold=0.05)
    onnx_out = polyhead.pipeline("object-detection", model=str(model_dir), backend="onnx")(photo, threshold=0.05)
    assert len(torch_out) > 0 and [d["label"] for d in onnx_out] == [d["label"] for d in torch_out]
    for a, b in zip(onnx_out, torch_out):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert all(abs(a["box"][k] - b["box"][k]) <= 1 for k in a["box"])


def test_cli_predict_on_an_image(capsys, tmp_path):
    from polyhead.cli import main

    assert main(["predict", str(default_model_dir("object-detection")), str(TEST_IMAGES / "0001.jpg")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out and set(out[0]) == {"score", "label", "box"}
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert main(["predict", str(default_model_dir("object-detection")), str(tmp_path / "broken.png")]) == 2
    assert "not an image PIL can read" in capsys.readouterr().err


# -- images fetched over http(s): real local servers on 127.0.0.1 ---------------------------------------------


@pytest.fixture
def image_server():
    """An http.server on 127.0.0.1 serving the embedded test JPEG at /photo.jpg (404 elsewhere)."""
    import http.server
    import threading

    body = (TEST_IMAGES / "0001.jpg").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path != "/photo.jpg":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/photo.jpg"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def trickle_server():
    """A TCP server on 127.0.0.1 that answers 200 and then sends one byte every 0.1 s, forever."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve(conn):
        with conn:
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n")
                while not stop.wait(0.1):
                    conn.sendall(b"x")
            except OSError:
                pass

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/photo.jpg"
    stop.set()
    thread.join()
    listener.close()


def _refused_url() -> str:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/photo.jpg"


def test_url_image_is_fetched_like_the_local_file(detect, image_server):
    want = detect(str(TEST_IMAGES / "0001.jpg"), threshold=0.3)
    assert detect(f"{image_server}/photo.jpg", threshold=0.3) == want
    assert detect(f"{image_server}/photo.jpg", threshold=0.3, timeout=5) == want


def _outcome_within(seconds: float, call) -> object:
    """``call()``'s result or exception, run in a thread so that a hang fails the test instead of blocking the suite."""
    import threading

    outcome: dict = {}

    def run():
        try:
            outcome["result"] = call()
        except Exception as err:  # noqa: BLE001 (returned to the test)
            outcome["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"the pipeline still hangs after {seconds} s"
    return outcome.get("error", outcome.get("result"))


def test_url_that_never_answers_times_out(detect, silent_server):
    import time

    start = time.monotonic()
    error = _outcome_within(15, lambda: detect(silent_server, timeout=0.5))
    assert time.monotonic() - start < 5
    assert isinstance(error, InputError), error
    assert re.search(r"timed out after 0\.5 s.*timeout=", str(error)), error


def test_url_that_trickles_forever_times_out(detect, trickle_server):
    """Each byte arrives within the timeout, but the whole download may not take longer either."""
    import time

    start = time.monotonic()
    error = _outcome_within(15, lambda: detect(trickle_server, timeout=0.5))
    assert time.monotonic() - start < 3
    assert isinstance(error, InputError), error
    assert re.match(r"Fetching .* timed out after 0\.5 s", str(error)), error


def test_url_errors_are_input_errors(detect, image_server):
    with pytest.raises(InputError, match=r"Could not fetch .*127\.0\.0\.1.*refused"):
        detect(_refused_url(), timeout=2)
    with pytest.raises(InputError, match="HTTP 404"):
        detect(f"{image_server}/missing.jpg", timeout=2)
    for bad in (0, -1, "abc", float("nan"), True):
        with pytest.raises(InputError, match="timeout must be a positive number of seconds"):
            detect(f"{image_server}/photo.jpg", timeout=bad)


def test_default_url_timeout_is_documented_and_finite():
    from polyhead.pipelines.detection import DEFAULT_TIMEOUT_S

    assert 0 < DEFAULT_TIMEOUT_S <= 60
    assert "timeout" in PolyheadObjectDetectionPipeline.__doc__ and str(int(DEFAULT_TIMEOUT_S)) in PolyheadObjectDetectionPipeline.__doc__


@pytest.mark.parametrize("threshold", ["abc", None, float("nan"), True, [0.5]])
def test_threshold_must_be_a_number_in_0_1(detect, threshold):
    with pytest.raises(InputError, match=r"threshold must be a number in \[0, 1\]"):
        detect(np.zeros((8, 8, 3), np.uint8), threshold=threshold)


@pytest.mark.parametrize("batch", [np.zeros((0, 8, 8, 3), np.uint8), torch.zeros(0, 3, 8, 8, dtype=torch.uint8)], ids=["numpy", "tensor"])
def test_empty_4d_batch_is_an_input_error(detect, batch):
    with pytest.raises(InputError, match="empty batch of images"):
        detect(batch)


def test_16_bit_png_is_scaled_not_saturated(detect, tmp_path):
    from polyhead.tasks.detection.processing import to_rgb_tensor

    gradient = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    path = tmp_path / "deep.png"
    Image.fromarray(gradient).save(path)
    loaded = Image.open(path)
    assert loaded.mode == "I;16"
    rgb = to_rgb_tensor(loaded)
    want = np.round(gradient / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(rgb[0].numpy(), want)
    np.testing.assert_array_equal(rgb[1].numpy(), want)
    assert 0 < float((rgb[0] == 255).float().mean()) < 0.01  # not saturated: only the brightest pixels are white
    # a 32-bit integer ("I") image holding 16-bit values is scaled the same way; values beyond 16 bits are refused
    np.testing.assert_array_equal(to_rgb_tensor(Image.fromarray(gradient.astype(np.int32)))[0].numpy(), want)
    with pytest.raises(InputError, match=r"16-bit.*\[0, 65535\]"):
        to_rgb_tensor(Image.fromarray(np.full((4, 4), 70000, np.int32)))
    _check(detect(str(path), threshold=0.05), 64, 64)


@pytest.mark.parametrize(
    "image",
    [np.full((8, 8, 3), 255.0, np.float32), np.full((8, 8), -0.5, np.float64), torch.full((3, 8, 8), 2.0)],
    ids=["0-255-floats", "negative", "tensor"],
)
def test_float_images_outside_0_1_are_refused_not_clipped(detect, image):
    with pytest.raises(InputError, match=r"Float images must hold values in \[0, 1\]"):
        detect(image)
