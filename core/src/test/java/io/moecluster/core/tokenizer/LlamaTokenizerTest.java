package io.moecluster.core.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.OptionalInt;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The Llama 2 tokenizer (metaspace normalizer, BPE with byte fallback) against HF's ids. */
class LlamaTokenizerTest {
  private final Tokenizer tokenizer = TestTokenizers.llama2();

  @Test
  void encodesKnownSentencesWithBos() {
    assertArrayEquals(new int[] {1, 15043, 3186}, tokenizer.encode("Hello world"));
    assertArrayEquals(new int[] {1, 910, 338, 263, 1243}, tokenizer.encode("This is a test"));
    assertArrayEquals(new int[] {15043, 3186}, tokenizer.encode("Hello world", false));
  }

  /** Expected ids come from Hugging Face tokenizers 0.23 on the same tokenizer.json. */
  @Test
  void matchesHuggingFaceOnSpacesBytesAndUnicode() {
    assertArrayEquals(
        new int[] {1, 259, 3275, 322, 26203, 259}, tokenizer.encode("  lead and trail  "));
    assertArrayEquals(new int[] {1, 263, 13, 12, 29890}, tokenizer.encode("a\n\tb"));
    assertArrayEquals(
        new int[] {1, 298, 3610, 417, 281, 1340, 430}, tokenizer.encode("héllo wörld"));
    assertArrayEquals(
        new int[] {1, 29871, 30919, 31076, 30214, 30793, 30967}, tokenizer.encode("你好，世界"));
    assertArrayEquals(
        new int[] {
          1, 29871, 243, 162, 148, 172, 30722, 243, 162, 148, 172, 30722, 243, 162, 148, 170, 29871,
          243, 162, 145, 140
        },
        tokenizer.encode("👩‍👩‍👧 🎉"));
  }

  @Test
  void knowsItsSpecialTokens() {
    assertEquals(OptionalInt.of(1), tokenizer.bosTokenId());
    assertEquals(Set.of(2), tokenizer.eosTokenIds());
    assertEquals(OptionalInt.of(0), tokenizer.tokenId("<unk>"));
    assertEquals(32000, tokenizer.vocabSize());
    assertEquals("▁Hello", tokenizer.token(15043));
    assertEquals("<0x0A>", tokenizer.token(13));
    assertTrue(tokenizer.isSpecial(1));
    assertTrue(tokenizer.isSpecial(2));
    assertFalse(tokenizer.isSpecial(15043));
    assertTrue(tokenizer.chatTemplate().isEmpty());
  }

  @Test
  void decodesLikeHuggingFace() {
    assertEquals("<s> Hello world", tokenizer.decode(new int[] {1, 15043, 3186}));
    assertEquals("Hello world", tokenizer.decode(new int[] {1, 15043, 3186}, true));
    assertEquals("Hello world", tokenizer.decode(new int[] {15043, 3186}));
  }

  @Test
  void specialTokensInTextBecomeTheirIdsAndCanBeSkipped() {
    int[] ids = tokenizer.encode("<s>Hi</s>", false);
    assertArrayEquals(new int[] {1, 6324, 2}, ids); // "▁Hi": text after a token gets the prefix
    assertEquals("Hi", tokenizer.decode(ids, true));
    assertEquals("<s> Hi</s>", tokenizer.decode(ids, false));
    int[] withBos = tokenizer.encode("Hi</s>x");
    assertArrayEquals(new int[] {1, 6324, 2, 921}, withBos);
    assertEquals("Hi x", tokenizer.decode(withBos, true));
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "Hello world",
        "The quick brown fox jumps over the lazy dog. 1234567890!",
        " leading space",
        "trailing space ",
        "  two   gaps   ",
        "line one\nline two\r\n\ttabbed\n\n",
        "Crème brûlée, naïve façade, Ærøskøbing",
        "日本語のテキストと中文文本",
        "👩‍👩‍👧‍👦 family, 👍🏽 thumbs, 🇺🇸 flag",
        "Byte fallback: \u0b85 ઌ ᚠ 𝔘 \u0000 \u007f",
        "",
        " ",
      })
  void roundTrips(String text) {
    assertEquals(text, tokenizer.decode(tokenizer.encode(text, false)));
    assertEquals(text, tokenizer.decode(tokenizer.encode(text), true));
  }

  @Test
  void encodesLongWordsWithoutQuadraticBlowUp() {
    String text = "supercalifragilistic".repeat(5_000);
    // A guard against quadratic merging (which takes minutes here), not a speed target.
    int[] ids =
        org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(
            java.time.Duration.ofSeconds(30), () -> tokenizer.encode(text, false));
    assertEquals(text, tokenizer.decode(ids));
  }
}
