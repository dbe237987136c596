package io.moecluster.core.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The tokenizer.json "pre_tokenizer": splits a normalized segment into the words BPE sees. */
@FunctionalInterface
interface PreTokenizer {
  String SUPPORTED = "Sequence, ByteLevel, Split, Metaspace";

  PreTokenizer WHOLE = (text, atTextStart) -> text.isEmpty() ? List.of() : List.of(text);

  /**
   * @param atTextStart whether the piece begins the original text (not after an added token);
   *     Metaspace with prepend_scheme "first" only adds its prefix there
   */
  List<String> split(String text, boolean atTextStart);

  static PreTokenizer fromJson(JsonNode node, String source) {
    if (node == null || node.isNull()) {
      return WHOLE;
    }
    String type = JsonFields.type(node, source, "pre_tokenizer");
    return switch (type) {
      case "Sequence" -> sequence(node, source);
      case "ByteLevel" -> byteLevel(node);
      case "Split" -> split(node, source);
      case "Metaspace" -> metaspace(node);
      default ->
          throw new TokenizerException(
              JsonFields.unsupported(source, "pre_tokenizer", type, SUPPORTED));
    };
  }

  private static PreTokenizer sequence(JsonNode node, String source) {
    List<PreTokenizer> steps = new ArrayList<>();
    for (JsonNode step : JsonFields.required(node, "pretokenizers", source, "Sequence")) {
      steps.add(fromJson(step, source));
    }
    return (text, atTextStart) -> {
      List<String> pieces = List.of(text);
      for (PreTokenizer step : steps) {
        List<String> next = new ArrayList<>();
        for (int i = 0; i < pieces.size(); i++) {
          next.addAll(step.split(pieces.get(i), atTextStart && i == 0));
        }
        pieces = next;
      }
      return pieces;
    };
  }

  private static PreTokenizer byteLevel(JsonNode node) {
    boolean addPrefixSpace = JsonFields.bool(node, "add_prefix_space", true);
    boolean useRegex = JsonFields.bool(node, "use_regex", true);
    Pattern words = useRegex ? HfRegex.compile(HfRegex.GPT2_PATTERN, "GPT-2 pattern") : null;
    return (text, atTextStart) -> {
      if (text.isEmpty()) {
        return List.of();
      }
      String prefixed = addPrefixSpace && !text.startsWith(" ") ? " " + text : text;
      List<String> pieces = new ArrayList<>();
      if (words == null) {
        pieces.add(ByteLevelAlphabet.encode(prefixed));
      } else {
        Matcher matcher = words.matcher(prefixed);
        while (matcher.find()) {
          pieces.add(ByteLevelAlphabet.encode(matcher.group()));
        }
      }
      return pieces;
    };
  }

  private static PreTokenizer split(JsonNode node, String source) {
    Pattern pattern = JsonFields.pattern(node, source, "the Split pre_tokenizer");
    String behavior = JsonFields.text(node, "behavior", "Isolated");
    boolean invert = JsonFields.bool(node, "invert", false);
    if (!List.of("Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous")
        .contains(behavior)) {
      throw new TokenizerException(
          JsonFields.unsupported(
              source,
              "Split behavior",
              behavior,
              "Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous"));
    }
    return (text, atTextStart) -> SplitBehavior.apply(pattern, behavior, invert, text);
  }

  private static PreTokenizer metaspace(JsonNode node) {
    String replacement = JsonFields.text(node, "replacement", "\u2581");
    String scheme = JsonFields.text(node, "prepend_scheme", null);
    if (scheme == null) {
      scheme = JsonFields.bool(node, "add_prefix_space", true) ? "always" : "never";
    }
    String prependScheme = scheme;
    boolean split = JsonFields.bool(node, "split", true);
    return (text, atTextStart) -> {
      if (text.isEmpty()) {
        return List.of();
      }
      String replaced = text.replace(" ", replacement);
      boolean prepend =
          prependScheme.equals("always") || (prependScheme.equals("first") && atTextStart);
      if (prepend && !replaced.startsWith(replacement)) {
        replaced = replacement + replaced;
      }
      if (!split) {
        return List.of(replaced);
      }
      List<String> pieces = new ArrayList<>();
      int start = 0;
      int at = replaced.indexOf(replacement, 1);
      while (at > 0) {
        pieces.add(replaced.substring(start, at));
        start = at;
        at = replaced.indexOf(replacement, at + replacement.length());
      }
      pieces.add(replaced.substring(start));
      return pieces;
    };
  }
}
