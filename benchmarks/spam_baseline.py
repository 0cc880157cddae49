"""The baseline for `bert-finetune-spam`: TF-IDF + logistic regression (scikit-learn) on the same split.

Reads the SpamAssassin corpus exactly as the recipes do (``write_spam_assassin_csv`` then the CSV reader, so
``--max-train-examples N`` takes the same N training messages as ``data.max_train_examples``), fits on
``train`` (C chosen on ``valid`` among 1, 10, 100), and prints accuracy and macro F1 on ``test``.

    python benchmarks/spam_baseline.py [--max-train-examples 2000] [--max-tokens 64]

``--max-tokens N`` shows the baseline the same view of each message as a BERT fine-tuned with ``data.max_len=N``:
the text decoded from its first N all-MiniLM-L6-v2 WordPiece tokens (special tokens included).
"""

from __future__ import annotations

import argparse
import json
import tempfile

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from formers.data.labelled import read_labelled
from formers.data.spam_assassin import write_spam_assassin_csv
from formers.tasks.metrics import accuracy_and_macro_f1


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-train-examples", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = {split: read_labelled(path) for split, path in write_spam_assassin_csv(folder).items()}
    if args.max_train_examples is not None:
        data["train"] = data["train"].subset(range(args.max_train_examples))
    if args.max_tokens is not None:
        from formers.data.tokenizers.wordpiece import WordPieceTokenizer
        from formers.recipes.text_classification import MINILM, resolve_pretrained

        tokenizer = WordPieceTokenizer.from_directory(resolve_pretrained(MINILM))
        for d in data.values():
            d.texts = [tokenizer.decode(tokenizer.encode(t, max_length=args.max_tokens, truncation=True))
                       for t in d.texts]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)
    x = {"train": vectorizer.fit_transform(data["train"].texts)}
    x.update({s: vectorizer.transform(data[s].texts) for s in ("valid", "test")})
    labels = sorted(set(data["train"].labels))
    y = {s: [labels.index(label) for label in d.labels] for s, d in data.items()}
    best = None
    for c in (1.0, 10.0, 100.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"])
        score = accuracy_and_macro_f1(model.predict(x["valid"]).tolist(), y["valid"], len(labels))["macro_f1"]
        if best is None or score > best[0]:
            best = (score, c, model)
    _, c, model = best
    test = accuracy_and_macro_f1(model.predict(x["test"]).tolist(), y["test"], len(labels))
    results = {"train_examples": len(data["train"]), "max_tokens": args.max_tokens, "C": c,
               **{f"test_{k}": round(v, 4) for k, v in test.items()}}
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
