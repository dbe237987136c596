package io.moecluster.core.kernel;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.concurrent.CyclicBarrier;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Measures the two roofline bounds of this machine: the memory read bandwidth (the bound of decode,
 * where every weight is read once per token) and the achievable FMA throughput (the bound of
 * prefill). Both take a second or so; call them from tools and benchmarks, not on a serving path.
 */
public final class MemoryBandwidth {
  /** Default buffer: 1 GiB, well past the caches (the L3 may be a few hundred MiB). */
  public static final long DEFAULT_BUFFER_BYTES = 1L << 30;

  private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
  private static final int VL = F.length();
  private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;

  /** Short calls that get a measuring loop compiled by C2 (its invocation threshold is lower). */
  private static final int WARM_UP_CALLS = 3_000;
  private static final long WARM_UP_SLICE_BYTES = 16L << 10;

  /** Keeps the JIT from dropping the loops whose results nobody reads. */
  private static volatile float sink;

  private MemoryBandwidth() {}

  /** {@link #measureReadGBps(int, long, int)} with a 1 GiB buffer and 5 repetitions. */
  public static double measureReadGBps(int threads) {
    return measureReadGBps(threads, DEFAULT_BUFFER_BYTES, 5);
  }

  /**
   * Read bandwidth in GB/s (10^9 bytes per second): {@code threads} threads each sum a disjoint
   * slice of an off-heap buffer of {@code bufferBytes} with vector loads, {@code repetitions} timed
   * passes after one warm-up pass; returns the median pass.
   */
  public static double measureReadGBps(int threads, long bufferBytes, int repetitions) {
    if (threads < 1 || repetitions < 1) {
      throw new IllegalArgumentException("threads and repetitions must be >= 1");
    }
    try (Arena arena = Arena.ofShared()) {
      MemorySegment buf = arena.allocate(bufferBytes, 64);
      buf.fill((byte) 1); // touch every page before timing
      return measureReadGBps(buf, threads, repetitions);
    }
  }

  /**
   * Read bandwidth of {@code buf} itself (for comparing kinds of memory, e.g. a file mapping
   * against anonymous memory): {@code threads} threads each sum a disjoint slice of it,
   * {@code repetitions} timed passes after one warm-up pass; returns the median pass.
   */
  public static double measureReadGBps(MemorySegment buf, int threads, int repetitions) {
    if (threads < 1 || repetitions < 1) {
      throw new IllegalArgumentException("threads and repetitions must be >= 1");
    }
    long slice = buf.byteSize() / threads / (4L * VL * 4) * (4L * VL * 4);
    if (slice == 0) {
      throw new IllegalArgumentException("buffer too small: " + buf.byteSize());
    }
    compileSumSlice(buf, slice);
    double[] gbps = new double[repetitions];
    for (int rep = -1; rep < repetitions; rep++) {
      long nanos = runParallel(threads, t -> {
        sink += sumSlice(buf, t * slice, slice);
      });
      if (rep >= 0) {
        gbps[rep] = slice * threads / (double) nanos;
      }
    }
    return median(gbps);
  }

  /**
   * Gets {@link #sumSlice} compiled by C2 before a pass is timed, with short calls over the start
   * of the buffer. Before C2, the Vector API runs boxed (in the interpreter and in C1's code), many
   * times slower: the warm-up pass over the whole buffer alone then took seconds.
   */
  private static void compileSumSlice(MemorySegment buf, long slice) {
    long bytes = Math.min(slice, WARM_UP_SLICE_BYTES);
    if (bytes < 16L * VL) {
      return;
    }
    for (int i = 0; i < WARM_UP_CALLS; i++) {
      sink += sumSlice(buf, 0, bytes / (16L * VL) * (16L * VL));
    }
  }

