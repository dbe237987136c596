package io.moecluster.core.kernel.bench;

import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * What a second memory segment class costs the kernels: compiles a BF16 expert-sized matMul on
 * plain native segments, then times the first calls on a file mapping (a second class at the same
 * Vector API loads, which deoptimises them) and on a plain native view of the same mapping (what
 * {@code SafeTensors} hands out). Prints milliseconds per call.
 *
 * <p>Run: {@code ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="segment-class"}
 */
final class SegmentClassCost {
  private SegmentClassCost() {}

  public static void main(String[] args) throws Exception {
    int rows = 1408;
    int cols = 512;
    int n = 4;
    long bytes = 2L * rows * cols;
    Path file = Files.createTempFile("segment-class", ".bin");
    try (Arena arena = Arena.ofShared(); VectorKernels kernels = new VectorKernels(1)) {
      Files.write(file, new byte[(int) bytes]);
      MemorySegment mapped;
      try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
        mapped = ch.map(FileChannel.MapMode.READ_ONLY, 0, bytes, arena);
      }
      MemorySegment view = MemorySegment.ofAddress(mapped.address()).reinterpret(bytes, arena, null);
      float[] x = new float[n * cols];
      float[] out = new float[n * rows];
      Matrix warm = new Matrix("native", DType.BF16, rows, cols, arena.allocate(bytes, 64));
      for (int i = 0; i < 30_000; i++) {
        kernels.matMul(warm, x, n, out);
      }
      time("native (compiled on it)", kernels, warm, x, n, out);
      time("plain view of the mapping", kernels, new Matrix("view", DType.BF16, rows, cols, view), x, n, out);
      time("native again", kernels, warm, x, n, out);
      time("the mapping itself", kernels, new Matrix("mapped", DType.BF16, rows, cols, mapped), x, n, out);
      time("native again", kernels, warm, x, n, out);
    } finally {
      Files.deleteIfExists(file);
    }
  }

  private static void time(String what, VectorKernels kernels, Matrix w, float[] x, int n, float[] out) {
    StringBuilder line = new StringBuilder(String.format("%-26s", what));
    for (int i = 0; i < 6; i++) {
      long t0 = System.nanoTime();
      kernels.matMul(w, x, n, out);
      line.append(String.format(" %7.3f", (System.nanoTime() - t0) / 1e6));
    }
    System.out.println(line + "  ms per call");
  }
}
