"""Readers: engines that read a user's pictures independently of the model's eyes.

- :mod:`redgraph.readers.documents`: a document's title, ``Field: value`` pairs and line items,
  from an OCR page (:class:`~redgraph.models.ocr.RapidOcrEngine`, installed with redgraph, or
  Tesseract where it is installed).
- :mod:`redgraph.readers.charts`: a bar chart's bars, their labels, colours and values (against
  the axis and from printed value labels), and its title.

Each reader abstains, saying why, where it cannot read. The reading reasoner
(:mod:`redgraph.agents.reading`) writes rationales from what they read; the critic's experts
(:mod:`redgraph.agents.experts`) check claims with them.
"""
