package io.moecluster.core.model;

import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** Token embedding lookup: copies one row of {@code embed_tokens} out as floats. */
final class Embedding {
  private static final ValueLayout.OfFloat F32 =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  private static final ValueLayout.OfShort BF16 =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  private Embedding() {}

  static void lookup(Matrix embed, int token, float[] dst, int dstOff) {
    int cols = embed.cols();
    long base = (long) token * cols;
    switch (embed.dtype()) {
      case F32 -> {
        for (int i = 0; i < cols; i++) {
          dst[dstOff + i] = embed.data().getAtIndex(F32, base + i);
        }
      }
      case BF16 -> {
        for (int i = 0; i < cols; i++) {
          dst[dstOff + i] = Float.intBitsToFloat((embed.data().getAtIndex(BF16, base + i) & 0xFFFF) << 16);
        }
      }
      case F16 -> throw new IllegalStateException("F16 weights are widened on load");
    }
  }
}
