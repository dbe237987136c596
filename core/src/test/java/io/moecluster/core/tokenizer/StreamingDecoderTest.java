package io.moecluster.core.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Token-by-token decoding never emits half a character and adds up to a full decode. */
class StreamingDecoderTest {
  private static final String MIXED = "Hi 👩‍👩‍👧 and 🎉! 你好，世界 — naïve \u0b85 ઌ 𝔘 end";

  @Test
  void llamaStreamsEmojiAndCjkWithoutBrokenCharacters() {
    Tokenizer tokenizer = TestTokenizers.llama2();
    assertStreamsCleanly(tokenizer, tokenizer.encode(MIXED), true);
    assertStreamsCleanly(tokenizer, tokenizer.encode(MIXED), false);
  }

  @Test
  void byteLevelStreamsEmojiAndCjkWithoutBrokenCharacters() {
    Tokenizer tokenizer = TestTokenizers.byteLevel();
    assertStreamsCleanly(tokenizer, tokenizer.encode(MIXED), true);
    assertStreamsCleanly(tokenizer, tokenizer.encode(MIXED), false);
  }

  @Test
  void firstTextAfterBosHasItsMetaspaceRemovedLikeHuggingFace() {
    Tokenizer tokenizer = TestTokenizers.llama2();
    StreamingDecoder stream = tokenizer.streamingDecoder(true);
    assertEquals("", stream.push(1));
    assertEquals("Hello", stream.push(15043));
    assertEquals(" world", stream.push(3186));
    assertEquals("", stream.flush());
  }

  @Test
  void holdsBackByteFallbackTokensUntilTheCharacterIsComplete() {
    Tokenizer tokenizer = TestTokenizers.llama2();
    StreamingDecoder stream = tokenizer.streamingDecoder(true);
    // "▁" then 🎉 as <0xF0> <0x9F> <0x8E> <0x89>
    assertEquals("", stream.push(29871));
    assertEquals("", stream.push(243));
    assertEquals("", stream.push(162));
    assertEquals("", stream.push(145));
    assertEquals("🎉", stream.push(140));
  }

  @Test
  void flushTurnsAnUnfinishedCharacterIntoReplacement() {
    Tokenizer tokenizer = TestTokenizers.llama2();
    StreamingDecoder stream = tokenizer.streamingDecoder(true);
    assertEquals("", stream.push(243));
    assertEquals("", stream.push(162));
    assertEquals("\uFFFD", stream.flush());
  }

  private static void assertStreamsCleanly(Tokenizer tokenizer, int[] ids, boolean skipSpecial) {
    StreamingDecoder stream = tokenizer.streamingDecoder(skipSpecial);
    List<String> deltas = new ArrayList<>();
    for (int id : ids) {
      deltas.add(stream.push(id));
    }
    deltas.add(stream.flush());
    for (String delta : deltas) {
      assertFalse(delta.contains("\uFFFD"), "broken character in delta " + deltas);
      if (!delta.isEmpty()) {
        assertFalse(Character.isHighSurrogate(delta.charAt(delta.length() - 1)), "split surrogate");
      }
    }
    assertEquals(tokenizer.decode(ids, skipSpecial), String.join("", deltas));
    if (skipSpecial) {
      assertEquals(MIXED, String.join("", deltas));
    }
  }
}
