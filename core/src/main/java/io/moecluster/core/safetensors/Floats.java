package io.moecluster.core.safetensors;

import io.moecluster.core.tensor.BFloat16;
import io.moecluster.core.tensor.DType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** Conversions between stored tensor elements (little-endian, per the format) and floats. */
final class Floats {
  private Floats() {}

  static final ValueLayout.OfFloat F32_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  static final ValueLayout.OfShort I16_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /**
   * Decodes {@code count} elements of {@code dtype} from {@code src} into {@code dst[0..count)}.
   */
  static void decode(MemorySegment src, DType dtype, float[] dst, int count) {
    switch (dtype) {
      case F32 -> MemorySegment.copy(src, F32_LE, 0, dst, 0, count);
      case BF16 -> {
        for (int i = 0; i < count; i++) {
          dst[i] = BFloat16.toFloat(src.getAtIndex(I16_LE, i));
        }
      }
      case F16 -> {
        for (int i = 0; i < count; i++) {
          dst[i] = Float.float16ToFloat(src.getAtIndex(I16_LE, i));
        }
      }
    }
  }

  /** Widens {@code count} F16 elements of {@code src} into F32 elements of {@code dst}. */
  static void widenF16(MemorySegment src, MemorySegment dst, long count) {
    for (long i = 0; i < count; i++) {
      dst.setAtIndex(F32_LE, i, Float.float16ToFloat(src.getAtIndex(I16_LE, i)));
    }
  }

  /**
   * Encodes as many of {@code values[from..)} as fit into {@code buf} (little-endian, cleared
   * first) and flips it for writing; returns the index of the first value not encoded.
   */
  static int encode(float[] values, int from, DType dtype, ByteBuffer buf) {
    buf.clear();
    int n = Math.min(values.length - from, buf.capacity() / dtype.byteSize());
    switch (dtype) {
      case F32 -> {
        buf.asFloatBuffer().put(values, from, n);
        buf.position(n * 4);
      }
      case BF16 -> {
        for (int i = 0; i < n; i++) {
          buf.putShort(BFloat16.fromFloat(values[from + i]));
        }
      }
      case F16 -> {
        for (int i = 0; i < n; i++) {
          buf.putShort(Float.floatToFloat16(values[from + i]));
        }
      }
    }
    buf.flip();
    return from + n;
  }
}
