package io.moecluster.core.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** HF's SplitDelimiterBehavior: what happens to the text a Split pre-tokenizer's regex matches. */
final class SplitBehavior {
  private SplitBehavior() {}

  private record Piece(String text, boolean matched) {}

  static List<String> apply(Pattern pattern, String behavior, boolean invert, String text) {
    List<Piece> pieces = new ArrayList<>();
    Matcher matcher = pattern.matcher(text);
    int last = 0;
    while (matcher.find()) {
      if (matcher.end() == matcher.start()) {
        continue;
      }
      if (matcher.start() > last) {
        pieces.add(new Piece(text.substring(last, matcher.start()), invert));
      }
      pieces.add(new Piece(matcher.group(), !invert));
      last = matcher.end();
    }
    if (last < text.length()) {
      pieces.add(new Piece(text.substring(last), invert));
    }
    List<String> out = new ArrayList<>();
    switch (behavior) {
      case "Removed" -> pieces.stream().filter(p -> !p.matched()).forEach(p -> out.add(p.text()));
      case "MergedWithPrevious" -> {
        // As Hugging Face's tokenizers: a match joins the piece before it only when that piece
        // is not a match itself ("a--b" split on "-" gives "a-", "-", "b").
        boolean previousMatched = false;
        for (Piece piece : pieces) {
          if (piece.matched() && !previousMatched && !out.isEmpty()) {
            out.set(out.size() - 1, out.getLast() + piece.text());
          } else {
            out.add(piece.text());
          }
          previousMatched = piece.matched();
        }
      }
      case "MergedWithNext" -> {
        StringBuilder pending = new StringBuilder();
        for (Piece piece : pieces) {
          if (piece.matched()) {
            if (!pending.isEmpty()) {
              out.add(pending.toString());
            }
            pending.setLength(0);
            pending.append(piece.text());
          } else {
            pending.append(piece.text());
            out.add(pending.toString());
            pending.setLength(0);
          }
        }
        if (!pending.isEmpty()) {
          out.add(pending.toString());
        }
      }
      case "Contiguous" -> {
        boolean previousMatched = false;
        for (Piece piece : pieces) {
          if (piece.matched() && previousMatched) {
            out.set(out.size() - 1, out.getLast() + piece.text());
          } else {
            out.add(piece.text());
          }
          previousMatched = piece.matched();
        }
      }
      default -> pieces.forEach(p -> out.add(p.text()));
    }
    return out;
  }
}
