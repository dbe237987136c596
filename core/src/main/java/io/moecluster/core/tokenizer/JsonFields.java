package io.moecluster.core.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;

/** Reads tokenizer.json fields, failing with the file name and the JSON path when one is wrong. */
final class JsonFields {
  private JsonFields() {}

  static String type(JsonNode component, String source, String what) {
    JsonNode type = component.get("type");
    if (type == null || !type.isTextual()) {
      throw new TokenizerException(
          source + ": the " + what + " has no \"type\" field; fix or regenerate the file");
    }
    return type.asText();
  }

  static String text(JsonNode node, String field, String fallback) {
    JsonNode value = node.get(field);
    return value == null || value.isNull() ? fallback : value.asText();
  }

  static boolean bool(JsonNode node, String field, boolean fallback) {
    JsonNode value = node.get(field);
    return value == null || value.isNull() ? fallback : value.asBoolean();
  }

  static int integer(JsonNode node, String field, int fallback) {
    JsonNode value = node.get(field);
    return value == null || value.isNull() ? fallback : value.asInt();
  }

  static JsonNode required(JsonNode node, String field, String source, String where) {
    JsonNode value = node.get(field);
    if (value == null || value.isNull()) {
      throw new TokenizerException(
          source + ": " + where + " lacks the \"" + field + "\" field; fix or regenerate the file");
    }
    return value;
  }

  /** The {"String": ..} or {"Regex": ..} pattern object used by Replace and Split. */
  static java.util.regex.Pattern pattern(JsonNode node, String source, String where) {
    JsonNode pattern = required(node, "pattern", source, where);
    if (pattern.has("String")) {
      return java.util.regex.Pattern.compile(
          java.util.regex.Pattern.quote(pattern.get("String").asText()));
    }
    if (pattern.has("Regex")) {
      return HfRegex.compile(pattern.get("Regex").asText(), source);
    }
    throw new TokenizerException(
        source + ": " + where + " has a pattern that is neither {\"String\"} nor {\"Regex\"}");
  }

  static String unsupported(String source, String kind, String type, String supported) {
    return source
        + ": the "
        + kind
        + " type \""
        + type
        + "\" is not supported (supported: "
        + supported
        + "); use a tokenizer whose "
        + kind
        + " is one of those";
  }
}
