"""The readers as the graph uses them: the text reader (RapidOCR), the document reader, the reading
reasoner, the critic's readers, and what an answer then says (who wrote and checked each claim;
unsure wherever the project cannot stand behind it). Pictures are drawn here, in DejaVu fonts and by
matplotlib: pictures the embedded model never trained on."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("rapidocr_onnxruntime")

from redgraph.agents.decompose import ReadingDecomposer  # noqa: E402
from redgraph.agents.reading import Asked, parse_question  # noqa: E402
from redgraph.decoding.probes import Probe  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def receipt(rows=(("Date:", "2024-03-15"), ("Coffee", "2", "$3.50"), ("Bagel", "1", "$2.75"), ("Subtotal", "$9.75"),
                  ("Total:", "$11.25")), title: str = "RECEIPT") -> Image.Image:
    """A receipt as a till prints it: a shop line, a bold title, then label, [quantity,] amount rows."""
    picture = Image.new("RGB", (520, 120 + 32 * len(rows)), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((20, 12), "ACME Store, 12 Main St", font=ImageFont.truetype(FONT, 12), fill="black")
    draw.text((20, 34), title, font=ImageFont.truetype(BOLD, 26), fill="black")
    font = ImageFont.truetype(FONT, 15)
    for i, row in enumerate(rows):
        y = 90 + 32 * i
        draw.text((20, y), row[0], font=font, fill="black")
        draw.text((390, y), row[-1], font=font, fill="black")
        if len(row) == 3:
            draw.text((260, y), row[1], font=font, fill="black")
    return picture


@pytest.fixture(scope="module")
def receipt_picture():
    if not __import__("os").path.exists(FONT):
        pytest.skip("DejaVu fonts are not installed")
    return receipt()


@pytest.fixture(scope="module")
def sales_chart(tmp_path_factory):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    axes.bar(["Q1", "Q2", "Q3", "Q4"], [12, 35, 27, 8])
    axes.set_title("Sales")
    path = tmp_path_factory.mktemp("charts") / "sales.png"
    figure.savefig(path)
    plt.close(figure)
    return path


def test_the_text_reader_reads_a_receipt_into_rows(receipt_picture):
    from redgraph.models.ocr import text_reader

    page = text_reader().read(receipt_picture)
    assert page.engine == "rapidocr" and page.size == receipt_picture.size
    rows = [[w.text for w in row.words] for row in page.rows()]
    assert ["Total:", "$11.25"] in rows and ["Coffee", "2", "$3.50"] in rows
    assert text_reader().read(receipt_picture) is page  # read once per picture


def test_the_document_reader_finds_title_fields_items_and_dates(receipt_picture):
    from redgraph.models.ocr import text_reader
    from redgraph.readers.documents import read_document

    reading = read_document(text_reader().read(receipt_picture))
    assert reading.title.value == "RECEIPT"
    assert reading.field("total").value == "$11.25"  # never the subtotal
    assert reading.field("subtotal").value == "$9.75"
    assert reading.field("date").value == "2024-03-15"
    assert reading.field("coffee").value == "$3.50" and reading.field("coffee").kind == "item"
    assert reading.field("invoice number") is None and reading.field("due date") is None


def test_fields_in_their_usual_forms():
    from redgraph.models.ocr import OcrLine, OcrPage, OcrWord
    from redgraph.readers.documents import read_document

    def run(text, x, y):
        return OcrLine((OcrWord(text, (x, y, x + 8 * len(text), y + 14), 0.97),))

    page = OcrPage((600, 400), (run("INVOICE", 10, 10), run("Invoice number: INV-2041", 10, 60),
                                run("Date 15 Mar 2024", 10, 90), run("Due date — 29 Mar 2024", 10, 120),
                                run("Amount due", 10, 150), run("11.25 EUR", 400, 151),
                                run("Widget A", 10, 180), run("3", 250, 180), run("$1,204.00", 400, 181)), "test")
    reading = read_document(page)
    assert reading.title.value == "INVOICE"
    assert [(f.name, f.value) for f in reading.fields] == [
        ("Invoice number", "INV-2041"), ("Date", "15 Mar 2024"), ("Due date", "29 Mar 2024"),
        ("Amount due", "11.25 EUR"), ("Widget A", "$1,204.00")]
    assert reading.field("total").value == "11.25 EUR"  # "Amount due" is what a total is called here
    assert reading.field("invoice no.").value == "INV-2041"


@pytest.mark.parametrize(("question", "asked"), [
    ("What is the title?", Asked("title")),
    ("Which bar is the highest?", Asked("tallest")),
    ("Which category has the lowest value?", Asked("shortest")),
    ("What is the value of the Q3 bar?", Asked("bar_value", "Q3")),
    ("What is North's value?", Asked("bar_value", "North")),
    ("How many bars are there?", Asked("bar_count")),
    ("What colour is the Q1 bar?", Asked("bar_colour", "Q1")),
    ("What is the total?", Asked("field", "total")),
    ("What is the price of Coffee?", Asked("field", "price of Coffee")),
    ("How much does the bagel cost?", Asked("field", "price of bagel")),
    ("Is the circle red?", None),
])
def test_questions_the_readers_answer(question, asked):
    assert parse_question(question) == asked


def test_the_reading_claims_become_probes():
    claims = ["The title is RECEIPT.", "The total is $11.25.", "The Q2 bar is the tallest.", "The Q3 bar is 27.5.",
              "There are 4 bars.", "The North bar is blue.", "It is sunny"]
    assert ReadingDecomposer().decompose(claims) == [
        (Probe("What is the title?", "RECEIPT", family="title"),),
        (Probe("What is the total?", "$11.25", family="field"),),
        (Probe("Which bar is the tallest?", "Q2", family="bar_extreme"),),
        (Probe("What is the value of the Q3 bar?", "27.5", family="bar_value"),),
        (Probe("How many bars are there?", "4", family="bar_count"),),
        (Probe("What colour is the North bar?", "blue", family="bar_colour"),),
        None,
    ]


def test_the_document_expert_supports_what_it_reads_and_contradicts_a_lie(receipt_picture):
    from redgraph.agents.experts import DocumentExpert
    from redgraph.models.ocr import text_reader

    expert = DocumentExpert(text_reader())
    right, lie, other = expert.read(receipt_picture, [Probe("What is the total?", "$11.25", family="field"),
                                                      Probe("What is the price of Coffee?", "$9.00", family="field"),
                                                      Probe("Which bar is the tallest?", "Q2", family="bar_extreme")])
    assert other is None  # not its kind of question
    assert right.expert == "rapidocr" and right.sure and right.support == 0.99 and right.answer == "$11.25"
    assert lie.sure and lie.support == pytest.approx(0.01) and lie.answer == "$3.50"
    assert right.evidence[0].text == "$11.25" and right.evidence[0].image_size == receipt_picture.size


def test_answers_are_cleaned_and_compared_with_the_reading():
    from redgraph.graphs.nodes import clean_answer, same_reading

    assert clean_answer(" $11.25.<|im_end|>") == "$11.25" and clean_answer(" triangle.") == "triangle"
    assert clean_answer("27.5") == "27.5" and clean_answer("   ") == ""
    assert same_reading("$1204.00", "$1,204.00") and same_reading("receipt", "RECEIPT")
    assert not same_reading("32", "$11.25") and not same_reading("", "4")


@pytest.fixture(scope="module")
def embedded_context():
    import redgraph

    return redgraph.make_context()


def test_the_readers_write_and_the_critic_checks_on_a_users_receipt(tmp_path, receipt_picture, embedded_context):
    import redgraph

    path = tmp_path / "receipt.png"
    receipt_picture.save(path)
    result = redgraph.ask(path, "What is the total?", embedded_context, checkpoint="memory", trace_path=tmp_path / "t.json")
    [rationale] = result.state["rationales"]
    assert rationale["model"] == "readers:rapidocr" and rationale["text"] == "The total is $11.25."
    assert rationale["reading"] == "$11.25" and rationale["evidence"][0]["reader"] == "rapidocr"
    assert result.state["reviews"][0]["status"] == "accepted"
    [claim] = result.state["reviews"][0]["claims"]
    assert claim["written_by"] == "rapidocr" and "rapidocr" in claim["checked_by"]
    # Checked by the engine that wrote it (and Tesseract where installed): independent only then.
    assert claim["independent"] == ("tesseract" in claim["checked_by"])
    assert result.state["history"][-1]["picture"]["novel"] is True  # beyond the model's eyes
    # Whatever RED wrote, the flag says whether it is what the readers read.
    assert result.unsure == ("answer_differs_from_reading" in result.flags)
    assert ("answer_differs_from_reading" in result.flags) != (result.answer.lower() == "$11.25")


def test_a_lie_about_a_users_receipt_is_caught(tmp_path, receipt_picture):
    import redgraph
    from redgraph.agents.scripted import ScriptedReasoner

    path = tmp_path / "receipt.png"
    receipt_picture.save(path)
    context = redgraph.make_context(reasoner=ScriptedReasoner(["The total is $99.00."], name="liar"))
    result = redgraph.ask(path, "What is the total?", context, checkpoint="memory")
    by_writer = {r["model"]: r for r in result.rationales}
    assert by_writer["liar"]["status"] == "rejected" and by_writer["readers:rapidocr"]["status"] == "accepted"
    assert "The total is $99.00." not in result.state["chosen"]["rationales"]
    assert result.state["chosen"]["rationales"] == ["The total is $11.25."]
    assert "rationales_rejected_answered_with_accepted" in result.flags


def test_the_readers_read_a_matplotlib_chart(sales_chart, embedded_context):
    import redgraph

    for question, sentence, reading in [("Which bar is the tallest?", "The Q2 bar is the tallest.", "Q2"),
                                        ("How many bars are there?", "There are 4 bars.", "4")]:
        result = redgraph.ask(sales_chart, question, embedded_context, checkpoint="memory")
        [rationale] = result.state["rationales"]
        assert rationale["text"] == sentence and rationale["reading"] == reading
        assert result.state["reviews"][0]["status"] == "accepted"
        [claim] = result.state["reviews"][0]["claims"]
        assert claim["written_by"] == "chart_axis" and claim["checked_by"] == ["chart_axis"]
        assert claim["independent"] is False  # only the chart reader's geometry read it
        assert result.unsure == (result.answer != reading)


def test_an_empty_rationale_is_the_reasoners_failure_not_the_callers(embedded_context):
    import dataclasses

    import redgraph
    from redgraph.agents.reasoner import Rationale
    from redgraph.examples import example_path, load_examples

    class Silent:
        model_name = "silent"

        def write(self, image, question, k=1, *, critique=None):
            return [Rationale("", "facts", "silent")]

    context = dataclasses.replace(embedded_context, reasoner=Silent(), rounds=1)
    bars = next(e for e in load_examples() if "bar" in e["image"])
    result = redgraph.ask(example_path(bars), bars["question"], context, checkpoint="memory")
    assert result.state["reviews"][0]["note"] == "the reasoner wrote nothing"
    assert result.outcome == "image_only" and "rationale_unchecked" in result.flags
    assert result.answer is not None


def test_a_reader_that_fails_is_named_and_the_answer_is_unsure(tmp_path, receipt_picture):
    import dataclasses

    import redgraph
    from redgraph.agents.critic import LocalCritic
    from redgraph.agents.experts import MissingReader

    path = tmp_path / "receipt.png"
    receipt_picture.save(path)
    context = redgraph.make_context()
    critic = LocalCritic(context.answerer, readers=(MissingReader("rapidocr", "pip install rapidocr-onnxruntime"),))
    result = redgraph.ask(path, "What is the total?", dataclasses.replace(context, critic=critic), checkpoint="memory")
    assert result.state["history"][-1]["reader_failures"] == ["rapidocr: ConfigError: pip install rapidocr-onnxruntime"]
    assert "reader_failed" in result.flags and result.unsure


def test_the_development_set_and_the_readers_benchmark_run(tmp_path):
    """benchmarks/dev_pictures.py draws a set in the development tools; readers_only.py scores the
    readers on it (a smoke run: one chart, one document)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("matplotlib")
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "benchmarks/dev_pictures.py"), str(tmp_path), "--charts", "1",
                    "--documents", "1"], check=True, capture_output=True, timeout=300)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [p["tool"] for p in manifest["pictures"]] == ["matplotlib", "pil-dejavu"]
    done = subprocess.run([sys.executable, str(root / "benchmarks/readers_only.py"), "--folder", str(tmp_path),
                           "--json"], check=True, capture_output=True, text=True, timeout=300)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    everything = summary["by_tool_and_kind"]["all/all"]
    assert everything["n"] == sum(len(p["questions"]) for p in manifest["pictures"])
    assert everything["right"] + everything["wrong"] + everything["abstained"] == everything["n"]


def test_the_command_line_says_why_for_every_reason_an_answer_is_unsure():
    from redgraph.cli.answer import UNSURE_REASONS
    from redgraph.graphs.run import UNSURE_FLAGS

    assert set(UNSURE_REASONS) == UNSURE_FLAGS


def test_a_reader_failing_in_the_reasoner_is_noted_on_the_rationales_written_instead(monkeypatch):
    from redgraph.agents import reading
    from redgraph.agents.scripted import ScriptedReasoner
    from redgraph.errors import ExpertError

    def broken(picture, question):
        raise ExpertError("the text reader (RapidOCR) failed on the picture")

    monkeypatch.setattr(reading, "read_for", broken)
    team = reading.ReasonerTeam(ScriptedReasoner(["The total is $5.00."], name="other"), readers="always")
    [written] = team.write(Image.new("RGB", (64, 48), "white"), "What is the total?")
    assert written.model == "other"
    assert written.notes == (f"{reading.READERS_FAILED}: ExpertError: the text reader (RapidOCR) failed on the picture",)
