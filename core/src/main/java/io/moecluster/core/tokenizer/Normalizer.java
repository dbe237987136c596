package io.moecluster.core.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The tokenizer.json "normalizer": rewrites a text segment before it is split into words. */
@FunctionalInterface
interface Normalizer {
  String SUPPORTED = "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip";

  Normalizer IDENTITY = text -> text;

  String normalize(String text);

  static Normalizer fromJson(JsonNode node, String source) {
    if (node == null || node.isNull()) {
      return IDENTITY;
    }
    String type = JsonFields.type(node, source, "normalizer");
    return switch (type) {
      case "Sequence" -> {
        List<Normalizer> steps = new ArrayList<>();
        for (JsonNode step : JsonFields.required(node, "normalizers", source, "Sequence")) {
          steps.add(fromJson(step, source));
        }
        yield text -> {
          String result = text;
          for (Normalizer step : steps) {
            result = step.normalize(result);
          }
          return result;
        };
      }
      case "Prepend" -> {
        String prefix = JsonFields.required(node, "prepend", source, "Prepend").asText();
        // HF leaves empty segments empty, so text between two added tokens gains nothing.
        yield text -> text.isEmpty() ? text : prefix + text;
      }
      case "Replace" -> {
        Pattern pattern = JsonFields.pattern(node, source, "the Replace normalizer");
        String content = Matcher.quoteReplacement(JsonFields.text(node, "content", ""));
        yield text -> pattern.matcher(text).replaceAll(content);
      }
      case "NFC" -> text -> java.text.Normalizer.normalize(text, java.text.Normalizer.Form.NFC);
      case "NFD" -> text -> java.text.Normalizer.normalize(text, java.text.Normalizer.Form.NFD);
      case "NFKC" -> text -> java.text.Normalizer.normalize(text, java.text.Normalizer.Form.NFKC);
      case "NFKD" -> text -> java.text.Normalizer.normalize(text, java.text.Normalizer.Form.NFKD);
      case "Lowercase" -> text -> text.toLowerCase(Locale.ROOT);
      case "Strip" -> {
        boolean left = JsonFields.bool(node, "strip_left", true);
        boolean right = JsonFields.bool(node, "strip_right", true);
        yield text -> {
          String result = left ? text.stripLeading() : text;
          return right ? result.stripTrailing() : result;
        };
      }
      default ->
          throw new TokenizerException(
              JsonFields.unsupported(source, "normalizer", type, SUPPORTED));
    };
  }
}
