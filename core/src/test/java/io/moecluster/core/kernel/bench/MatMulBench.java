package io.moecluster.core.kernel.bench;

import io.moecluster.core.kernel.VectorKernels;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.AuxCounters;
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
 * Prefill: {@link VectorKernels#matMul} of {@code n} input rows against a 2816x1024 ([out, in])
 * weight matrix, reported as GFLOP/s (the {@code gflop} secondary result, 2 flops per
 * multiply-add; the primary score is calls/s).
 *
 * <p>Run: {@code ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="MatMulBench -f 1 -wi 5 -i 3 -r 1s"}
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "-Xmx2g"})
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 3, time = 1)
public class MatMulBench {

  @Param({"2816x1024"})
  String shape;

  @Param({"16", "64", "256"})
  int n;

  @Param({"F32", "BF16"})
  DType dtype;

  @Param({"1", "2"})
  int threads;

  private Arena arena;
  private Matrix w;
  private float[] x;
  private float[] out;
  private VectorKernels kernels;
  private double gflopPerCall;

  /** Floating-point operations, per second once JMH divides by the iteration time. */
  @State(Scope.Thread)
  @AuxCounters(AuxCounters.Type.OPERATIONS)
  public static class Flops {
    public double gflop;

    @Setup(Level.Iteration)
    public void reset() {
      gflop = 0;
    }
  }

  @Setup(Level.Trial)
  public void setup() {
    String[] rc = shape.split("x");
    int rows = Integer.parseInt(rc[0]);
    int cols = Integer.parseInt(rc[1]);
    SplittableRandom rnd = new SplittableRandom(42);
    float[] values = new float[rows * cols];
    for (int i = 0; i < values.length; i++) {
      values[i] = (float) (rnd.nextDouble() * 2 - 1) * 0.05f;
    }
    Matrix heap = Matrix.of("w", dtype, rows, cols, values);
    arena = Arena.ofShared();
    MemorySegment seg = arena.allocate(heap.byteSize(), 64);
    seg.copyFrom(heap.data());
    w = new Matrix("w", dtype, rows, cols, seg);
    x = new float[n * cols];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) rnd.nextDouble();
    }
    out = new float[n * rows];
    kernels = new VectorKernels(threads);
    gflopPerCall = 2.0 * n * rows * cols * 1e-9;
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    kernels.close();
    arena.close();
  }

  @Benchmark
  public float[] matMul(Flops flops) {
    kernels.matMul(w, x, n, out);
    flops.gflop += gflopPerCall;
    return out;
  }
}
