package io.moecluster.core.model;

import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Copies of weight matrices in off-heap memory of the process's own (see {@link WeightPlacement});
 * closing frees them all. A copy is a plain native segment, the same segment class as the
 * checkpoint's views, so the kernels C2 compiled on one are not deoptimised by the other.
 */
final class WeightCopies implements AutoCloseable {
  /** Page-aligned: a matrix never shares a page, or a cache line, with the next. */
  private static final long ALIGNMENT = 4096;

  private final Arena arena = Arena.ofShared();
  private final AtomicLong bytes = new AtomicLong();

  /** A read-only copy of {@code m}, with its name, type and shape. */
  Matrix copy(Matrix m) {
    MemorySegment copy = arena.allocate(m.data().byteSize(), ALIGNMENT);
    copy.copyFrom(m.data());
    bytes.addAndGet(copy.byteSize());
    return new Matrix(m.name(), m.dtype(), m.rows(), m.cols(), copy.asReadOnly());
  }

  /** Bytes copied so far. */
  long bytes() {
    return bytes.get();
  }

  @Override
  public void close() {
    arena.close();
  }
}
