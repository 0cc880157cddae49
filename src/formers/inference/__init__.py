"""Prediction with trained models and their tokenizers or preprocessing: translation, sentence embedding, image
classification. The decoding loops themselves live in :mod:`formers.generation`."""
