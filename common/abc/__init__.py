"""ABC notation as text and as music: parsing, cleaning, rhythm, corpora, vocabulary."""
