package io.moecluster.core.kernel.bench;

import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Locale;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * What the work done per loaded cache line costs a memory-bound stream on one thread: the question
 * behind decode's ratio to its bandwidth bound. Three loops read the same bytes, alternating in one
 * JVM, once from a buffer far past the caches and once from a 1 MiB buffer that stays in L2:
 *
 * <ul>
 *   <li>{@code add}: one vector add per 64-byte line, the loop that measures the bound;
 *   <li>{@code widen+fma}: the BF16 matVec's work per line in one stream (a shift and an AND that
 *       widen 32 BF16 weights to two float vectors, and two FMAs);
 *   <li>{@code matVec}: {@link VectorKernels#matVec} itself over BF16 rows of 1024 columns.
 * </ul>
 *
 * If memory time and compute time overlapped, a loop would stream from memory as fast as
 * {@code add} as long as its compute (the L2 figure) is faster than the memory; if they add up, its
 * nanoseconds per line from memory are those of {@code add} plus the difference of the two L2
 * figures. The last line prints that prediction next to the measurement. Arguments: rounds, GiB.
 */
final class LoadWorkCost {
  private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
  private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
  private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
  private static final int COLS = 1024;
  private static final long L2_BYTES = 1L << 20;
  private static volatile float sink;

  private LoadWorkCost() {}

  public static void main(String[] args) {
    int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 9;
    long bytes = (args.length > 1 ? Long.parseLong(args[1]) : 1L) << 30;
    try (Arena arena = Arena.ofShared(); VectorKernels kernels = new VectorKernels(1)) {
      MemorySegment buf = arena.allocate(bytes, 4096);
      for (long p = 0; p < bytes; p += 2) {
        // small BF16 values (1.0 + a little), so that no sum overflows or turns into NaN
        buf.set(ValueLayout.JAVA_SHORT_UNALIGNED, p, (short) (0x3f80 + (p & 0x3f)));
      }
      float[] x = new float[COLS];
      for (int i = 0; i < COLS; i++) {
        x[i] = (i % 7) * 0.01f;
      }
      String[] names = {"add", "widen+fma", "matVec"};
      double[][] memory = new double[names.length][rounds];
      double[][] cached = new double[names.length][rounds];
      for (int r = -1; r < rounds; r++) { // round -1 lets C2 compile the loops
        for (int k = 0; k < names.length; k++) {
          double m = nanosPerLine(k, kernels, buf, bytes, 1, x);
          double c = nanosPerLine(k, kernels, buf, L2_BYTES, (int) (bytes / L2_BYTES), x);
          if (r >= 0) {
            memory[k][r] = m;
            cached[k][r] = c;
          }
        }
      }
      System.out.printf(Locale.ROOT, "1 thread, %d GiB buffer and a 1 MiB (L2) one, %d alternated rounds; "
          + "ns per 64-byte line (GB/s), medians%n", bytes >> 30, rounds);
      double[] mem = new double[names.length];
      double[] l2 = new double[names.length];
      for (int k = 0; k < names.length; k++) {
        mem[k] = MappedReadBandwidth.median(memory[k]);
        l2[k] = MappedReadBandwidth.median(cached[k]);
        System.out.printf(Locale.ROOT, "%-10s from memory %.2f ns (%.1f GB/s), from L2 %.2f ns (%.1f GB/s)%n",
            names[k], mem[k], 64 / mem[k], l2[k], 64 / l2[k]);
      }
      for (int k = 1; k < names.length; k++) {
        System.out.printf(Locale.ROOT, "%-10s from memory: %.2f of add's bandwidth; if memory and compute "
            + "overlapped %.2f ns, if they add up %.2f ns, measured %.2f ns%n", names[k], mem[0] / mem[k],
            Math.max(mem[0], l2[k]), mem[0] + l2[k] - l2[0], mem[k]);
      }
    }
  }

  private static double nanosPerLine(int kind, VectorKernels kernels, MemorySegment buf, long span,
      int passes, float[] x) {
    long t0 = System.nanoTime();
    for (int p = 0; p < passes; p++) {
      switch (kind) {
        case 0 -> sink += add(buf, span);
        case 1 -> sink += widenFma(buf, span, x);
        default -> {
          int rows = (int) (span / (2L * COLS));
          Matrix w = new Matrix("w", DType.BF16, rows, COLS, buf.asSlice(0, (long) rows * COLS * 2));
          float[] out = new float[rows];
          kernels.matVec(w, x, 0, out, 0);
          sink += out[rows - 1];
        }
      }
    }
    return (System.nanoTime() - t0) / ((double) span * passes / 64);
  }

  private static float add(MemorySegment buf, long bytes) {
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    long step = I.vectorByteSize();
    for (long p = 0; p < bytes; p += 4 * step) {
      a0 = a0.add(IntVector.fromMemorySegment(I, buf, p, LE).reinterpretAsFloats());
      a1 = a1.add(IntVector.fromMemorySegment(I, buf, p + step, LE).reinterpretAsFloats());
      a2 = a2.add(IntVector.fromMemorySegment(I, buf, p + 2 * step, LE).reinterpretAsFloats());
      a3 = a3.add(IntVector.fromMemorySegment(I, buf, p + 3 * step, LE).reinterpretAsFloats());
    }
    return a0.add(a1).add(a2.add(a3)).lane(0);
  }

  private static float widenFma(MemorySegment buf, long bytes, float[] x) {
    FloatVector y = FloatVector.fromArray(F, x, 0);
    FloatVector z = FloatVector.fromArray(F, x, F.length());
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    FloatVector a4 = a0;
    FloatVector a5 = a0;
    FloatVector a6 = a0;
    FloatVector a7 = a0;
    long step = I.vectorByteSize();
    // eight accumulators, as many chains as the 8-row matVec kernel keeps
    for (long p = 0; p < bytes; p += 4 * step) {
      IntVector q0 = IntVector.fromMemorySegment(I, buf, p, LE);
      IntVector q1 = IntVector.fromMemorySegment(I, buf, p + step, LE);
      IntVector q2 = IntVector.fromMemorySegment(I, buf, p + 2 * step, LE);
      IntVector q3 = IntVector.fromMemorySegment(I, buf, p + 3 * step, LE);
      a0 = q0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(y, a0);
      a1 = q0.and(0xFFFF0000).reinterpretAsFloats().fma(z, a1);
      a2 = q1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(y, a2);
      a3 = q1.and(0xFFFF0000).reinterpretAsFloats().fma(z, a3);
      a4 = q2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(y, a4);
      a5 = q2.and(0xFFFF0000).reinterpretAsFloats().fma(z, a5);
      a6 = q3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(y, a6);
      a7 = q3.and(0xFFFF0000).reinterpretAsFloats().fma(z, a7);
    }
    return a0.add(a1).add(a2.add(a3)).add(a4.add(a5).add(a6.add(a7))).lane(0);
  }
}
