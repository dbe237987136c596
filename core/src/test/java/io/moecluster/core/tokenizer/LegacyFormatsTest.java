package io.moecluster.core.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Files;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Older and newer spellings of the same tokenizer: a Metaspace pre-tokenizer and decoder instead of
 * the Prepend/Replace normalizer (Mistral, early Llama exports), and merges as [a, b] pairs.
 */
class LegacyFormatsTest {
  private static final ObjectMapper MAPPER = new ObjectMapper();
  private static final List<String> TEXTS =
      List.of("Hello world", "This is a test", "héllo wörld", "你好，世界 🎉", "a\nb");

  private static ObjectNode llama2Json() throws Exception {
    return (ObjectNode)
        MAPPER.readTree(Files.readString(TestTokenizers.llama2Dir().resolve("tokenizer.json")));
  }

  @Test
  void metaspacePreTokenizerAndDecoderEncodeLikeTheNormalizerForm() throws Exception {
    ObjectNode root = llama2Json();
    root.putNull("normalizer");
    ObjectNode pre = root.putObject("pre_tokenizer");
    pre.put("type", "Metaspace");
    pre.put("replacement", "▁");
    pre.put("add_prefix_space", true);
    pre.put("prepend_scheme", "first");
    ObjectNode decoder = root.putObject("decoder");
    decoder.put("type", "Sequence");
    ArrayNode steps = decoder.putArray("decoders");
    steps
        .addObject()
        .put("type", "Metaspace")
        .put("replacement", "▁")
        .put("add_prefix_space", true);
    steps.addObject().put("type", "ByteFallback");
    steps.addObject().put("type", "Fuse");
    Tokenizer legacy = Tokenizer.fromJson(MAPPER.writeValueAsString(root), null);
    Tokenizer current = TestTokenizers.llama2();
    for (String text : TEXTS) {
      assertArrayEquals(current.encode(text), legacy.encode(text), text);
      assertEquals(text, legacy.decode(legacy.encode(text, false)), text);
      assertEquals(text, legacy.decode(legacy.encode(text), true), text);
    }
  }

  @Test
  void mergesAsPairsGiveTheSameIds() throws Exception {
    ObjectNode root = llama2Json();
    ObjectNode model = (ObjectNode) root.get("model");
    ArrayNode pairs = MAPPER.createArrayNode();
    model
        .get("merges")
        .forEach(
            merge -> {
              String text = merge.asText();
              int space = text.indexOf(' ', 1); // first separator after a leading-space token
              pairs.addArray().add(text.substring(0, space)).add(text.substring(space + 1));
            });
    model.set("merges", pairs);
    Tokenizer fromPairs = Tokenizer.fromJson(MAPPER.writeValueAsString(root), null);
    for (String text : TEXTS) {
      assertArrayEquals(TestTokenizers.llama2().encode(text), fromPairs.encode(text), text);
    }
  }

  @Test
  void translatesHuggingFaceRegexesForJava() {
    assertEquals("\\p{IsHan}+|\\p{IsL}|\\p{IsN}", HfRegex.translate("\\p{Han}+|\\p{L}|\\p{N}"));
    assertEquals("\\\\p{L}", HfRegex.translate("\\\\p{L}"));
    assertEquals(
        List.of("你好", " world", " ", "123"),
        SplitBehavior.apply(
            HfRegex.compile("\\p{Han}+| ?\\p{L}+|\\s+(?!\\S)|\\s+|\\p{N}+", "test"),
            "Isolated",
            false,
            "你好 world 123"));
  }
}
