package io.moecluster.core.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Map;

/**
 * The special tokens wrapped around an encoded single sequence: from tokenizer.json's
 * "post_processor" (TemplateProcessing, RobertaProcessing, BertProcessing), or, when that adds
 * nothing, from add_bos_token / add_eos_token in tokenizer_config.json.
 */
record PostProcessor(int[] prefix, int[] suffix) {
  static final String SUPPORTED =
      "TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence";

  int[] apply(int[] ids) {
    int[] out = new int[prefix.length + ids.length + suffix.length];
    System.arraycopy(prefix, 0, out, 0, prefix.length);
    System.arraycopy(ids, 0, out, prefix.length, ids.length);
    System.arraycopy(suffix, 0, out, prefix.length + ids.length, suffix.length);
    return out;
  }

  /** The first special token the template puts before the text, which is the BOS. */
  int leadingToken() {
    return prefix.length > 0 ? prefix[0] : -1;
  }

  static PostProcessor build(
      JsonNode node, TokenizerConfig config, Map<String, Integer> tokenIds, String source) {
    PostProcessor fromJson = fromJson(node, tokenIds, source);
    if (fromJson != null) {
      return fromJson;
    }
    int bos = idOrMinusOne(config.bosToken(), tokenIds);
    int eos = idOrMinusOne(config.eosToken(), tokenIds);
    boolean addBos = Boolean.TRUE.equals(config.addBosToken()) && bos >= 0;
    boolean addEos = Boolean.TRUE.equals(config.addEosToken()) && eos >= 0;
    return new PostProcessor(
        addBos ? new int[] {bos} : new int[0], addEos ? new int[] {eos} : new int[0]);
  }

  private static int idOrMinusOne(String token, Map<String, Integer> tokenIds) {
    return token == null ? -1 : tokenIds.getOrDefault(token, -1);
  }

  /** Null when the post-processor adds no tokens, so the config's flags decide. */
  private static PostProcessor fromJson(
      JsonNode node, Map<String, Integer> tokenIds, String source) {
    if (node == null || node.isNull()) {
      return null;
    }
    String type = JsonFields.type(node, source, "post_processor");
    return switch (type) {
      case "ByteLevel" -> null;
      case "Sequence" -> {
        PostProcessor found = null;
        for (JsonNode step : JsonFields.required(node, "processors", source, "Sequence")) {
          PostProcessor candidate = fromJson(step, tokenIds, source);
          if (candidate != null && found == null) {
            found = candidate;
          }
        }
        yield found;
      }
      case "TemplateProcessing" -> template(node, source);
      case "RobertaProcessing", "BertProcessing" -> {
        int cls = JsonFields.required(node, "cls", source, type).get(1).asInt();
        int sep = JsonFields.required(node, "sep", source, type).get(1).asInt();
        yield new PostProcessor(new int[] {cls}, new int[] {sep});
      }
      default ->
          throw new TokenizerException(
              JsonFields.unsupported(source, "post_processor", type, SUPPORTED));
    };
  }

  private static PostProcessor template(JsonNode node, String source) {
    JsonNode single = JsonFields.required(node, "single", source, "TemplateProcessing");
    JsonNode specials = node.path("special_tokens");
    IntArrayBuilder prefix = new IntArrayBuilder(2);
    IntArrayBuilder suffix = new IntArrayBuilder(2);
    boolean afterSequence = false;
    for (JsonNode item : single) {
      if (item.has("Sequence")) {
        afterSequence = true;
        continue;
      }
      String name = item.path("SpecialToken").path("id").asText(null);
      JsonNode ids = specials.path(name).path("ids");
      if (name == null || !ids.isArray()) {
        throw new TokenizerException(
            source
                + ": TemplateProcessing uses special token "
                + name
                + " that is missing from its special_tokens map; add it there");
      }
      for (JsonNode id : ids) {
        (afterSequence ? suffix : prefix).add(id.asInt());
      }
    }
    return new PostProcessor(prefix.toArray(), suffix.toArray());
  }
}
