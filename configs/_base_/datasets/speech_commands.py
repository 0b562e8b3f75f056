# Embedded synthetic speech (espeak-ng digit strings and commands, scripts/make_speech_dataset.py), shipped in
# polyhead/assets/speech_commands as an audiofolder with train/validation/test splits spoken by disjoint voices.
# Any audiofolder (metadata.csv with file_name,text) or datasets folder with audio + text columns works as data.source.
data = dict(
    source="speech_commands",
    audio_column="audio",
    text_column="text",
    val_fraction=0.1,  # used only when the source has no validation split
    test_fraction=0.1,  # used only when the source has no test split
    unknown_characters="error",  # with a fixed model.vocab: "error", "drop" or "unk" for other training characters
    max_seconds=30.0,  # longer training clips are skipped
)
