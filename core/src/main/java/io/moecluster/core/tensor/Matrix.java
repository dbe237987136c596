package io.moecluster.core.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A read-only 2-D weight matrix in Hugging Face layout: {@code [rows = out features, cols = in
 * features]}, row-major, little-endian, over a memory segment (a view into a memory-mapped
 * checkpoint, or a copy of one: see {@code WeightPlacement}). Only {@link DType#F32} and {@link DType#BF16} reach the
 * kernels: F16 checkpoints are widened to F32 when they are loaded.
 */
public record Matrix(String name, DType dtype, int rows, int cols, MemorySegment data) {

  private static final ValueLayout.OfFloat F32_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);
  private static final ValueLayout.OfShort I16_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);

  public Matrix {
    if (dtype == DType.F16) {
      throw new IllegalArgumentException(name + ": F16 matrices must be widened to F32 first");
    }
    long expected = (long) rows * cols * dtype.byteSize();
    if (data.byteSize() != expected) {
      throw new IllegalArgumentException(
          name + ": " + data.byteSize() + " bytes for [" + rows + ", " + cols + "] " + dtype
              + " (expected " + expected + ")");
    }
  }

  /** Byte offset of row {@code r}. */
  public long rowOffset(int r) {
    return (long) r * cols * dtype.byteSize();
  }

  /** One element as a float; for tests and scalar reference code, not for hot loops. */
  public float get(int r, int c) {
    long index = (long) r * cols + c;
    return switch (dtype) {
      case F32 -> data.getAtIndex(F32_LE, index);
      case BF16 -> Float.intBitsToFloat((data.getAtIndex(I16_LE, index) & 0xFFFF) << 16);
      case F16 -> throw new IllegalStateException("unreachable");
    };
  }

  /** Total size of the weights in bytes (what a matrix-vector product must read). */
  public long byteSize() {
    return data.byteSize();
  }

  /** A matrix over a fresh heap copy of {@code values} ([rows, cols] row-major) in {@code dtype}. */
  public static Matrix of(String name, DType dtype, int rows, int cols, float[] values) {
    if (values.length != rows * cols) {
      throw new IllegalArgumentException(name + ": " + values.length + " values for " + rows + "x" + cols);
    }
    MemorySegment seg = MemorySegment.ofArray(new byte[Math.multiplyExact(values.length, dtype.byteSize())]);
    for (int i = 0; i < values.length; i++) {
      switch (dtype) {
        case F32 -> seg.setAtIndex(F32_LE, i, values[i]);
        case BF16 -> seg.setAtIndex(I16_LE, i, BFloat16.fromFloat(values[i]));
        case F16 -> throw new IllegalArgumentException("F16 matrices are widened to F32");
      }
    }
    return new Matrix(name, dtype, rows, cols, seg);
  }
}
