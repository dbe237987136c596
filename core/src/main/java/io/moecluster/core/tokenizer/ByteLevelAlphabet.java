package io.moecluster.core.tokenizer;

import java.nio.charset.StandardCharsets;

/**
 * GPT-2's bytes-to-unicode table: every byte gets a printable character so that byte-level BPE can
 * work on strings. Printable Latin-1 bytes map to themselves; the rest are shifted to U+0100+.
 */
final class ByteLevelAlphabet {
  /** The 256 bytes in the order GPT-2's {@code bytes_to_unicode} lists them. */
  static final int[] BYTE_ORDER = new int[256];

  private static final char[] BYTE_TO_CHAR = new char[256];
  private static final int[] CHAR_TO_BYTE = new int[512];

  static {
    java.util.Arrays.fill(CHAR_TO_BYTE, -1);
    int count = 0;
    for (int b = 0; b < 256; b++) {
      if (isPrintable(b)) {
        BYTE_ORDER[count++] = b;
        BYTE_TO_CHAR[b] = (char) b;
      }
    }
    int shifted = 0;
    for (int b = 0; b < 256; b++) {
      if (!isPrintable(b)) {
        BYTE_ORDER[count++] = b;
        BYTE_TO_CHAR[b] = (char) (256 + shifted++);
      }
    }
    for (int b = 0; b < 256; b++) {
      CHAR_TO_BYTE[BYTE_TO_CHAR[b]] = b;
    }
  }

  private ByteLevelAlphabet() {}

  private static boolean isPrintable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  }

  static char charOf(int unsignedByte) {
    return BYTE_TO_CHAR[unsignedByte];
  }

  /** The text's UTF-8 bytes, each written as its alphabet character. */
  static String encode(String text) {
    byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
    char[] chars = new char[bytes.length];
    for (int i = 0; i < bytes.length; i++) {
      chars[i] = BYTE_TO_CHAR[bytes[i] & 0xFF];
    }
    return new String(chars);
  }

  /** The bytes a token stands for; null when a character is outside the alphabet. */
  static byte[] decodeOrNull(String token) {
    byte[] bytes = new byte[token.length()];
    for (int i = 0; i < token.length(); i++) {
      char c = token.charAt(i);
      if (c >= CHAR_TO_BYTE.length || CHAR_TO_BYTE[c] < 0) {
        return null;
      }
      bytes[i] = (byte) CHAR_TO_BYTE[c];
    }
    return bytes;
  }

  static byte[] utf8(String text) {
    return text.getBytes(StandardCharsets.UTF_8);
  }
}
