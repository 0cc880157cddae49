"""Generated token ids -> text, written as soon as it is final (``formers generate``, ``formers serve``).

A byte-level token that ends inside a UTF-8 character, or text that may be the start of a stop string, waits for the
next tokens; text from a stop string on is never written.
"""

from __future__ import annotations

from formers.data.tokenizers.base import Tokenizer


class TextStream:
    """Turns generated ids into text on ``out`` as soon as it is final; reports when a stop string appears.

    Args:
        tokenizer: decodes the ids.
        stops: strings ending generation; they and what follows them are not printed.
        out: a text stream (stdout).
        prefix: written before the first text (the prompt), so that nothing is printed before generation runs.
    """

    def __init__(self, tokenizer: Tokenizer, stops: list[str], out, prefix: str = "") -> None:
        self.tokenizer, self.stops, self.out = tokenizer, [s for s in stops if s], out
        self.prefix = prefix
        self.ids: list[int] = []
        self.printed = 0  # characters of the decoded text written so far
        self.stopped = False

    def push(self, token: int) -> None:
        """Adds one generated id and writes whatever text became final."""
        if self.stopped:
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        hits = [i for i in (text.find(s, max(0, self.printed - len(s))) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            end = min(hits)
        else:
            end = len(text)
            while end > self.printed and text[end - 1] == "\ufffd":  # an unfinished UTF-8 character
                end -= 1
            for s in self.stops:  # hold back a tail that may grow into a stop string
                for k in range(min(len(s) - 1, end - self.printed), 0, -1):
                    if text[end - k : end] == s[:k]:
                        end -= k
                        break
        self._write(text, end)

    def finish(self) -> None:
        """Writes the held-back tail (the generation ended), and the prefix if nothing was written yet."""
        if not self.stopped:
            self._write(self.tokenizer.decode(self.ids), None)
        if self.prefix:
            self.out.write(self.prefix)
            self.prefix = ""
        self.out.flush()

    def close(self) -> None:
        """Writes the held-back tail (the generation ended) and a final newline."""
        self.finish()
        self.out.write("\n")
        self.out.flush()

    def _write(self, text: str, end: int | None) -> None:
        end = len(text) if end is None else end
        if end > self.printed:
            self.out.write(self.prefix + text[self.printed : end])
            self.prefix = ""
            self.out.flush()
            self.printed = end
