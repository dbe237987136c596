package io.moecluster.core.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The tokenizer.json "decoder", reduced to what streaming needs: each token becomes a run of bytes
 * (so UTF-8 split across byte tokens can be held back), plus the rules that only touch the start of
 * the output (Strip's leading characters, Metaspace's prefix on the first token).
 */
final class TokenDecoder {
  static final String SUPPORTED =
      "Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace";

  private static final Pattern BYTE_TOKEN = Pattern.compile("<0x([0-9A-Fa-f]{2})>");

  /** A string rewrite applied to every token before it becomes bytes. */
  private record Rewrite(Pattern pattern, String replacement, boolean firstTokenOnlyStrip) {}

  private final List<Rewrite> rewrites = new ArrayList<>();
  private boolean byteFallback;
  private boolean byteLevel;
  private boolean joinWithSpaces;
  private String stripContent = " ";
  private int stripStart;

  private TokenDecoder() {}

  static TokenDecoder fromJson(JsonNode node, String source) {
    TokenDecoder decoder = new TokenDecoder();
    if (node == null || node.isNull()) {
      // HF joins tokens with spaces when a tokenizer has no decoder.
      decoder.joinWithSpaces = true;
      return decoder;
    }
    decoder.add(node, source);
    return decoder;
  }

  private void add(JsonNode node, String source) {
    String type = JsonFields.type(node, source, "decoder");
    switch (type) {
      case "Sequence" -> {
        for (JsonNode step : JsonFields.required(node, "decoders", source, "Sequence")) {
          add(step, source);
        }
      }
      case "Replace" -> {
        Pattern pattern = JsonFields.pattern(node, source, "the Replace decoder");
        String content = Matcher.quoteReplacement(JsonFields.text(node, "content", ""));
        rewrites.add(new Rewrite(pattern, content, false));
      }
      case "Metaspace" -> {
        String replacement = JsonFields.text(node, "replacement", "\u2581");
        String scheme = JsonFields.text(node, "prepend_scheme", null);
        boolean strip =
            scheme == null
                ? JsonFields.bool(node, "add_prefix_space", true)
                : !scheme.equals("never");
        rewrites.add(new Rewrite(Pattern.compile(Pattern.quote(replacement)), " ", strip));
      }
      case "ByteFallback" -> byteFallback = true;
      case "Fuse" -> {
        // Tokens are concatenated anyway; fusing changes nothing in a byte stream.
      }
      case "Strip" -> {
        if (JsonFields.integer(node, "stop", 0) != 0) {
          throw new TokenizerException(
              source + ": a Strip decoder with \"stop\" > 0 is not supported; set it to 0");
        }
        stripContent = JsonFields.text(node, "content", " ");
        stripStart = JsonFields.integer(node, "start", 0);
      }
      case "ByteLevel" -> byteLevel = true;
      default ->
          throw new TokenizerException(JsonFields.unsupported(source, "decoder", type, SUPPORTED));
    }
  }

  /** Leading occurrences of {@link #stripContent()} to drop from the very start of the output. */
  int stripStart() {
    return stripStart;
  }

  String stripContent() {
    return stripContent;
  }

  boolean joinWithSpaces() {
    return joinWithSpaces;
  }

  /**
   * @param firstToken whether this is the first token being decoded (after skipped special tokens),
   *     where Metaspace removes the prefix space
   */
  byte[] bytes(String token, boolean firstToken) {
    String text = token;
    for (Rewrite rewrite : rewrites) {
      String rewritten = rewrite.pattern().matcher(text).replaceAll(rewrite.replacement());
      if (rewrite.firstTokenOnlyStrip() && firstToken && !rewritten.equals(text)) {
        if (rewritten.startsWith(" ") && !text.startsWith(" ")) {
          rewritten = rewritten.substring(1);
        }
      }
      text = rewritten;
    }
    if (byteFallback) {
      Matcher matcher = BYTE_TOKEN.matcher(text);
      if (matcher.matches()) {
        return new byte[] {(byte) Integer.parseInt(matcher.group(1), 16)};
      }
    }
    if (byteLevel) {
      byte[] bytes = ByteLevelAlphabet.decodeOrNull(text);
      if (bytes != null) {
        return bytes;
      }
    }
    return text.getBytes(StandardCharsets.UTF_8);
  }
}