  private static float sumSlice(MemorySegment buf, long from, long bytes) {
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    long step = 4L * VL;
    for (long o = from, end = from + bytes; o < end; o += 4 * step) {
      a0 = a0.add(FloatVector.fromMemorySegment(F, buf, o, LE));
      a1 = a1.add(FloatVector.fromMemorySegment(F, buf, o + step, LE));
      a2 = a2.add(FloatVector.fromMemorySegment(F, buf, o + 2 * step, LE));
      a3 = a3.add(FloatVector.fromMemorySegment(F, buf, o + 3 * step, LE));
    }
    return a0.add(a1).add(a2.add(a3)).reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
  }

  /**
   * Achievable single-precision FMA throughput in GFLOP/s (2 flops per lane per fused
   * multiply-add) on {@code threads} threads, each running a register-resident loop over 12
   * independent vector accumulators; the median of 5 timed passes.
   */
  public static double fmaPeakGflops(int threads) {
    long iters = 20_000_000L;
    int accs = 12;
    // C2 first (see compileSumSlice): the 20M-iteration loop, started in the interpreter and
    // replaced on the stack by C1's boxed code, otherwise ran for seconds before a pass was timed.
    for (int i = 0; i < WARM_UP_CALLS; i++) {
      sink += fmaLoop(2_000);
    }
    double[] gflops = new double[5];
    for (int rep = -2; rep < gflops.length; rep++) {
      long nanos = runParallel(threads, t -> sink += fmaLoop(iters));
      if (rep >= 0) {
        gflops[rep] = (double) threads * iters * accs * VL * 2 / nanos;
      }
    }
    return median(gflops);
  }

  private static float fmaLoop(long iters) {
    FloatVector m = FloatVector.broadcast(F, 0.999999f);
    FloatVector a = FloatVector.broadcast(F, 1e-7f);
    FloatVector v0 = FloatVector.broadcast(F, 1f), v1 = v0, v2 = v0, v3 = v0, v4 = v0, v5 = v0;
    FloatVector v6 = v0, v7 = v0, v8 = v0, v9 = v0, v10 = v0, v11 = v0;
    for (long i = 0; i < iters; i++) {
      v0 = v0.fma(m, a);
      v1 = v1.fma(m, a);
      v2 = v2.fma(m, a);
      v3 = v3.fma(m, a);
      v4 = v4.fma(m, a);
      v5 = v5.fma(m, a);
      v6 = v6.fma(m, a);
      v7 = v7.fma(m, a);
      v8 = v8.fma(m, a);
      v9 = v9.fma(m, a);
      v10 = v10.fma(m, a);
      v11 = v11.fma(m, a);
    }
    return v0.add(v1).add(v2).add(v3).add(v4).add(v5).add(v6).add(v7).add(v8).add(v9).add(v10)
        .add(v11).lane(0);
  }

  private interface Body {
    void run(int thread) throws Exception;
  }

  /** Runs body(0..threads-1) on fresh threads released together; wall time of the slowest. */
  private static long runParallel(int threads, Body body) {
    CyclicBarrier start = new CyclicBarrier(threads + 1);
    CyclicBarrier end = new CyclicBarrier(threads + 1);
    Thread[] workers = new Thread[threads];
    for (int t = 0; t < threads; t++) {
      int id = t;
      workers[t] = Thread.ofPlatform().daemon().name("moe-membw-" + t).start(() -> {
        try {
          start.await();
          body.run(id);
          end.await();
        } catch (Exception e) {
          throw new IllegalStateException(e);
        }
      });
    }
    try {
      start.await();
      long t0 = System.nanoTime();
      end.await();
      long nanos = System.nanoTime() - t0;
      for (Thread w : workers) {
        w.join();
      }
      return nanos;
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static double median(double[] values) {
    double[] v = values.clone();
    Arrays.sort(v);
    int n = v.length;
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  }

  /** Prints both bounds: {@code java ... MemoryBandwidth [threads]}. */
  public static void main(String[] args) {
    int threads = args.length > 0 ? Integer.parseInt(args[0]) : Runtime.getRuntime().availableProcessors();
    System.out.printf("read bandwidth: %.1f GB/s on %d thread(s)%n", measureReadGBps(threads), threads);
    System.out.printf("FMA peak: %.1f GFLOP/s on %d thread(s) (%s)%n", fmaPeakGflops(threads), threads, F);
  }
}
