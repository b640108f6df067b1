"""PDF input (issue 38): a document of several pages answered through every surface, the right
page named in the answer, the trace and the report; bad PDFs refused by name.

The PDFs are made here: pages drawn by the project's renderer and saved with PIL's PDF writer (the
embedded model reads those pictures; what it reads on other tools' pictures is issue 36), a vector
page drawn by matplotlib, and PDFs written by PDFium itself for the bounds.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest

pytest.importorskip("pypdfium2")

from redgraph.data.synthetic import generate_items  # noqa: E402
from redgraph.errors import ImageError, InputError  # noqa: E402
from redgraph.models.documents import MAX_PAGES, open_pdf, render_page, target_pixels  # noqa: E402
from redgraph.trace import verify_text  # noqa: E402

ITEMS = generate_items("test", 40, seed=0)
DOCUMENT = next(item for item in ITEMS if item.kind == "document" and item.category == "title")
BARS = next(item for item in ITEMS if item.kind == "bars" and item.category == "shortest")


def _two_page_pdf() -> bytes:
    """Page 1: a document; page 2: a bar chart."""
    buffer = io.BytesIO()
    DOCUMENT.image().save(buffer, "PDF", save_all=True, append_images=[BARS.image()], resolution=72)
    return buffer.getvalue()


PDF = _two_page_pdf()


@pytest.fixture(scope="module")
def pdf_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("pdf") / "report.pdf"
    path.write_bytes(PDF)
    return path


@pytest.fixture(scope="module")
def embedded():
    from redgraph.models.embedded import load_embedded

    return load_embedded()


def _pdfium_pdf(*sizes: tuple[float, float]) -> bytes:
    import pypdfium2

    document = pypdfium2.PdfDocument.new()
    for width, height in sizes:
        document.new_page(width, height)
    buffer = io.BytesIO()
    document.save(buffer)
    document.close()
    return buffer.getvalue()


def _encrypted_pdf(password: bytes = b"secret") -> bytes:
    """A one-page PDF under PDF's standard security handler (revision 2: RC4, 40-bit key), written
    by hand: the objects hold no string or stream, so only the /Encrypt entries need computing."""
    pad = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")

    def rc4(key: bytes, data: bytes) -> bytes:
        state, j = list(range(256)), 0
        for i in range(256):
            j = (j + state[i] + key[i % len(key)]) % 256
            state[i], state[j] = state[j], state[i]
        i = j = 0
        out = bytearray()
        for byte in data:
            i = (i + 1) % 256
            j = (j + state[i]) % 256
            state[i], state[j] = state[j], state[i]
            out.append(byte ^ state[(state[i] + state[j]) % 256])
        return bytes(out)

    user = (password + pad)[:32]
    owner = rc4(hashlib.md5(user).digest()[:5], user)
    file_id = b"0123456789abcdef"
    key = hashlib.md5(user + owner + (-4).to_bytes(4, "little", signed=True) + file_id).digest()[:5]
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
               b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -4 >>" % (owner.hex().encode(),
                                                                            rc4(key, pad).hex().encode())]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 4 0 R /ID [<%s> <%s>] >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, file_id.hex().encode(), file_id.hex().encode(), xref)
    return bytes(out)


# --- reading PDFs ---------------------------------------------------------------------------

def test_pages_render_at_the_size_the_model_reads(embedded):
    with open_pdf(PDF) as document:
        assert document.pages == 2
        target = target_pixels(embedded)
        page = render_page(document, 2, target=target)
        assert page.mode == "RGB" and 0.5 * target <= page.width * page.height <= 2 * target
        big = render_page(document, 1, target=1024 * 1024)
        assert big.width * big.height > 4 * page.width * page.height  # a model that takes more gets more


def test_a_vector_pdf_drawn_by_matplotlib_renders():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    with PdfPages(buffer) as pages:
        figure = pyplot.figure(figsize=(4, 3))
        figure.add_subplot().bar(["red", "blue", "green"], [3, 7, 5], color=["red", "blue", "green"])
        pages.savefig(figure)
        pyplot.close(figure)
    with open_pdf(buffer.getvalue()) as document:
        picture = render_page(document, 1, target=200_000)
    colours = picture.convert("RGB").getcolors(1_000_000)
    assert any(r > 200 and g < 60 and b < 60 for _, (r, g, b) in colours)  # the red bar is there


@pytest.mark.parametrize("data, message", [
    (_encrypted_pdf(), "is encrypted"),
    (PDF[: len(PDF) // 3], "cannot be read as a PDF"),
    (_pdfium_pdf(*[(10, 10)] * (MAX_PAGES + 1)), f"more than the {MAX_PAGES}"),
    (_pdfium_pdf((20_000, 100)), "at most 14400 points"),
], ids=["encrypted", "cut short", "too many pages", "huge page"])
def test_bad_pdfs_are_refused_by_name(data, message):
    with pytest.raises(ImageError, match=message):
        open_pdf(data)


def test_a_pdf_given_where_only_an_image_is_read_says_where_it_can_go():
    from redgraph.models.images import load_image

    with pytest.raises(ImageError, match="is a PDF document, not an image: ask about it through the graph"):
        load_image(PDF)


# --- the graph: every page asked, the right one named -----------------------------------------

@pytest.mark.parametrize("item, page", [(DOCUMENT, 1), (BARS, 2)], ids=["document page", "chart page"])
def test_the_critic_picks_the_page_that_answers(pdf_path, embedded, item, page, tmp_path):
    from redgraph.graphs import ask, make_context
    from redgraph.trace.attest import statement
    from redgraph.trace.report import render_report

    asked = []
    result = ask(pdf_path, item.question, make_context(embedded), checkpoint="memory",
                 trace_path=tmp_path / "trace.json", on_page=lambda n, total, _: asked.append((n, total)))
    assert asked == [(1, 2), (2, 2)]
    assert result.page == page and result.answer == item.answer
    assert result.document["chosen_page"] == page and "critic's support" in result.document["basis"]
    assert result.summary()["page"] == page
    # the trace: the page's run records the document and page; its last event, every page's answer
    text = (tmp_path / "trace.json").read_text()
    assert verify_text(text).ok
    received = result.trace.events[0].outputs["image"]
    assert received["document"] == {"sha256": hashlib.sha256(PDF).hexdigest(), "page": page, "pages": 2}
    assert received["file_sha256"] == hashlib.sha256(PDF).hexdigest()
    choice = result.trace.events[-1]
    assert (choice.node, choice.kind) == ("document", "page_choice")
    assert [row["page"] for row in choice.outputs["asked"]] == [1, 2]
    # the attestation's image subject is the PDF file, with the page
    [image] = [s for s in statement(text)["subject"] if s["name"] == "image"]
    assert image["digest"]["sha256"] == hashlib.sha256(pdf_path.read_bytes()).hexdigest()
    assert image["annotations"]["page"] == page
    report = render_report(result.state, result.trace)
    assert f"page {page} of 2 of the PDF" in report and "Pages asked" in report


def test_a_named_page_is_asked_alone(pdf_path, embedded):
    from redgraph.graphs import ask, make_context

    result = ask(pdf_path, BARS.question, make_context(embedded), checkpoint="memory", page=2)
    assert result.page == 2 and result.answer == BARS.answer and result.document is None
    assert all(event.kind != "page_choice" for event in result.trace.events)


def test_what_ask_refuses_about_pages(pdf_path, embedded, tmp_path):
    from redgraph.graphs import ask, make_context

    context = make_context(embedded)
    with pytest.raises(ImageError, match="page must be a whole number from 1 to 2"):
        ask(pdf_path, BARS.question, context, checkpoint="memory", page=3)
    with pytest.raises(InputError, match="page=2 is for documents"):
        ask(BARS.image(), BARS.question, context, checkpoint="memory", page=2)
    long = tmp_path / "long.pdf"
    long.write_bytes(_pdfium_pdf(*[(100, 100)] * 21))
    with pytest.raises(InputError, match="asks at most 20: name the page"):
        ask(long, BARS.question, context, checkpoint="memory")
    with pytest.raises(InputError, match="human review pauses one run on one page"):
        ask(pdf_path, BARS.question, make_context(embedded, on_exhausted="human_review"), checkpoint="memory")


# --- the surfaces ---------------------------------------------------------------------------

def test_the_cli_asks_every_page_and_names_it_and_decodes_a_named_page(pdf_path):
    from typer.testing import CliRunner

    from redgraph.cli import app

    runner = CliRunner()
    asked = runner.invoke(app, ["ask", str(pdf_path), BARS.question, "--checkpoint", "memory", "--json"])
    assert asked.exit_code == 0, asked.output
    payload = json.loads(asked.stdout)
    assert payload["page"] == 2 and payload["answer"] == BARS.answer and payload["document"]["chosen_page"] == 2
    named = runner.invoke(app, ["ask", str(pdf_path), DOCUMENT.question, "--page", "1", "--checkpoint", "memory"])
    assert named.exit_code == 0 and "page: 1 of 2" in named.output
    decoded = runner.invoke(app, ["decode", str(pdf_path), BARS.question, "--page", "2", "--json"])
    assert decoded.exit_code == 0 and json.loads(decoded.stdout)["answer"] == BARS.answer
    unnamed = runner.invoke(app, ["decode", str(pdf_path), BARS.question])
    assert unnamed.exit_code == 2 and "has 2 pages; name the one to read" in unnamed.output
    beyond = runner.invoke(app, ["ask", str(pdf_path), BARS.question, "--page", "9"])
    assert beyond.exit_code == 2 and "from 1 to 2" in beyond.output


def test_the_tool_and_the_mcp_tool_take_a_pdf_and_a_page(pdf_path, embedded, tmp_path):
    import anyio

    from redgraph.tools import make_ask_image_tool
    from redgraph.tools.mcp import build_server

    tool = make_ask_image_tool(lvlm=embedded, trace_dir=tmp_path)
    reply = tool.invoke({"name": "ask_image", "id": "1", "type": "tool_call",
                         "args": {"image": str(pdf_path), "question": BARS.question}})
    summary = json.loads(reply.content)
    assert summary["page"] == 2 and summary["answer"] == BARS.answer
    assert tool.args_schema.model_json_schema()["properties"]["page"]["description"]
    server = build_server(lvlm=embedded, trace_dir=tmp_path)
    data_url = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    called = anyio.run(server.call_tool, "ask_image", {"image": data_url, "question": DOCUMENT.question, "page": 1})
    assert called.structured_content["page"] == 1 and called.structured_content["answer"] == DOCUMENT.answer


def test_the_langgraph_input_takes_a_pdf_and_its_page(pdf_path):
    from redgraph.graphs.served import graph

    state = graph.invoke({"image_input": str(pdf_path), "question": BARS.question, "page": 2})
    assert state["answer"]["text"] == BARS.answer and state["image"]["document"]["page"] == 2
    with pytest.raises(InputError, match="give 'page' in the input"):
        graph.invoke({"image_input": str(pdf_path), "question": BARS.question})


def test_the_server_takes_pdf_data_urls(embedded):
    pytest.importorskip("fastapi")
    from openai import OpenAI

    from redgraph.serve import ServerSettings, create_app
    from tests.test_server import LiveServer

    data_url = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    with LiveServer(create_app(embedded, ServerSettings(model_name="embedded"))) as live:
        import httpx

        asked = httpx.post(live.url + "/v1/redgraph/ask", json={"image": data_url, "question": BARS.question},
                           timeout=120)
        assert asked.status_code == 200, asked.text
        assert asked.json()["page"] == 2 and asked.json()["answer"] == BARS.answer
        client = OpenAI(base_url=live.url + "/v1", api_key="none", max_retries=0)
        content = [{"type": "text", "text": BARS.question}, {"type": "image_url", "image_url": {"url": data_url}}]
        chat = client.chat.completions.create(model="embedded", messages=[{"role": "user", "content": content}],
                                              max_tokens=4, extra_body={"page": 2})
        assert chat.choices[0].message.content.strip() == BARS.answer
        unnamed = httpx.post(live.url + "/v1/chat/completions", timeout=60, json={
            "model": "embedded", "max_tokens": 4, "messages": [{"role": "user", "content": content}]})
        assert unnamed.status_code == 400 and "name the one to read" in unnamed.json()["error"]["message"]


def test_damaged_pdfs_end_in_pages_or_an_image_error():
    """Found by benchmarks/fuzz.py: a damaged page tree raised PDFium's own error from a page size."""
    import random

    rng = random.Random(0)
    messages = set()
    for _ in range(400):
        data = bytearray(PDF)
        for _ in range(rng.randrange(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        try:
            with open_pdf(bytes(data)) as document:
                for page in range(1, document.pages + 1):
                    assert render_page(document, page, target=4096).mode == "RGB"
        except ImageError as exc:
            messages.add(str(exc).split(" (")[0])
    assert messages  # some were refused, each by name


# --- multi-page TIFF scans, read the same way ---------------------------------------------------

def _tiff(*pages) -> bytes:
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=list(pages[1:]))
    return buffer.getvalue()


def test_a_multi_page_tiff_scan_is_asked_like_a_pdf(embedded, tmp_path):
    from redgraph.graphs import ask, make_context
    from redgraph.models.documents import is_document, open_document
    from redgraph.models.images import load_image

    data = _tiff(DOCUMENT.image(), BARS.image())
    with open_document(data) as document:
        assert is_document(data) and document.pages == 2
        assert render_page(document, 2, target=target_pixels(embedded)).size == BARS.image().size
    path = tmp_path / "scan.tiff"
    path.write_bytes(data)
    result = ask(path, BARS.question, make_context(embedded), checkpoint="memory")
    assert result.page == 2 and result.answer == BARS.answer
    assert result.trace.events[0].outputs["image"]["document"]["sha256"] == hashlib.sha256(data).hexdigest()
    with pytest.raises(ImageError, match="is a TIFF document, not an image"):
        load_image(data)


def test_a_document_data_url_must_declare_what_it_holds():
    from redgraph.models.images import decode_data_url

    tiff = base64.b64encode(_tiff(BARS.image())).decode()
    assert decode_data_url("data:image/tiff;base64," + tiff, allow_documents=True)
    with pytest.raises(ImageError, match="declares image/png but holds TIFF document data; declare image/tiff"):
        decode_data_url("data:image/png;base64," + tiff, allow_documents=True)
    with pytest.raises(ImageError, match="declares application/pdf but holds image data"):
        decode_data_url("data:application/pdf;base64," + base64.b64encode(b"GIF89a...").decode(), allow_documents=True)
    with pytest.raises(ImageError, match="image/tiff' is not supported here"):
        decode_data_url("data:image/tiff;base64," + tiff)  # where only images are taken


def test_a_tiff_frame_beyond_the_pixel_limit_is_refused_before_it_is_read(monkeypatch):
    from redgraph.models import images
    from redgraph.models.documents import open_tiff

    monkeypatch.setattr(images, "DEFAULT_MAX_PIXELS", 100)
    with open_tiff(_tiff(BARS.image())) as document, pytest.raises(ImageError, match="above the limit of 100"):
        render_page(document, 1, target=50)
