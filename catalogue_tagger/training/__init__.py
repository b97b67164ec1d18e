"""Training the waveform tagger: corpus cache, teacher targets, SampleCNN training, baseline, evaluation, report."""
