package io.moecluster.core.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * The parts of transformers' tokenizer_config.json the runtime uses.
 *
 * @param addBosToken add_bos_token, or null when the file does not say
 * @param addEosToken add_eos_token, or null when the file does not say
 * @param chatTemplate the "default" Jinja chat template, or null
 */
record TokenizerConfig(
    String bosToken,
    String eosToken,
    String unkToken,
    String padToken,
    Boolean addBosToken,
    Boolean addEosToken,
    String chatTemplate) {

  static final TokenizerConfig EMPTY =
      new TokenizerConfig(null, null, null, null, null, null, null);

  TokenizerConfig withChatTemplate(String template) {
    return new TokenizerConfig(bosToken, eosToken, unkToken, padToken, addBosToken, addEosToken, template);
  }

  static TokenizerConfig parse(String json, ObjectMapper mapper, String source) {
    if (json == null) {
      return EMPTY;
    }
    JsonNode root;
    try {
      root = mapper.readTree(json);
    } catch (Exception e) {
      throw new TokenizerException(
          source + " is not valid JSON (" + e.getMessage() + "); re-download or fix the file", e);
    }
    if (root == null || !root.isObject()) {
      throw new TokenizerException(source + " must contain a JSON object; re-download the file");
    }
    return new TokenizerConfig(
        tokenContent(root.get("bos_token")),
        tokenContent(root.get("eos_token")),
        tokenContent(root.get("unk_token")),
        tokenContent(root.get("pad_token")),
        optionalBool(root.get("add_bos_token")),
        optionalBool(root.get("add_eos_token")),
        chatTemplate(root.get("chat_template"), source));
  }

  /** Special tokens are written either as a string or as an AddedToken object with "content". */
  private static String tokenContent(JsonNode node) {
    if (node == null || node.isNull()) {
      return null;
    }
    if (node.isTextual()) {
      return node.asText();
    }
    JsonNode content = node.get("content");
    return content == null || content.isNull() ? null : content.asText();
  }

  private static Boolean optionalBool(JsonNode node) {
    return node == null || node.isNull() ? null : node.asBoolean();
  }

  private static String chatTemplate(JsonNode node, String source) {
    if (node == null || node.isNull()) {
      return null;
    }
    if (node.isTextual()) {
      return node.asText();
    }
    if (node.isArray()) {
      for (JsonNode named : node) {
        if ("default".equals(JsonFields.text(named, "name", null))) {
          return JsonFields.text(named, "template", null);
        }
      }
      return null;
    }
    throw new TokenizerException(
        source + ": chat_template must be a string or a list of {name, template}");
  }
}
