package io.moecluster.core.kernel.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Compares ways to widen BF16 weights to floats inside a cache-resident dot product (so the
 * conversion, not memory, is the bottleneck). Scores are ns per dot of {@code cols} weights.
 *
 * <ul>
 *   <li>{@code s2iShift}: 16-bit lanes, {@code convertShape(S2I)}, shift left 16 (what
 *       {@code VectorKernels} uses);
 *   <li>{@code zeroExtendShift}: the same with {@code ZERO_EXTEND_S2I};
 *   <li>{@code intPairs}: 32-bit loads of two BF16 each, low half shifted up and high half masked,
 *       against an input pre-split into even/odd columns (no cross-lane widening at all).
 * </ul>
 *
 * Run: {@code ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="Bf16ConvertBench -f 1 -wi 2 -i 3 -r 1s"} (see {@link KernelBench})
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector"})
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
public class Bf16ConvertBench {
  static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
  static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
  static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
  static final int VL = F.length();
  static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

  @Param({"4096"})
  int cols;

  Arena arena;
  MemorySegment w;
  float[] x;
  float[] xSplit;

  @Setup(Level.Trial)
  public void setup() {
    arena = Arena.ofShared();
    w = arena.allocate(2L * cols, 64);
    SplittableRandom rnd = new SplittableRandom(1);
    for (int i = 0; i < cols; i++) {
      w.setAtIndex(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, i, (short) (0x3f00 + rnd.nextInt(256)));
    }
    x = new float[cols];
    for (int i = 0; i < cols; i++) {
      x[i] = (float) rnd.nextDouble();
    }
    // per block of 2*VL columns: VL even columns then VL odd columns
    xSplit = new float[cols];
    for (int b = 0; b < cols; b += 2 * VL) {
      for (int j = 0; j < VL; j++) {
        xSplit[b + j] = x[b + 2 * j];
        xSplit[b + VL + j] = x[b + 2 * j + 1];
      }
    }
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    arena.close();
  }

  @Benchmark
  public float s2iShift() {
    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < cols; c += 4 * VL) {
      long o = 2L * c;
      a0 = s2i(o).fma(FloatVector.fromArray(F, x, c), a0);
      a1 = s2i(o + 2L * VL).fma(FloatVector.fromArray(F, x, c + VL), a1);
      a2 = s2i(o + 4L * VL).fma(FloatVector.fromArray(F, x, c + 2 * VL), a2);
      a3 = s2i(o + 6L * VL).fma(FloatVector.fromArray(F, x, c + 3 * VL), a3);
    }
    return a0.add(a1).add(a2.add(a3)).lane(0);
  }

  private FloatVector s2i(long o) {
    return ((IntVector) ShortVector.fromMemorySegment(S, w, o, LE).convertShape(VectorOperators.S2I, I, 0))
        .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
  }

  @Benchmark
  public float zeroExtendShift() {
    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < cols; c += 4 * VL) {
      long o = 2L * c;
      a0 = zx(o).fma(FloatVector.fromArray(F, x, c), a0);
      a1 = zx(o + 2L * VL).fma(FloatVector.fromArray(F, x, c + VL), a1);
      a2 = zx(o + 4L * VL).fma(FloatVector.fromArray(F, x, c + 2 * VL), a2);
      a3 = zx(o + 6L * VL).fma(FloatVector.fromArray(F, x, c + 3 * VL), a3);
    }
    return a0.add(a1).add(a2.add(a3)).lane(0);
  }

  private FloatVector zx(long o) {
    return ((IntVector) ShortVector.fromMemorySegment(S, w, o, LE).convertShape(VectorOperators.ZERO_EXTEND_S2I, I, 0))
        .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
  }

  @Benchmark
  public float intPairs() {
    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < cols; c += 4 * VL) {
      long o = 2L * c;
      IntVector p0 = IntVector.fromMemorySegment(I, w, o, LE);
      IntVector p1 = IntVector.fromMemorySegment(I, w, o + 4L * VL, LE);
      a0 = p0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(F, xSplit, c), a0);
      a1 = p0.and(0xFFFF0000).reinterpretAsFloats().fma(FloatVector.fromArray(F, xSplit, c + VL), a1);
      a2 = p1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(F, xSplit, c + 2 * VL), a2);
      a3 = p1.and(0xFFFF0000).reinterpretAsFloats().fma(FloatVector.fromArray(F, xSplit, c + 3 * VL), a3);
    }
    return a0.add(a1).add(a2.add(a3)).lane(0);
  }
}
