"""Which picture a training example is shown: the project's own drawing, another tool's drawing of
the same scene (``tool_share``), and a scan or screenshot's degradation of either (``augment``).

matplotlib takes 80-110 ms to draw a chart, against 0.1 ms for the own renderer, which would make a
CPU training step wait on drawing. So charts are drawn ahead, in parallel processes, into shards
(:func:`render_shards`, ``redgraph embedded render``): tar files in the WebDataset layout
(``000123.png`` and ``000123.json`` per picture, the JSON holding the scene and the layout of
where matplotlib drew each bar), which any tar or WebDataset reader opens. A training run given
``chart_shards`` shows those pictures and asks about their scenes; without it, it draws each chart
as it needs it (the same pictures' kind, slower).
Documents in real fonts draw in 1-10 ms and are always drawn as needed.

Every other tool's drawing comes with its :class:`~redgraph.data.tools.Layout` (each bar's box and
end, each character's place and line), from which a ``tool_cells`` run has the cell loss label the
picture's squares as it does the own renderer's; a degraded picture (moved, scaled, turned) has none.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

from redgraph.data.scenes import BarScene, random_scene, scene_from_dict, scene_to_dict
from redgraph.data.synthetic import SyntheticItem, make_item, split_of
from redgraph.data.tools import Layout
from redgraph.data.vocabulary import STANDARD, VOCABULARIES, Vocabulary
from redgraph.errors import ConfigError, InputError, check_whole_number

SHARDS_FILE = "shards.json"
SHARD_PATTERN = "charts-{:05d}.tar"


def chart_scene(seed: int, index: int, vocabulary: Vocabulary = STANDARD) -> BarScene:
    """Training chart ``index`` of the shards seeded ``seed``: a train-split bar scene in ``vocabulary``'s
    colours and values."""
    rng = random.Random(f"redgraph-charts:{vocabulary.seed_prefix}{seed}:{index}")
    while True:
        scene = random_scene("bars", rng, vocabulary)
        if split_of(scene) == "train":
            return scene


def _render_shard(folder: str, shard: int, first: int, count: int, seed: int, vocabulary: str) -> int:
    from redgraph.data.tools import draw_laid_out

    path = Path(folder) / SHARD_PATTERN.format(shard)
    partial = path.with_suffix(".tar.partial")
    with tarfile.open(partial, "w") as tar:
        for index in range(first, first + count):
            scene = chart_scene(seed, index, VOCABULARIES[vocabulary])
            picture, layout = draw_laid_out("matplotlib", scene, random.Random(f"redgraph-charts-look:{seed}:{index}"),
                                            look="train")
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            record = json.dumps({"scene": scene_to_dict(scene), "tool": "matplotlib", "look": "train",
                                 "layout": layout.to_dict()}).encode()
            for name, data in ((f"{index:06d}.png", buffer.getvalue()), (f"{index:06d}.json", record)):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
    os.replace(partial, path)
    return count


def render_shards(folder: str | os.PathLike[str], count: int, *, seed: int = 0, workers: int = 2,
                  shard_size: int = 1000, on_progress: Callable[[int, int], None] | None = None,
                  vocabulary: Vocabulary = STANDARD) -> dict:
    """Draw ``count`` training charts with matplotlib's ``train`` look into tar shards under ``folder``,
    ``workers`` processes at once; the same ``count``, ``seed`` and ``vocabulary`` (the charts' colours
    and values) give the same pictures.

    Returns:
        The description written to ``folder/shards.json``: counts, seed, seconds and pictures per second.
    """
    check_whole_number("count", count, error=ConfigError)
    check_whole_number("workers", workers, error=ConfigError)
    check_whole_number("shard_size", shard_size, error=ConfigError)
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is not a folder; name a folder to write the shards into")
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = [(shard, first, min(shard_size, count - first)) for shard, first in enumerate(range(0, count, shard_size))]
    done = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        drawing = [pool.submit(_render_shard, str(root), shard, first, size, seed, vocabulary.name)
                   for shard, first, size in jobs]
        for future in drawing:  # in shard order, as the progress counts them
            done += future.result()
            if on_progress is not None:
                on_progress(done, count)
    seconds = time.perf_counter() - started
    description = {"pictures": count, "seed": seed, "tool": "matplotlib", "look": "train", "vocabulary": vocabulary.name,
                   "shards": [SHARD_PATTERN.format(shard) for shard, _, _ in jobs], "workers": workers,
                   "seconds": round(seconds, 1), "pictures_per_second": round(count / seconds, 1)}
    (root / SHARDS_FILE).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return description


def shards_vocabulary(folder: str) -> str:
    """The vocabulary the charts in ``folder`` were drawn in (shards drawn before it was recorded:
    standard); ConfigError where ``folder`` holds no shards."""
    try:
        return str(json.loads((Path(folder) / SHARDS_FILE).read_text(encoding="utf-8")).get("vocabulary", "standard"))
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{folder} holds no chart shards ({SHARDS_FILE}: {exc}); draw them first with "
                          "`redgraph embedded render FOLDER --count N`") from None


@functools.cache
def load_shards(folder: str) -> tuple[tuple[BarScene, bytes, Layout | None], ...]:
    """Every picture of the shards in ``folder`` (as :func:`render_shards` wrote them): its scene, PNG
    bytes and layout (None in shards drawn before layouts were kept), in index order; read once per
    process."""
    root = Path(folder)
    try:
        description = json.loads((root / SHARDS_FILE).read_text(encoding="utf-8"))
        names = description["shards"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{root} holds no chart shards ({SHARDS_FILE}: {exc}); draw them first with "
                          "`redgraph embedded render FOLDER --count N`") from None
    pictures: dict[str, dict[str, bytes]] = {}
    for name in names:
        try:
            with tarfile.open(root / name) as tar:
                for member in tar.getmembers():
                    key, _, suffix = member.name.rpartition(".")
                    handle = tar.extractfile(member)
                    if handle is not None:
                        pictures.setdefault(key, {})[suffix] = handle.read()
        except (OSError, tarfile.TarError) as exc:
            raise ConfigError(f"the chart shard {root / name} cannot be read ({exc}); draw the shards again") from None
    out = []
    for key in sorted(pictures):
        parts = pictures[key]
        if "png" not in parts or "json" not in parts:
            raise ConfigError(f"the chart shards in {root} lack the png or json of picture {key}; draw them again")
        try:
            record = json.loads(parts["json"])
            layout = Layout.from_dict(record["layout"]) if "layout" in record else None
            out.append((scene_from_dict(record["scene"]), parts["png"], layout))
        except (ValueError, KeyError, TypeError, InputError) as exc:
            raise ConfigError(f"the chart shards in {root} hold an unreadable record for picture {key} ({exc}); "
                              "draw them again") from None
    if not out:
        raise ConfigError(f"the chart shards in {root} hold no pictures; draw them again with a --count above 0")
    return tuple(out)


def training_picture(item: SyntheticItem, task: str, index: int, config, rng: random.Random
                     ) -> tuple[SyntheticItem, Image.Image | None, Layout | None]:
    """The item example ``index`` asks about, the picture it is shown (None: the own drawing) and, for
    another tool's undegraded drawing, its layout, as ``config.tool_share``, ``config.augment`` and
    ``config.chart_shards`` say. Draws from ``rng`` only where those are set, so a run without them sees
    the examples it always did."""
    from redgraph.data.tools import KIND_TOOLS, degrade, draw_laid_out

    picture = layout = None
    if config.tool_share and item.kind in KIND_TOOLS and rng.random() < config.tool_share:
        tool = KIND_TOOLS[item.kind]
        if tool == "matplotlib" and config.chart_shards is not None:
            scene, png, layout = rng.choice(load_shards(config.chart_shards))
            item = make_item("train", index, seed=config.seed, category_weights=config.category_weight_map, scene=scene,
                             vocabulary=config.scene_vocabulary)
            with Image.open(io.BytesIO(png)) as opened:
                picture = opened.convert("RGB")
        else:
            picture, layout = draw_laid_out(tool, item.scene, rng, look="train")
    if config.augment and task not in ("rationale_answer", "copy") and rng.random() < config.augment:
        picture, layout = degrade(picture if picture is not None else item.image(), rng), None
    return item, picture, layout
