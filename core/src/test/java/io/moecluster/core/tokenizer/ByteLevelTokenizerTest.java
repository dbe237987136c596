package io.moecluster.core.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.OptionalInt;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Byte-level BPE (GPT-2 / Qwen style) through a trained tokenizer.json. */
class ByteLevelTokenizerTest {
  /** Qwen2's pre-tokenization regex, as written in its tokenizer.json. */
  static final String QWEN2_PATTERN =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r"
          + "\\n"
          + "\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r"
          + "\\n"
          + "]*|\\s*[\\r"
          + "\\n"
          + "]+|\\s+(?!\\S)|\\s+";

  private final Tokenizer tokenizer = TestTokenizers.byteLevel();

  @ParameterizedTest
  @ValueSource(
      strings = {
        "We hold these truths to be self-evident.",
        " leading space",
        "trailing space ",
        "  two   gaps   ",
        "line one\nline two\r\n\ttabbed\n\n",
        "Crème brûlée, naïve façade, Ærøskøbing",
        "日本語のテキストと中文文本",
        "👩‍👩‍👧‍👦 family, 👍🏽 thumbs, 🇺🇸 flag",
        "control \u0000\u0001\u007f and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "",
      })
  void roundTrips(String text) {
    assertEquals(text, tokenizer.decode(tokenizer.encode(text, false)));
    assertEquals(text, tokenizer.decode(tokenizer.encode(text), true));
  }

  @Test
  void addsBosFromTheTemplateAndKnowsEos() {
    int[] ids = tokenizer.encode("Liberty");
    assertEquals(0, ids[0]);
    assertArrayEquals(
        tokenizer.encode("Liberty", false), java.util.Arrays.copyOfRange(ids, 1, ids.length));
    assertEquals(OptionalInt.of(0), tokenizer.bosTokenId());
    assertEquals(Set.of(1), tokenizer.eosTokenIds());
    assertEquals("<s>Liberty", tokenizer.decode(ids));
  }

  @Test
  void learnedMergesShortenFrequentWords() {
    int[] ids = tokenizer.encode(" the United States", false);
    assertTrue(ids.length <= 4, "expected merged tokens, got " + ids.length);
    assertEquals(OptionalInt.of(tokenizer.tokenId("Ġthe").getAsInt()), OptionalInt.of(ids[0]));
  }

  @Test
  void specialTokensInTextAreNotSplit() {
    int[] ids = tokenizer.encode("<s>Hi</s>", false);
    assertEquals(0, ids[0]);
    assertEquals(1, ids[ids.length - 1]);
    assertEquals("Hi", tokenizer.decode(ids, true));
    assertEquals("<s>Hi</s>", tokenizer.decode(ids));
  }

  @Test
  void splitRegexPreTokenizerWithNfcMatchesQwenStyleFiles() throws Exception {
    ObjectMapper mapper = new ObjectMapper();
    ObjectNode root = (ObjectNode) mapper.readTree(TestTokenizers.trained().tokenizerJson());
    root.putObject("normalizer").put("type", "NFC");
    ObjectNode sequence = root.putObject("pre_tokenizer");
    sequence.put("type", "Sequence");
    ObjectNode split = sequence.putArray("pretokenizers").addObject();
    split.put("type", "Split");
    split.putObject("pattern").put("Regex", QWEN2_PATTERN);
    split.put("behavior", "Isolated");
    split.put("invert", false);
    ObjectNode byteLevel =
        ((com.fasterxml.jackson.databind.node.ArrayNode) sequence.get("pretokenizers")).addObject();
    byteLevel.put("type", "ByteLevel");
    byteLevel.put("add_prefix_space", false);
    byteLevel.put("trim_offsets", false);
    byteLevel.put("use_regex", false);
    root.putObject("post_processor").put("type", "ByteLevel").put("trim_offsets", false);
    Tokenizer qwenStyle = Tokenizer.fromJson(mapper.writeValueAsString(root), null);

    String text = "We're   testing  it's 2024 digits\n\n and e\u0301 combining";
    assertEquals(
        java.text.Normalizer.normalize(text, java.text.Normalizer.Form.NFC),
        qwenStyle.decode(qwenStyle.encode(text)));
    // Qwen splits numbers into single digits, GPT-2 keeps runs together.
    int[] digits = qwenStyle.encode("2024", false);
    assertEquals(4, digits.length);
    assertArrayEquals(tokenizer.encode("the people", false), qwenStyle.encode("the people", false));
    assertTrue(qwenStyle.encode(text).length > 0);
    assertTrue(qwenStyle.bosTokenId().isEmpty());
  }
}
