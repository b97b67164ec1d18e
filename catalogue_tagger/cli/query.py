"""``catalogue-tagger query``: the best tracks for a tag, the tags (and descriptors) of a track, tracks by tag
family or plain words, or tracks by tempo, key and loudness."""

from __future__ import annotations

import json
from typing import Any

import click

from catalogue_tagger.cli.options import database_url_option
from catalogue_tagger.cli.output import echo_json, print_table, user_errors
from catalogue_tagger.config import Settings


@click.command()
@click.option("--tag", metavar="TAG", help="List the tracks scoring highest for TAG.")
@click.option("--track", metavar="URI", help="List the current tags (and descriptors) of the track at URI.")
@click.option("--family", metavar="F", help="Tracks by their strongest tag of family F (genre, mood, instrument, vocals, era/other).")
@click.option("--text", metavar="WORDS", help="Tracks ranked by the tags plain words match, e.g. \"calm female piano\".")
@click.option("--model", metavar="NAME", default=None, help="Only this model (its latest version).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="How many tracks (--tag).")
@click.option("--bpm", metavar="MIN-MAX", default=None, help="Only tracks with a tempo in this range, e.g. 120-128 (one tempo: ±4 %).")
@click.option("--key", "key_name", metavar="KEY", default=None, help="Only tracks in this key, e.g. 'A minor', Am, 8A.")
@click.option("--compatible-with", metavar="KEY", default=None,
              help="Only tracks in keys that mix with KEY: itself, its Camelot neighbours and its relative key.")
@click.option("--louder-than", "min_lufs", type=float, default=None, metavar="LUFS", help="Integrated loudness above LUFS.")
@click.option("--quieter-than", "max_lufs", type=float, default=None, metavar="LUFS", help="Integrated loudness below LUFS.")
@click.option("--min-score", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="With descriptor filters and --tag: the least score that counts as tagged.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: one object per line.")
@database_url_option
@click.pass_obj
def query(settings: Settings, tag: str | None, track: str | None, family: str | None, text: str | None,
          model: str | None, top: int, bpm: str | None, key_name: str | None, compatible_with: str | None,
          min_lufs: float | None, max_lufs: float | None, min_score: float, fmt: str, database_url: str | None) -> None:
    """Query stored tags and descriptors (reads only): the best tracks for --tag TAG, the tags of --track URI,
    the tracks by --family F or by plain words --text WORDS, or tracks by tempo, key and loudness (optionally
    also tagged TAG):

        catalogue-tagger query --tag electronic --bpm 120-128 --key "A minor" --louder-than -10
        catalogue-tagger query --compatible-with 8A --bpm 118-130
    """
    by_descriptors = any(v is not None for v in (bpm, key_name, compatible_with, min_lufs, max_lufs))
    if by_descriptors and (track is not None or family is not None or text is not None):
        raise click.UsageError("descriptor filters combine with --tag only")
    if not by_descriptors and sum(option is not None for option in (tag, track, family, text)) != 1:
        raise click.UsageError("give exactly one of --tag, --track, --family or --text, or a descriptor filter "
                               "(--bpm, --key, --compatible-with, --louder-than, --quieter-than)")
    from catalogue_tagger.store.engine import resolve_database_url

    with user_errors():
        url = resolve_database_url(database_url or settings.database_url, settings.home)
    if family is not None or text is not None:
        from catalogue_tagger.cli.query_words import query_words

        query_words(family, text, model, top, fmt, url)
        return
    from catalogue_tagger.store.store import Store

    keys = _keys(key_name, compatible_with)
    descriptors: dict[str, Any] | None = None
    with user_errors(), Store.connect(url) as store:
        if by_descriptors:
            min_bpm, max_bpm = _bpm_range(bpm) if bpm is not None else (None, None)
            rows = store.tracks_by_descriptors(
                min_bpm=min_bpm, max_bpm=max_bpm, keys=keys, min_lufs=min_lufs, max_lufs=max_lufs,
                tag=tag, min_score=min_score, model=model, top=top,
            )
            columns = ["uri", "tempo_bpm", "key", "camelot", "loudness_lufs"] + (["model", "score"] if tag else [])
            title = "tracks matching " + ", ".join(part for part in (
                f"tag {tag!r} ≥ {min_score}" if tag else "", f"{bpm} BPM" if bpm else "",
                f"keys {', '.join(keys)}" if keys is not None else "",
                f"louder than {min_lufs} LUFS" if min_lufs is not None else "",
                f"quieter than {max_lufs} LUFS" if max_lufs is not None else "",
            ) if part)
        elif tag is not None:
            rows = store.top_tracks(tag, model=model, top=top)
            columns = ["uri", "model", "score"]
            title = f"top {top} tracks for {tag!r}"
        else:
            assert track is not None
            rows = store.tags_for_track(track, model=model)
            descriptors = store.descriptors_for_track(track)
            columns = ["model", "tag", "score", "score_max"]
            title = f"tags of {track}"
    if fmt == "json":
        for row in rows:
            echo_json(row)
        if descriptors is not None:
            echo_json(json.loads(json.dumps({"descriptors": descriptors}, default=str)))
        return
    print_table(columns, [[row[c] for c in columns] for row in rows], title=title)
    if descriptors is not None:
        pairs = [[k, v] for k, v in descriptors.items() if k not in ("uri", "track_id")]
        print_table(["descriptor", "value"], pairs, title=f"descriptors of {track}")


def _keys(key_name: str | None, compatible_with: str | None) -> list[str] | None:
    """The key names a --key / --compatible-with filter admits (None: no key filter)."""
    if key_name is None and compatible_with is None:
        return None
    from catalogue_tagger.descriptors.keys import Key, UnknownKey

    try:
        keys = [Key.parse(key_name).name] if key_name is not None else None
        if compatible_with is not None:
            compatible = [k.name for k in Key.parse(compatible_with).compatible()]
            keys = compatible if keys is None else [k for k in keys if k in compatible]
    except UnknownKey as exc:
        raise click.BadParameter(str(exc)) from exc
    return keys


def _bpm_range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        bounds = (float(low), float(high)) if sep else (float(low) / 1.04, float(low) * 1.04)  # one tempo: ±4 %
    except ValueError:
        raise click.BadParameter(f"--bpm takes MIN-MAX (e.g. 120-128) or one tempo, not {text!r}") from None
    if bounds[0] > bounds[1]:
        raise click.BadParameter(f"--bpm {text}: the minimum is above the maximum")
    return bounds
