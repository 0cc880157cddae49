"""Data for the Transformer family: tokenizers, parallel text, batching with padding masks, corpora."""

from formers.data.corpora import load_bible_en_es, load_multi30k, read_bible_en_es
from formers.data.downloads import ChecksumError, download, sha256_of, verify_sha256
from formers.data.parallel import (
    ParallelDataset,
    ParallelText,
    TokenBucketBatchSampler,
    TranslationLoader,
    collate_translation,
    read_parallel,
    read_tsv,
)
from formers.data.tokenizers import SubwordTokenizer

__all__ = [
    "ChecksumError",
    "ParallelDataset",
    "ParallelText",
    "SubwordTokenizer",
    "TokenBucketBatchSampler",
    "TranslationLoader",
    "collate_translation",
    "download",
    "load_bible_en_es",
    "load_multi30k",
    "read_bible_en_es",
    "read_parallel",
    "read_tsv",
    "sha256_of",
    "verify_sha256",
]
