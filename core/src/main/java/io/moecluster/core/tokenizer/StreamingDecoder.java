package io.moecluster.core.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Turns generated token ids into text one token at a time, for streaming responses. Bytes of a
 * character split over several tokens (byte-fallback or byte-level) are held back until the
 * character is complete, so no delta ever contains half a character. The concatenation of all
 * deltas and {@link #flush()} equals {@link Tokenizer#decode(int[], boolean)} of the same ids. One
 * instance per sequence; not thread-safe.
 */
public final class StreamingDecoder {
  private final Tokenizer tokenizer;
  private final TokenDecoder decoder;
  private final boolean skipSpecialTokens;
  private byte[] pending = new byte[16];
  private int pendingLength;
  private boolean anyToken;
  private boolean anyText;
  private int stripRemaining;

  StreamingDecoder(Tokenizer tokenizer, TokenDecoder decoder, boolean skipSpecialTokens) {
    this.tokenizer = tokenizer;
    this.decoder = decoder;
    this.skipSpecialTokens = skipSpecialTokens;
    this.stripRemaining = decoder.stripStart();
  }

  /** Adds one token and returns the text it completes (possibly empty). */
  public String push(int tokenId) {
    String token = tokenizer.token(tokenId);
    if (skipSpecialTokens && tokenizer.isSpecial(tokenId)) {
      return "";
    }
    if (decoder.joinWithSpaces() && anyToken) {
      append(new byte[] {' '});
    }
    append(decoder.bytes(token, !anyToken));
    anyToken = true;
    int complete = completePrefixLength();
    String text = new String(pending, 0, complete, StandardCharsets.UTF_8);
    System.arraycopy(pending, complete, pending, 0, pendingLength - complete);
    pendingLength -= complete;
    return emit(text);
  }

  /** Returns what is held back; bytes that never formed a character become U+FFFD. */
  public String flush() {
    String text = new String(pending, 0, pendingLength, StandardCharsets.UTF_8);
    pendingLength = 0;
    return emit(text);
  }

  private void append(byte[] bytes) {
    if (pendingLength + bytes.length > pending.length) {
      pending = Arrays.copyOf(pending, Math.max(pending.length * 2, pendingLength + bytes.length));
    }
    System.arraycopy(bytes, 0, pending, pendingLength, bytes.length);
    pendingLength += bytes.length;
  }

  /** The pending bytes up to an incomplete UTF-8 sequence at the end, if there is one. */
  private int completePrefixLength() {
    int n = pendingLength;
    for (int i = n - 1; i >= 0 && i >= n - 4; i--) {
      int b = pending[i] & 0xFF;
      if ((b & 0xC0) == 0x80) {
        continue;
      }
      int needed =
          b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xC2 && b <= 0xDF ? 2 : 1;
      return needed > n - i ? i : n;
    }
    return n;
  }

  /** Applies the decoder's Strip to the start of the whole output, however it arrives. */
  private String emit(String text) {
    if (anyText || text.isEmpty()) {
      return text;
    }
    String result = text;
    while (stripRemaining > 0 && !result.isEmpty() && result.startsWith(decoder.stripContent())) {
      result = result.substring(decoder.stripContent().length());
      stripRemaining--;
    }
    if (!result.isEmpty()) {
      anyText = true;
    }
    return result;
  }
}
