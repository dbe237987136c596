package io.moecluster.core.safetensors;

import java.util.StringJoiner;

/** Small helpers for tensor shapes, shared by the reader, the writer and their messages. */
final class Shapes {
  private Shapes() {}

  /** The product of the dimensions; throws ArithmeticException on overflow. */
  static long elementCount(long[] shape) {
    long n = 1;
    for (long d : shape) {
      n = Math.multiplyExact(n, d);
    }
    return n;
  }

  /** {@code [4096, 14336]}, as in error messages. */
  static String format(long[] shape) {
    StringJoiner j = new StringJoiner(", ", "[", "]");
    for (long d : shape) {
      j.add(Long.toString(d));
    }
    return j.toString();
  }
}
