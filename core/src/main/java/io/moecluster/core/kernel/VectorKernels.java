package io.moecluster.core.kernel;

import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Objects;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * The production kernels: Vector API ({@link FloatVector#SPECIES_PREFERRED}) loops, with
 * {@link #matVec} and {@link #matMul} spread over output rows on a dedicated pool of daemon threads
 * ({@code moe-kernel-N}) in which the calling thread takes part. {@link #close()} stops the pool.
 *
 * <p><b>Reduction order</b> (the batch-invariance contract of {@link Kernels}): the dot product of
 * a weight row with an input row of {@code cols} floats is always computed as
 *
 * <ol>
 *   <li>four vector accumulators {@code a0..a3}, {@code a_k += w[c + k*VL ..] * x[c + k*VL ..]}
 *       (fused multiply-add) for every block of {@code 4*VL} columns;
 *   <li>{@code a0 += w*x} for each remaining whole vector of {@code VL} columns;
 *   <li>{@code s = reduce((a0 + a1) + (a2 + a3))} where {@code reduce} is a fixed butterfly
 *       (lane {@code i} plus lane {@code i + VL/2}, then {@code VL/4}, ... down to one lane);
 *   <li>{@code s = fma(w[c], x[c], s)} for each remaining column in index order.
 * </ol>
 *
 * That sequence depends on {@code cols} (and the species) only. {@link #matMul} runs the very same
 * sequence for each (input row, output row) pair, only interleaving {@value #TILE} input rows per
 * pass over a weight row so the weights are loaded once per tile: its results are bit-identical to
 * {@link #matVec}, whatever {@code n}, the chunking or the thread count. Weight rows are walked in
 * blocks of about {@value #BLOCK_BYTES} bytes, so a block streams from memory once and is re-read
 * from L2 for the following tiles.
 *
 * <p>BF16 weights are widened in registers without cross-lane work: each 32-bit lane of a load
 * holds two weights; {@code lane << 16} is the even column and {@code lane & 0xFFFF0000} the odd
 * one, both exact floats. The input is first copied into the matching layout (per block of
 * {@code 2*VL} columns: the even columns, then the odd ones), so a BF16 dot uses, per
 * {@code 4*VL} columns, {@code a0 += even(p0)*x, a1 += odd(p0)*x, a2 += even(p1)*x,
 * a3 += odd(p1)*x}, then {@code a0, a1} per remaining whole block of {@code 2*VL}, then the same
 * reduce and scalar tail. (That beat widening 16-bit lanes with {@code convertShape(S2I)} in
 * {@code Bf16ConvertBench}, where C2 also failed to intrinsify the conversion in some
 * compilations and boxed every vector.)
 *
 * <p>The element-wise kernels are vectorized where it pays and deterministic for a given length;
 * {@link #softmax} and {@link #siluMul} use the scalar {@link Math#exp} (the Vector API's
 * {@code EXP} is not guaranteed to give the same bits in every JIT tier).
 */
public final class VectorKernels implements Kernels, AutoCloseable {

  static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
  static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
  static final int VL = F.length();
  private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
  private static final ValueLayout.OfFloat F32_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  private static final ValueLayout.OfShort I16_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /** Input rows processed per pass over a weight row in {@link #matMul}. */
  static final int TILE = 4;
  /** Weight bytes per {@link #matMul} row block (a fraction of the 4 MiB L2 per core). */
  static final long BLOCK_BYTES = 1L << 20;
  /** Below this many weight elements (times n) a product runs on the calling thread alone. */
  static final long PARALLEL_MIN_ELEMENTS = 1L << 16;
  /** The least weight elements handed to a thread at once. */
  private static final long MIN_CHUNK_ELEMENTS = 1L << 14;
  /** Chunks per thread: dynamic scheduling over that many chunks evens out a noisy machine. */
  private static final int CHUNKS_PER_THREAD = 4;

  /** Butterfly shuffles for {@link #reduce}: lane i takes lane i ^ step, step = VL/2 .. 1. */
  private static final VectorShuffle<Float>[] BUTTERFLY = butterflies();
  private static final VectorShuffle<Float> SWAP_HALF = swap(VL / 2);
  private static final VectorShuffle<Float> SWAP_QUARTER = swap(VL / 4);
  private static final VectorShuffle<Float> SWAP_EIGHTH = swap(VL / 8);
  private static final VectorShuffle<Float> SWAP_SIXTEENTH = swap(VL / 16);

  private static final AtomicInteger THREAD_IDS = new AtomicInteger();

  private final int threads;
  private final ExecutorService pool;

  /** Kernels that spread products over {@code threads} threads (the caller being one of them). */
  public VectorKernels(int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be >= 1, got " + threads);
    }
    this.threads = threads;
    if (threads == 1) {
      this.pool = null;
    } else {
      this.pool = new ThreadPoolExecutor(threads - 1, threads - 1, 0L, TimeUnit.MILLISECONDS,
          new LinkedBlockingQueue<>(), r -> {
            Thread t = new Thread(r, "moe-kernel-" + THREAD_IDS.getAndIncrement());
            t.setDaemon(true);
            return t;
          });
      ((ThreadPoolExecutor) pool).prestartAllCoreThreads();
    }
  }

  @Override
  public int threads() {
    return threads;
  }

  /** Stops the worker threads; later products run on the calling thread alone. */
  @Override
  public void close() {
    if (pool != null) {
      pool.shutdown();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Matrix products

  @Override
  public void matVec(Matrix w, float[] x, int xOff, float[] out, int outOff) {
    int rows = w.rows();
    int cols = w.cols();
    Objects.checkFromIndexSize(xOff, cols, x.length);
    Objects.checkFromIndexSize(outOff, rows, out.length);
    MemorySegment seg = w.data();
    boolean bf16 = w.dtype() == DType.BF16;
    float[] in = bf16 ? splitPairs(x, xOff, cols, 1) : x;
    int inOff = bf16 ? 0 : xOff;
    long elements = (long) rows * cols;
    if (pool == null || elements < PARALLEL_MIN_ELEMENTS || rows < 2) {
      matVecRows(seg, bf16, cols, in, inOff, out, outOff, 0, rows);
      return;
    }
    int chunkRows = chunkRows(rows, cols, Integer.MAX_VALUE);
    int chunks = ceilDiv(rows, chunkRows);
    parallelFor(chunks, chunk -> {
      int r0 = chunk * chunkRows;
      matVecRows(seg, bf16, cols, in, inOff, out, outOff, r0, Math.min(rows, r0 + chunkRows));
    });
  }

  private static void matVecRows(MemorySegment seg, boolean bf16, int cols, float[] x, int xOff,
      float[] out, int outOff, int r0, int r1) {
    long rowBytes = (long) cols * (bf16 ? 2 : 4);
    if (bf16) {
      for (int r = r0; r < r1; r++) {
        out[outOff + r] = dotBf16(seg, r * rowBytes, x, xOff, cols);
      }
    } else {
      for (int r = r0; r < r1; r++) {
        out[outOff + r] = dotF32(seg, r * rowBytes, x, xOff, cols);
      }
    }
  }

  @Override
  public void matMul(Matrix w, float[] x, int n, float[] out) {
    int rows = w.rows();
    int cols = w.cols();
    if (n < 0) {
      throw new IllegalArgumentException("n < 0: " + n);
    }
    Objects.checkFromIndexSize(0, Math.multiplyExact(n, cols), x.length);
    Objects.checkFromIndexSize(0, Math.multiplyExact(n, rows), out.length);
    if (n == 0 || rows == 0) {
      return;
    }
    MemorySegment seg = w.data();
    boolean bf16 = w.dtype() == DType.BF16;
    long rowBytes = (long) cols * w.dtype().byteSize();
    int blockRows = (int) Math.max(1, Math.min(rows, BLOCK_BYTES / Math.max(1, rowBytes)));
    float[] in = bf16 ? splitPairs(x, 0, cols, n) : x;
    double work = (double) rows * cols * n;
    if (pool == null || work < PARALLEL_MIN_ELEMENTS || rows < 2) {
      matMulRows(seg, bf16, rows, cols, in, n, out, 0, rows, blockRows);
      return;
    }
    int chunkRows = chunkRows(rows, cols, blockRows);
    int chunks = ceilDiv(rows, chunkRows);
    parallelFor(chunks, chunk -> {
      int r0 = chunk * chunkRows;
      matMulRows(seg, bf16, rows, cols, in, n, out, r0, Math.min(rows, r0 + chunkRows), blockRows);
    });
  }

  /** Rows [r0, r1) of every output row, weight rows in L2-sized blocks, inputs in tiles. */
  private static void matMulRows(MemorySegment seg, boolean bf16, int rows, int cols, float[] x,
      int n, float[] out, int r0, int r1, int blockRows) {
    long rowBytes = (long) cols * (bf16 ? 2 : 4);
    for (int b0 = r0; b0 < r1; b0 += blockRows) {
      int b1 = Math.min(r1, b0 + blockRows);
      int i = 0;
      for (; i + TILE <= n; i += TILE) {
        int x0 = i * cols;
        int o0 = i * rows;
        for (int r = b0; r < b1; r++) {
          if (bf16) {
            dot4Bf16(seg, r * rowBytes, x, x0, cols, out, o0 + r, rows);
          } else {
            dot4F32(seg, r * rowBytes, x, x0, cols, out, o0 + r, rows);
          }
        }
      }
      for (; i < n; i++) {
        int x0 = i * cols;
        int o0 = i * rows;
        for (int r = b0; r < b1; r++) {
          out[o0 + r] = bf16 ? dotBf16(seg, r * rowBytes, x, x0, cols) : dotF32(seg, r * rowBytes, x, x0, cols);
        }
      }
    }
  }

  private int chunkRows(int rows, int cols, int maxRows) {
    int balanced = ceilDiv(rows, threads * CHUNKS_PER_THREAD);
    int minRows = (int) Math.max(1, ceilDiv(MIN_CHUNK_ELEMENTS, Math.max(1, cols)));
    return Math.max(1, Math.min(maxRows, Math.max(balanced, minRows)));
  }

  private static int ceilDiv(long a, long b) {
    return (int) ((a + b - 1) / b);
  }

  @FunctionalInterface
  private interface Chunk {
    void run(int chunk);
  }

  /** Runs chunks 0..chunks-1 on the pool and the calling thread, handed out one at a time. */
  private void parallelFor(int chunks, Chunk body) {
    if (chunks == 1) {
      body.run(0);
      return;
    }
    AtomicInteger next = new AtomicInteger();
    AtomicReference<Throwable> error = new AtomicReference<>();
    int helpers = Math.min(threads - 1, chunks - 1);
    CountDownLatch done = new CountDownLatch(helpers);
    Runnable helper = () -> {
      try {
        drain(next, chunks, body, error);
      } finally {
        done.countDown();
      }
    };
    for (int h = 0; h < helpers; h++) {
      try {
        pool.execute(helper);
      } catch (RejectedExecutionException closed) {
        done.countDown(); // closed: the caller does the work
      }
    }
    drain(next, chunks, body, error);
    // The caller has run out of chunks: the helpers are finishing their last one.
    for (int spin = 0; spin < 20_000 && done.getCount() > 0; spin++) {
      Thread.onSpinWait();
    }
    boolean interrupted = false;
    while (true) {
      try {
        done.await();
        break;
      } catch (InterruptedException e) {
        interrupted = true;
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
    Throwable t = error.get();
    if (t instanceof RuntimeException re) {
      throw re;
    } else if (t instanceof Error e) {
      throw e;
    } else if (t != null) {
      throw new IllegalStateException(t);
    }
  }

  private static void drain(AtomicInteger next, int chunks, Chunk body, AtomicReference<Throwable> error) {
    try {
      int c;
      while ((c = next.getAndIncrement()) < chunks) {
        body.run(c);
      }
    } catch (Throwable t) {
      error.compareAndSet(null, t);
      next.set(chunks);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Row dot products. The single-row and the 4-row versions perform, per (input row, weight row),
  // exactly the same sequence of floating-point operations (see the class comment).

  private static FloatVector f32(MemorySegment seg, long off) {
    return FloatVector.fromMemorySegment(F, seg, off, LE);
  }

  private static FloatVector xv(float[] x, int off) {
    return FloatVector.fromArray(F, x, off);
  }

  static float dotF32(MemorySegment w, long row, float[] x, int xo, int cols) {
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    int bound4 = cols - cols % (4 * VL);
    int bound1 = F.loopBound(cols);
    int c = 0;
    for (; c < bound4; c += 4 * VL) {
      long o = row + 4L * c;
      a0 = f32(w, o).fma(xv(x, xo + c), a0);
      a1 = f32(w, o + 4L * VL).fma(xv(x, xo + c + VL), a1);
      a2 = f32(w, o + 8L * VL).fma(xv(x, xo + c + 2 * VL), a2);
      a3 = f32(w, o + 12L * VL).fma(xv(x, xo + c + 3 * VL), a3);
    }
    for (; c < bound1; c += VL) {
      a0 = f32(w, row + 4L * c).fma(xv(x, xo + c), a0);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector t = a0.add(a1).add(a2.add(a3));
    float s;
    if (VL <= 16) {
      t = t.add(t.rearrange(SWAP_HALF));
      t = t.add(t.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        t = t.add(t.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        t = t.add(t.rearrange(SWAP_SIXTEENTH));
      }
      s = t.lane(0);
    } else {
      s = reduce(t);
    }
    for (; c < cols; c++) {
      s = Math.fma(w.get(F32_LE, row + 4L * c), x[xo + c], s);
    }
    return s;
  }

  /**
   * BF16 weight row against an input in the {@link #splitPairs} layout: each 32-bit load holds two
   * weights (even column in the low half, odd column in the high half); shifting the low half up
   * and masking the high half gives the even and the odd columns as exact floats, with no
   * cross-lane widening.
   */
  static float dotBf16(MemorySegment w, long row, float[] xs, int xo, int cols) {
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    int bound4 = cols - cols % (4 * VL);
    int bound2 = cols - cols % (2 * VL);
    int c = 0;
    for (; c < bound4; c += 4 * VL) {
      long o = row + 2L * c;
      IntVector p0 = IntVector.fromMemorySegment(I, w, o, LE);
      IntVector p1 = IntVector.fromMemorySegment(I, w, o + 4L * VL, LE);
      a0 = even(p0).fma(xv(xs, xo + c), a0);
      a1 = odd(p0).fma(xv(xs, xo + c + VL), a1);
      a2 = even(p1).fma(xv(xs, xo + c + 2 * VL), a2);
      a3 = odd(p1).fma(xv(xs, xo + c + 3 * VL), a3);
    }
    for (; c < bound2; c += 2 * VL) {
      IntVector p0 = IntVector.fromMemorySegment(I, w, row + 2L * c, LE);
      a0 = even(p0).fma(xv(xs, xo + c), a0);
      a1 = odd(p0).fma(xv(xs, xo + c + VL), a1);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector t = a0.add(a1).add(a2.add(a3));
    float s;
    if (VL <= 16) {
      t = t.add(t.rearrange(SWAP_HALF));
      t = t.add(t.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        t = t.add(t.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        t = t.add(t.rearrange(SWAP_SIXTEENTH));
      }
      s = t.lane(0);
    } else {
      s = reduce(t);
    }
    for (; c < cols; c++) {
      s = Math.fma(bf16Scalar(w, row + 2L * c), xs[xo + c], s);
    }
    return s;
  }

  /** Even columns of a vector of BF16 pairs: the low halves, moved up into float position. */
  static FloatVector even(IntVector pairs) {
    return pairs.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
  }

  /** Odd columns of a vector of BF16 pairs: the high halves, already in float position. */
  static FloatVector odd(IntVector pairs) {
    return pairs.and(0xFFFF0000).reinterpretAsFloats();
  }

  /**
   * Copies {@code rowsN} input rows of {@code cols} floats into the layout {@link #dotBf16} reads:
   * within each whole block of {@code 2*VL} columns, the {@code VL} even columns then the
   * {@code VL} odd ones; the columns after the last whole block stay in place.
   */
  static float[] splitPairs(float[] x, int xOff, int cols, int rowsN) {
    float[] xs = new float[Math.multiplyExact(cols, rowsN)];
    int bound2 = cols - cols % (2 * VL);
    for (int i = 0; i < rowsN; i++) {
      int src = xOff + i * cols;
      int dst = i * cols;
      for (int b = 0; b < bound2; b += 2 * VL) {
        for (int j = 0; j < VL; j++) {
          xs[dst + b + j] = x[src + b + 2 * j];
          xs[dst + b + VL + j] = x[src + b + 2 * j + 1];
        }
      }
      System.arraycopy(x, src + bound2, xs, dst + bound2, cols - bound2);
    }
    return xs;
  }

  private static float bf16Scalar(MemorySegment w, long off) {
    return Float.intBitsToFloat(w.get(I16_LE, off) << 16);
  }

  /**
   * Four input rows (at x[xo], x[xo + cols], ...) against one weight row; results go to
   * out[oo], out[oo + ostride], ... Per input row, the same operations as {@link #dotF32}.
   */
  static void dot4F32(MemorySegment w, long row, float[] x, int xo, int cols, float[] out, int oo, int ostride) {
    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
    FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    FloatVector c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    FloatVector d0 = a0, d1 = a0, d2 = a0, d3 = a0;
    int xa = xo, xb = xo + cols, xc = xo + 2 * cols, xd = xo + 3 * cols;
    int bound4 = cols - cols % (4 * VL);
    int bound1 = F.loopBound(cols);
    int c = 0;
    for (; c < bound4; c += 4 * VL) {
      long o = row + 4L * c;
      FloatVector w0 = f32(w, o);
      a0 = w0.fma(xv(x, xa + c), a0);
      b0 = w0.fma(xv(x, xb + c), b0);
      c0 = w0.fma(xv(x, xc + c), c0);
      d0 = w0.fma(xv(x, xd + c), d0);
      FloatVector w1 = f32(w, o + 4L * VL);
      a1 = w1.fma(xv(x, xa + c + VL), a1);
      b1 = w1.fma(xv(x, xb + c + VL), b1);
      c1 = w1.fma(xv(x, xc + c + VL), c1);
      d1 = w1.fma(xv(x, xd + c + VL), d1);
      FloatVector w2 = f32(w, o + 8L * VL);
      a2 = w2.fma(xv(x, xa + c + 2 * VL), a2);
      b2 = w2.fma(xv(x, xb + c + 2 * VL), b2);
      c2 = w2.fma(xv(x, xc + c + 2 * VL), c2);
      d2 = w2.fma(xv(x, xd + c + 2 * VL), d2);
      FloatVector w3 = f32(w, o + 12L * VL);
      a3 = w3.fma(xv(x, xa + c + 3 * VL), a3);
      b3 = w3.fma(xv(x, xb + c + 3 * VL), b3);
      c3 = w3.fma(xv(x, xc + c + 3 * VL), c3);
      d3 = w3.fma(xv(x, xd + c + 3 * VL), d3);
    }
    for (; c < bound1; c += VL) {
      FloatVector w0 = f32(w, row + 4L * c);
      a0 = w0.fma(xv(x, xa + c), a0);
      b0 = w0.fma(xv(x, xb + c), b0);
      c0 = w0.fma(xv(x, xc + c), c0);
      d0 = w0.fma(xv(x, xd + c), d0);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector ta = a0.add(a1).add(a2.add(a3));
    float sa;
    if (VL <= 16) {
      ta = ta.add(ta.rearrange(SWAP_HALF));
      ta = ta.add(ta.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        ta = ta.add(ta.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        ta = ta.add(ta.rearrange(SWAP_SIXTEENTH));
      }
      sa = ta.lane(0);
    } else {
      sa = reduce(ta);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector tb = b0.add(b1).add(b2.add(b3));
    float sb;
    if (VL <= 16) {
      tb = tb.add(tb.rearrange(SWAP_HALF));
      tb = tb.add(tb.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        tb = tb.add(tb.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        tb = tb.add(tb.rearrange(SWAP_SIXTEENTH));
      }
      sb = tb.lane(0);
    } else {
      sb = reduce(tb);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector tc = c0.add(c1).add(c2.add(c3));
    float sc;
    if (VL <= 16) {
      tc = tc.add(tc.rearrange(SWAP_HALF));
      tc = tc.add(tc.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        tc = tc.add(tc.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        tc = tc.add(tc.rearrange(SWAP_SIXTEENTH));
      }
      sc = tc.lane(0);
    } else {
      sc = reduce(tc);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector td = d0.add(d1).add(d2.add(d3));
    float sd;
    if (VL <= 16) {
      td = td.add(td.rearrange(SWAP_HALF));
      td = td.add(td.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        td = td.add(td.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        td = td.add(td.rearrange(SWAP_SIXTEENTH));
      }
      sd = td.lane(0);
    } else {
      sd = reduce(td);
    }
    for (; c < cols; c++) {
      float wc = w.get(F32_LE, row + 4L * c);
      sa = Math.fma(wc, x[xa + c], sa);
      sb = Math.fma(wc, x[xb + c], sb);
      sc = Math.fma(wc, x[xc + c], sc);
      sd = Math.fma(wc, x[xd + c], sd);
    }
    out[oo] = sa;
    out[oo + ostride] = sb;
    out[oo + 2 * ostride] = sc;
    out[oo + 3 * ostride] = sd;
  }

  /** {@link #dot4F32} for BF16 weights; per input row the same operations as {@link #dotBf16}. */
  static void dot4Bf16(MemorySegment w, long row, float[] x, int xo, int cols, float[] out, int oo, int ostride) {
    FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
    FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    FloatVector c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    FloatVector d0 = a0, d1 = a0, d2 = a0, d3 = a0;
    int xa = xo, xb = xo + cols, xc = xo + 2 * cols, xd = xo + 3 * cols;
    int bound4 = cols - cols % (4 * VL);
    int bound2 = cols - cols % (2 * VL);
    int c = 0;
    for (; c < bound4; c += 4 * VL) {
      long o = row + 2L * c;
      IntVector p0 = IntVector.fromMemorySegment(I, w, o, LE);
      FloatVector w0 = even(p0);
      a0 = w0.fma(xv(x, xa + c), a0);
      b0 = w0.fma(xv(x, xb + c), b0);
      c0 = w0.fma(xv(x, xc + c), c0);
      d0 = w0.fma(xv(x, xd + c), d0);
      FloatVector w1 = odd(p0);
      a1 = w1.fma(xv(x, xa + c + VL), a1);
      b1 = w1.fma(xv(x, xb + c + VL), b1);
      c1 = w1.fma(xv(x, xc + c + VL), c1);
      d1 = w1.fma(xv(x, xd + c + VL), d1);
      IntVector p1 = IntVector.fromMemorySegment(I, w, o + 4L * VL, LE);
      FloatVector w2 = even(p1);
      a2 = w2.fma(xv(x, xa + c + 2 * VL), a2);
      b2 = w2.fma(xv(x, xb + c + 2 * VL), b2);
      c2 = w2.fma(xv(x, xc + c + 2 * VL), c2);
      d2 = w2.fma(xv(x, xd + c + 2 * VL), d2);
      FloatVector w3 = odd(p1);
      a3 = w3.fma(xv(x, xa + c + 3 * VL), a3);
      b3 = w3.fma(xv(x, xb + c + 3 * VL), b3);
      c3 = w3.fma(xv(x, xc + c + 3 * VL), c3);
      d3 = w3.fma(xv(x, xd + c + 3 * VL), d3);
    }
    for (; c < bound2; c += 2 * VL) {
      IntVector p0 = IntVector.fromMemorySegment(I, w, row + 2L * c, LE);
      FloatVector w0 = even(p0);
      a0 = w0.fma(xv(x, xa + c), a0);
      b0 = w0.fma(xv(x, xb + c), b0);
      c0 = w0.fma(xv(x, xc + c), c0);
      d0 = w0.fma(xv(x, xd + c), d0);
      FloatVector w1 = odd(p0);
      a1 = w1.fma(xv(x, xa + c + VL), a1);
      b1 = w1.fma(xv(x, xb + c + VL), b1);
      c1 = w1.fma(xv(x, xc + c + VL), c1);
      d1 = w1.fma(xv(x, xd + c + VL), d1);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector ta = a0.add(a1).add(a2.add(a3));
    float sa;
    if (VL <= 16) {
      ta = ta.add(ta.rearrange(SWAP_HALF));
      ta = ta.add(ta.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        ta = ta.add(ta.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        ta = ta.add(ta.rearrange(SWAP_SIXTEENTH));
      }
      sa = ta.lane(0);
    } else {
      sa = reduce(ta);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector tb = b0.add(b1).add(b2.add(b3));
    float sb;
    if (VL <= 16) {
      tb = tb.add(tb.rearrange(SWAP_HALF));
      tb = tb.add(tb.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        tb = tb.add(tb.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        tb = tb.add(tb.rearrange(SWAP_SIXTEENTH));
      }
      sb = tb.lane(0);
    } else {
      sb = reduce(tb);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector tc = c0.add(c1).add(c2.add(c3));
    float sc;
    if (VL <= 16) {
      tc = tc.add(tc.rearrange(SWAP_HALF));
      tc = tc.add(tc.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        tc = tc.add(tc.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        tc = tc.add(tc.rearrange(SWAP_SIXTEENTH));
      }
      sc = tc.lane(0);
    } else {
      sc = reduce(tc);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector td = d0.add(d1).add(d2.add(d3));
    float sd;
    if (VL <= 16) {
      td = td.add(td.rearrange(SWAP_HALF));
      td = td.add(td.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        td = td.add(td.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        td = td.add(td.rearrange(SWAP_SIXTEENTH));
      }
      sd = td.lane(0);
    } else {
      sd = reduce(td);
    }
    for (; c < cols; c++) {
      float wc = bf16Scalar(w, row + 2L * c);
      sa = Math.fma(wc, x[xa + c], sa);
      sb = Math.fma(wc, x[xb + c], sb);
      sc = Math.fma(wc, x[xc + c], sc);
      sd = Math.fma(wc, x[xd + c], sd);
    }
    out[oo] = sa;
    out[oo + ostride] = sb;
    out[oo + 2 * ostride] = sc;
    out[oo + 3 * ostride] = sd;
  }

  /**
   * Sum of the lanes in a fixed order (unlike {@code reduceLanes(ADD)}, whose order may differ
   * between the interpreter and C2): a butterfly of lane-wise adds, lane i plus lane i ^ VL/2,
   * then i ^ VL/4, ..., down to lane 0. Only IEEE lane-wise adds, so every JIT tier agrees.
   */
  static float reduce(FloatVector v) {
    switch (VL) {
      case 16 -> {
        v = v.add(v.rearrange(SWAP_HALF));
        v = v.add(v.rearrange(SWAP_QUARTER));
        v = v.add(v.rearrange(SWAP_EIGHTH));
        v = v.add(v.rearrange(SWAP_SIXTEENTH));
      }
      case 8 -> {
        v = v.add(v.rearrange(SWAP_HALF));
        v = v.add(v.rearrange(SWAP_QUARTER));
        v = v.add(v.rearrange(SWAP_EIGHTH));
      }
      default -> {
        for (VectorShuffle<Float> s : BUTTERFLY) {
          v = v.add(v.rearrange(s));
        }
      }
    }
    return v.lane(0);
  }

  private static VectorShuffle<Float> swap(int step) {
    return step == 0 ? null : VectorShuffle.fromOp(F, i -> i ^ step);
  }

  @SuppressWarnings("unchecked")
  private static VectorShuffle<Float>[] butterflies() {
    int steps = Integer.numberOfTrailingZeros(VL);
    VectorShuffle<Float>[] result = new VectorShuffle[steps];
    for (int k = 0; k < steps; k++) {
      result[k] = swap(VL >> (k + 1));
    }
    return result;
  }

  // ---------------------------------------------------------------------------------------------
  // Element-wise kernels

  @Override
  public float dot(float[] a, int aOff, float[] b, int bOff, int length) {
    Objects.checkFromIndexSize(aOff, length, a.length);
    Objects.checkFromIndexSize(bOff, length, b.length);
    FloatVector a0 = FloatVector.zero(F);
    FloatVector a1 = a0;
    FloatVector a2 = a0;
    FloatVector a3 = a0;
    int bound4 = length - length % (4 * VL);
    int bound1 = F.loopBound(length);
    int i = 0;
    for (; i < bound4; i += 4 * VL) {
      a0 = xv(a, aOff + i).fma(xv(b, bOff + i), a0);
      a1 = xv(a, aOff + i + VL).fma(xv(b, bOff + i + VL), a1);
      a2 = xv(a, aOff + i + 2 * VL).fma(xv(b, bOff + i + 2 * VL), a2);
      a3 = xv(a, aOff + i + 3 * VL).fma(xv(b, bOff + i + 3 * VL), a3);
    }
    for (; i < bound1; i += VL) {
      a0 = xv(a, aOff + i).fma(xv(b, bOff + i), a0);
    }
    // reduce() written out: a call taking a vector that C2 does not inline boxes it
    FloatVector t = a0.add(a1).add(a2.add(a3));
    float s;
    if (VL <= 16) {
      t = t.add(t.rearrange(SWAP_HALF));
      t = t.add(t.rearrange(SWAP_QUARTER));
      if (VL >= 8) {
        t = t.add(t.rearrange(SWAP_EIGHTH));
      }
      if (VL >= 16) {
        t = t.add(t.rearrange(SWAP_SIXTEENTH));
      }
      s = t.lane(0);
    } else {
      s = reduce(t);
    }
    for (; i < length; i++) {
      s = Math.fma(a[aOff + i], b[bOff + i], s);
    }
    return s;
  }

  @Override
  public void axpy(float alpha, float[] x, int xOff, float[] y, int yOff, int length) {
    Objects.checkFromIndexSize(xOff, length, x.length);
    Objects.checkFromIndexSize(yOff, length, y.length);
    FloatVector va = FloatVector.broadcast(F, alpha);
    int bound = F.loopBound(length);
    int i = 0;
    for (; i < bound; i += VL) {
      xv(x, xOff + i).fma(va, xv(y, yOff + i)).intoArray(y, yOff + i);
    }
    for (; i < length; i++) {
      y[yOff + i] = Math.fma(x[xOff + i], alpha, y[yOff + i]);
    }
  }

  @Override
  public void rmsNorm(float[] out, int outOff, float[] x, int xOff, float[] weight, int size, float eps) {
    Objects.checkFromIndexSize(outOff, size, out.length);
    Objects.checkFromIndexSize(xOff, size, x.length);
    Objects.checkFromIndexSize(0, size, weight.length);
    float ss = dot(x, xOff, x, xOff, size);
    float inv = (float) (1.0 / Math.sqrt(ss / size + eps));
    FloatVector vinv = FloatVector.broadcast(F, inv);
    int bound = F.loopBound(size);
    int i = 0;
    for (; i < bound; i += VL) {
      xv(x, xOff + i).mul(vinv).mul(xv(weight, i)).intoArray(out, outOff + i);
    }
    for (; i < size; i++) {
      out[outOff + i] = x[xOff + i] * inv * weight[i];
    }
  }

  @Override
  public void softmax(float[] x, int off, int length) {
    Objects.checkFromIndexSize(off, length, x.length);
    if (length == 0) {
      return;
    }
    int bound = F.loopBound(length);
    int i = 0;
    float max = Float.NEGATIVE_INFINITY;
    if (bound > 0) {
      FloatVector vmax = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
      for (; i < bound; i += VL) {
        vmax = vmax.max(xv(x, off + i));
      }
      max = vmax.reduceLanes(VectorOperators.MAX); // max is exact: order does not matter
    }
    for (; i < length; i++) {
      max = Math.max(max, x[off + i]);
    }
    // exp is scalar anyway; summing in index order on the way costs nothing and keeps the
    // float32 sum identical to the oracle's (a long vector-lane sum would differ by ~n ulps).
    float sum = 0f;
    for (int j = 0; j < length; j++) {
      float e = (float) Math.exp(x[off + j] - max);
      x[off + j] = e;
      sum += e;
    }
    FloatVector vs = FloatVector.broadcast(F, sum);
    for (i = 0; i < bound; i += VL) {
      xv(x, off + i).div(vs).intoArray(x, off + i);
    }
    for (; i < length; i++) {
      x[off + i] /= sum;
    }
  }

  @Override
  public void siluMul(float[] gate, float[] up, int length) {
    Objects.checkFromIndexSize(0, length, gate.length);
    Objects.checkFromIndexSize(0, length, up.length);
    for (int i = 0; i < length; i++) {
      float g = gate[i];
      gate[i] = g / (1f + (float) Math.exp(-g)) * up[i];
    }
  }

  @Override
  public void rope(float[] x, int off, int heads, int headDim, float[] cos, float[] sin) {
    int half = headDim / 2;
    Objects.checkFromIndexSize(off, Math.multiplyExact(heads, headDim), x.length);
    Objects.checkFromIndexSize(0, half, cos.length);
    Objects.checkFromIndexSize(0, half, sin.length);
    int bound = F.loopBound(half);
    for (int h = 0; h < heads; h++) {
      int b1 = off + h * headDim;
      int b2 = b1 + half;
      int i = 0;
      for (; i < bound; i += VL) {
        FloatVector x1 = xv(x, b1 + i);
        FloatVector x2 = xv(x, b2 + i);
        FloatVector c = xv(cos, i);
        FloatVector s = xv(sin, i);
        x1.mul(c).sub(x2.mul(s)).intoArray(x, b1 + i);
        x2.mul(c).add(x1.mul(s)).intoArray(x, b2 + i);
      }
      for (; i < half; i++) {
        float x1 = x[b1 + i];
        float x2 = x[b2 + i];
        x[b1 + i] = x1 * cos[i] - x2 * sin[i];
        x[b2 + i] = x2 * cos[i] + x1 * sin[i];
      }
    }
  }

  @Override
  public String toString() {
    return "VectorKernels[" + F + ", threads=" + threads + "]";
  }
}
