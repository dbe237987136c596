package io.moecluster.core.kernel;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * What the order of a tile's weight rows costs a stream from memory: the BF16 tiles alone over a
 * 128 MiB matrix, tiles of adjacent rows against tiles whose rows lie apart (tile {@code j} takes
 * row {@code j} of each of as many contiguous parts as the tile has rows, as {@link VectorKernels}
 * does), on {@code threads} threads each with a contiguous half (third, ...) of the rows. Prints
 * the median GB/s of weights read per shape and order. In this package for the kernels' package
 * access; run through {@code KernelBench tile-order ROUNDS THREADS}.
 */
public final class TileOrderCost {
  private static final long MATRIX_BYTES = 128L << 20;
  private static final long MILLIS = 300;

  private record Shape(String name, int cols, int tile, int inputs) {}

  private TileOrderCost() {}

  public static void main(String[] args) throws Exception {
    int rounds;
    int threads;
    try {
      rounds = Integer.parseInt(args[0]);
      threads = Integer.parseInt(args[1]);
    } catch (RuntimeException e) {
      rounds = 0;
      threads = 0;
    }
    if (args.length != 2 || rounds < 1 || threads < 1 || threads > 64) {
      System.err.println("usage: tile-order ROUNDS>=1 THREADS(1..64)");
      System.exit(2);
    }
    List<Shape> shapes = List.of(new Shape("4x1, 1 KB rows", 512, 4, 1), new Shape("4x4, 1 KB rows", 512, 4, 4),
        new Shape("8x1, 2 KB rows", 1024, 8, 1));
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    try {
      for (Shape shape : shapes) {
        long rowBytes = 2L * shape.cols();
        int rows = (int) (MATRIX_BYTES / rowBytes);
        try (Arena arena = Arena.ofShared()) {
          MemorySegment w = arena.allocate(MATRIX_BYTES, 4096);
          for (long i = 0; i < MATRIX_BYTES; i += 2) {
            w.set(ValueLayout.JAVA_SHORT_UNALIGNED, i, (short) 0x3c00);
          }
          report(pool, threads, rounds, shape, w, rows, rowBytes);
        }
      }
    } finally {
      pool.shutdown();
    }
  }

  private static void report(ExecutorService pool, int threads, int rounds, Shape shape, MemorySegment w, int rows,
      long rowBytes) throws Exception {
    float[] x = new float[shape.inputs() * shape.cols()];
    Arrays.fill(x, 0.5f);
    double[][] gbps = new double[2][rounds];
    for (int r = -1; r < rounds; r++) { // round -1: C2 compiles the tiles
      for (int apart = 0; apart < 2; apart++) {
        double g = time(pool, threads, shape, w, rows, rowBytes, x, apart == 1);
        if (r >= 0) {
          gbps[apart][r] = g;
        }
      }
    }
    System.out.printf(Locale.ROOT, "%s on %d thread(s): adjacent rows %.1f GB/s, rows apart %.1f GB/s "
        + "(medians of %d rounds)%n", shape.name(), threads, median(gbps[0]), median(gbps[1]), rounds);
  }

  private static double time(ExecutorService pool, int threads, Shape shape, MemorySegment w, int rows, long rowBytes,
      float[] x, boolean apart) throws Exception {
    int per = rows / threads / shape.tile() * shape.tile();
    long t0 = System.nanoTime();
    long passes = 0;
    while (System.nanoTime() - t0 < MILLIS * 1_000_000L) {
      List<Future<?>> parts = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        int r0 = t * per;
        float[] out = new float[shape.inputs() * rows];
        parts.add(pool.submit(() -> pass(shape, w, rowBytes, r0, r0 + per, x, out, rows, apart)));
      }
      for (Future<?> f : parts) {
        f.get();
      }
      passes++;
    }
    return (double) per * threads * rowBytes * passes / (System.nanoTime() - t0);
  }

  private static void pass(Shape shape, MemorySegment w, long rowBytes, int r0, int r1, float[] x, float[] out,
      int rows, boolean apart) {
    int tile = shape.tile();
    int gap = apart ? (r1 - r0) / tile : 1;
    int step = apart ? 1 : tile;
    int end = apart ? r0 + gap : r1;
    for (int r = r0; r < end; r += step) {
      long at = r * rowBytes;
      if (tile == 8) {
        DotTiles.bf16Rows8x1(w, at, rowBytes, gap, x, 0, shape.cols(), out, r, rows);
      } else if (shape.inputs() == 1) {
        DotTiles.bf16Rows4x1(w, at, rowBytes, gap, x, 0, shape.cols(), out, r, rows);
      } else {
        DotTiles.bf16Rows4x4(w, at, rowBytes, gap, x, 0, shape.cols(), out, r, rows);
      }
    }
  }

  private static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    return s[s.length / 2];
  }
}
