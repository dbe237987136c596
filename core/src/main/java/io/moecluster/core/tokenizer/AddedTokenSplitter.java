package io.moecluster.core.tokenizer;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Cuts raw text into added tokens and the ordinary text between them, before normalization, so that
 * "&lt;s&gt;" typed in a prompt becomes the BOS id and special tokens are never split. At a given
 * position the longest added token wins.
 */
final class AddedTokenSplitter {
  /** A piece of the input: an added token ({@code tokenId >= 0}) or text for the model. */
  record Segment(String text, int start, int tokenId) {
    boolean isAddedToken() {
      return tokenId >= 0;
    }
  }

  private final Pattern pattern;
  private final List<AddedToken> byGroup;

  AddedTokenSplitter(List<AddedToken> tokens) {
    List<AddedToken> sorted = new ArrayList<>(tokens);
    sorted.removeIf(token -> token.content().isEmpty());
    // Java alternation takes the first alternative that matches, so longest first is longest match.
    sorted.sort(Comparator.comparingInt((AddedToken t) -> t.content().length()).reversed());
    this.byGroup = sorted;
    if (sorted.isEmpty()) {
      this.pattern = null;
      return;
    }
    StringBuilder regex = new StringBuilder();
    for (AddedToken token : sorted) {
      if (!regex.isEmpty()) {
        regex.append('|');
      }
      regex.append('(');
      if (token.lstrip()) {
        regex.append("\\s*");
      }
      if (token.singleWord()) {
        regex.append("(?<!\\w)");
      }
      regex.append(Pattern.quote(token.content()));
      if (token.singleWord()) {
        regex.append("(?!\\w)");
      }
      if (token.rstrip()) {
        regex.append("\\s*");
      }
      regex.append(')');
    }
    this.pattern = Pattern.compile(regex.toString(), Pattern.UNICODE_CHARACTER_CLASS);
  }

  List<Segment> split(String text) {
    if (pattern == null) {
      return List.of(new Segment(text, 0, -1));
    }
    List<Segment> segments = new ArrayList<>();
    Matcher matcher = pattern.matcher(text);
    int last = 0;
    while (matcher.find()) {
      if (matcher.start() > last) {
        segments.add(new Segment(text.substring(last, matcher.start()), last, -1));
      }
      segments.add(new Segment(matcher.group(), matcher.start(), matchedToken(matcher).id()));
      last = matcher.end();
    }
    if (last < text.length()) {
      segments.add(new Segment(text.substring(last), last, -1));
    }
    return segments;
  }

  private AddedToken matchedToken(Matcher matcher) {
    for (int group = 1; group <= matcher.groupCount(); group++) {
      if (matcher.start(group) >= 0) {
        return byGroup.get(group - 1);
      }
    }
    throw new IllegalStateException("a match without a group");
  }
}
