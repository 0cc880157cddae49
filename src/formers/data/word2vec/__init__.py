"""word2vec data: vocabulary, Huffman tree, the encoded corpus and its loader, and device-side sampling."""

from formers.data.word2vec.corpus import (
    MAX_SENTENCE_LEN,
    META_FILE,
    SENTENCES_FILE,
    TOKENS_FILE,
    VOCAB_FILE,
    CorpusMeta,
    EncodedCorpus,
    Word2VecLoader,
    chunk_seed,
    prepare_corpus,
)
from formers.data.word2vec.huffman import HuffmanTree, huffman_tree
from formers.data.word2vec.sampling import (
    NegativeSampler,
    context_windows,
    sentence_ids,
    skipgram_pairs,
    subsample,
)
from formers.data.word2vec.vocabulary import (
    WORD_SPLITTERS,
    Vocabulary,
    build_vocabulary,
    count_words,
    read_sentences,
)

__all__ = [
    "MAX_SENTENCE_LEN",
    "META_FILE",
    "SENTENCES_FILE",
    "TOKENS_FILE",
    "VOCAB_FILE",
    "WORD_SPLITTERS",
    "CorpusMeta",
    "EncodedCorpus",
    "HuffmanTree",
    "NegativeSampler",
    "Vocabulary",
    "Word2VecLoader",
    "build_vocabulary",
    "chunk_seed",
    "context_windows",
    "count_words",
    "huffman_tree",
    "prepare_corpus",
    "read_sentences",
    "sentence_ids",
    "skipgram_pairs",
    "subsample",
]
