"""Helper of descriptors_bench.py that runs in the benchmark-only virtual environment (.bench-venv), never in the
package's: Essentia (AGPL) anchors and MIDI writing with mido.

    .bench-venv/bin/python benchmarks/descriptors_bench_venv.py midi SPEC.json     # write the MIDI clips
    .bench-venv/bin/python benchmarks/descriptors_bench_venv.py essentia FILES.json  # JSON lines of estimates
"""

from __future__ import annotations

import json
import sys

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 11)  # harmonic minor: the leading tone makes the key unambiguous
MAJOR_PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 0), (0, 4, 5, 3))  # I-vi-IV-V, I-IV-V-I, I-V-vi-IV (scale degrees)
MINOR_PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 0), (0, 6, 5, 4))  # i-VI-iv-V, i-iv-V-i, i-vii°-VI-V


def write_midi(spec: dict) -> None:
    import random

    import mido

    rng = random.Random(spec["seed"])
    tpb = 480
    tonic, minor, bpm, drums = spec["tonic"], spec["minor"], spec["bpm"], spec["drums"]
    scale = MINOR_SCALE if minor else MAJOR_SCALE
    progression = rng.choice(MINOR_PROGRESSIONS if minor else MAJOR_PROGRESSIONS)
    bars = int(spec["seconds"] * bpm / 60 / 4) + 1
    events: list[tuple[int, mido.Message]] = []

    def note(start: int, length: int, pitch: int, velocity: int, channel: int) -> None:
        events.append((start, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)))
        events.append((start + length, mido.Message("note_off", note=pitch, velocity=0, channel=channel)))

    def degree_pitch(degree: int, base: int) -> int:
        octave, step = divmod(degree, 7)
        return base + tonic + 12 * octave + scale[step]

    programs = {0: rng.choice((0, 4, 5, 24, 26)), 1: rng.choice((32, 33, 38)), 2: rng.choice((0, 11, 73, 80, 81))}
    for bar in range(bars):
        root = progression[bar % 4]
        start = bar * 4 * tpb
        for beat in range(4):  # chords on every beat (piano/guitar), bass on the beat
            chord = [degree_pitch(root + d, 48) for d in (0, 2, 4)]
            for pitch in chord:
                note(start + beat * tpb, tpb - 40, pitch, 70 + (12 if beat in (0, 2) else 0), 0)
            note(start + beat * tpb, tpb // 2, degree_pitch(root, 36), 95 if beat in (0, 2) else 80, 1)
        for eighth in range(8):  # melody: chord tones and passing notes on eighths
            if rng.random() < 0.8:
                degree = root + rng.choice((0, 2, 4, 0, 2, 4, 1, 3, 5))
                note(start + eighth * tpb // 2, tpb // 2 - 20, degree_pitch(degree, 72), 60 + rng.randint(0, 20), 2)
        if drums:
            for beat in range(4):
                t = start + beat * tpb
                note(t, 60, 36 if beat in (0, 2) else 38, 110, 9)  # kick 1 & 3, snare 2 & 4
                note(t, 40, 42, 70, 9)
                note(t + tpb // 2, 40, 42, 55, 9)  # closed hi-hat on eighths
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    for channel, program in programs.items():
        track.append(mido.Message("program_change", program=program, channel=channel, time=0))
    now = 0
    for at, message in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        track.append(message.copy(time=at - now))
        now = at
    midi = mido.MidiFile(ticks_per_beat=tpb)
    midi.tracks.append(track)
    midi.save(spec["path"])


def essentia_estimates(paths: list[str]) -> None:
    import essentia
    import essentia.standard as es

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    rhythm = es.RhythmExtractor2013(method="multifeature")
    key = es.KeyExtractor()
    for path in paths:
        audio = es.MonoLoader(filename=path, sampleRate=44100)()
        bpm = rhythm(audio)[0]
        tonic, scale, strength = key(audio)
        print(json.dumps({"path": path, "bpm": float(bpm), "key": f"{tonic} {scale}", "strength": float(strength)}), flush=True)


if __name__ == "__main__":
    command, argument = sys.argv[1], sys.argv[2]
    with open(argument) as fh:
        items = json.load(fh)
    if command == "midi":
        for item in items:
            write_midi(item)
    elif command == "essentia":
        essentia_estimates(items)
    else:
        raise SystemExit(f"unknown command {command}")
