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
 * Decode: {@link VectorKernels#matVec} at the shapes of a small MoE layer ([out, in]), reported as
 * GB/s of weights read (the {@code gbytes} secondary result; the primary score is calls/s). Each
 * call takes the next of enough copies of the matrix to fill 1 GiB, so weights come from DRAM as
 * they do when a token touches many experts, not from the caches.
 *
 * <p>Run: {@code ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="MatVecBench -f 1 -wi 5 -i 3 -r 1s"}
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "-Xmx2g"})
@Warmup(iterations = 5, time = 1)
@Measurement(iterations = 3, time = 1)
public class MatVecBench {

  @Param({"1024x1024", "2816x1024", "1024x2816", "4096x1024"})
  String shape;

  @Param({"F32", "BF16"})
  DType dtype;

  @Param({"1", "2"})
  int threads;

  /** Bytes of weight copies cycled through (past the L3). */
  @Param({"1073741824"})
  long footprint;

  private Arena arena;
  private Matrix[] copies;
  private int next;
  private float[] x;
  private float[] out;
  private VectorKernels kernels;

  /** Weight bytes read, per second once JMH divides by the iteration time. */
  @State(Scope.Thread)
  @AuxCounters(AuxCounters.Type.OPERATIONS)
  public static class Bytes {
    public double gbytes;

    @Setup(Level.Iteration)
    public void reset() {
      gbytes = 0;
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
    Matrix first = Matrix.of("w", dtype, rows, cols, values);
    int n = (int) Math.max(1, footprint / first.byteSize());
    arena = Arena.ofShared();
    copies = new Matrix[n];
    for (int i = 0; i < n; i++) {
      MemorySegment seg = arena.allocate(first.byteSize(), 64);
      seg.copyFrom(first.data());
      copies[i] = new Matrix("w" + i, dtype, rows, cols, seg);
    }
    x = new float[cols];
    for (int i = 0; i < cols; i++) {
      x[i] = (float) rnd.nextDouble();
    }
    out = new float[rows];
    kernels = new VectorKernels(threads);
  }

  @TearDown(Level.Trial)
  public void tearDown() {
    kernels.close();
    arena.close();
  }

  @Benchmark
  public float[] matVec(Bytes bytes) {
    Matrix w = copies[next];
    next = next + 1 == copies.length ? 0 : next + 1;
    kernels.matVec(w, x, 0, out, 0);
    bytes.gbytes += w.byteSize() * 1e-9;
    return out;
  }
}
