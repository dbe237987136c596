package io.moecluster.core.kernel;

import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import java.lang.foreign.MemorySegment;
import java.util.Objects;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
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
 *   <li>one vector accumulator: F32, {@code a = fma(w[c .. c+VL), x[c .. c+VL), a)} for each
 *       whole vector of columns, in column order; BF16, for each whole block of {@code 2*VL}
 *       columns in column order, {@code a = fma(even columns, x, a)} then
 *       {@code a = fma(odd columns, x, a)} (see below);
 *   <li>{@code s = reduce(a)} ({@link DotTiles#reduce}), a fixed butterfly: lane {@code i} plus
 *       lane {@code i ^ VL/2}, then {@code i ^ VL/4}, ... down to lane 0 (lane-wise IEEE adds
 *       only, unlike {@code reduceLanes(ADD)}, whose order may differ between the interpreter
 *       and C2);
 *   <li>{@code s = fma(w[c], x[c], s)} for each remaining column in index order.
 * </ol>
 *
 * That sequence depends on {@code cols} (and the species) only. Latency is hidden by working on
 * several independent (weight row, input row) pairs at once instead of by splitting one sum:
 * {@link #matVec} takes 4 weight rows per pass (8 for BF16), {@link #matMul} 4 weight rows x
 * {@value #TILE} input rows: 16 accumulators in registers, each weight vector loaded once per
 * tile (BF16: the last 2 or 3 input rows in a 4 x 2 tile rather than one by one). The tiles
 * are in {@link DotTiles}; this class walks the weight rows over them and shares the work out.
 *
 * <p><b>A tile's weight rows lie apart.</b> A range of {@code R} weight rows (a matrix-vector
 * chunk, or an L2 block of {@link #matMul}) is cut into as many contiguous parts as a tile has
 * rows, and tile {@code j} takes row {@code j} of each part, so each of the tile's loads walks its
 * part from start to end: a few long sequential streams, which the hardware prefetchers follow.
 * Tiles of adjacent rows read each row (1-6 KB) as a stream of its own that ends before a
 * prefetcher has learnt it: on an AMD EPYC one thread read BF16 rows of 1 KB at 7-8 GB/s that way
 * and at 16-21 GB/s with the rows apart (docs/PERFORMANCE.md).
 * The {@code R mod tile} rows past the parts are one more tile of adjacent rows, moved back over
 * rows already done, which it computes again with the same bits; rows left to 1-row kernels were
 * called too seldom for C2 to compile them within a run (the 7 last rows of a 2023-row LM head
 * once cost a decode token as much as the other 2016 rows).
 *
 * <p>Every pair still runs the sequence above, so {@link #matMul} is bit-identical to
 * {@link #matVec} whatever {@code n}, the chunking or the thread count. Weight rows are walked in
 * blocks of about {@value #BLOCK_BYTES} bytes, so a block streams from memory once and is re-read
 * from L2 for the following tiles.
 *
 * <p>BF16 weights are widened in registers without cross-lane work: each 32-bit lane of a load
 * holds two weights; {@code lane << 16} is the even column and {@code lane & 0xFFFF0000} the odd
 * one, both exact floats. The input is first copied into the matching layout (per block of
 * {@code 2*VL} columns: the even columns, then the odd ones). That beat widening 16-bit lanes
 * with {@code convertShape(S2I)} in {@code Bf16ConvertBench}, where C2 also failed to intrinsify
 * the conversion in some compilations and boxed every vector.
 *
 * <p>The element-wise kernels are vectorized where it pays and deterministic for a given length;
 * {@link #softmax} and {@link #siluMul} use an exp of their own ({@link FastExp}): the Vector
 * API's {@code EXP} is not guaranteed to give the same bits in every JIT tier.
 */
public final class VectorKernels implements Kernels, AutoCloseable {

  static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
  static final int VL = F.length();
  /** Lanes over the positions of a key block: at most a block, so a load never crosses one. */
  private static final VectorSpecies<Float> KB = VL <= Kernels.KV_BLOCK ? F : FloatVector.SPECIES_512;
  private static final int KBL = KB.length();

  /** Input rows processed per pass over 4 weight rows in {@link #matMul}, F32 weights. */
  static final int TILE = 4;
  /** The same for BF16 weights. */
  static final int TILE_BF16 = 4;
  /** Weight bytes per {@link #matMul} row block (half of the 2 MiB L2 per core). */
  static final long BLOCK_BYTES = 1L << 20;
  /** Below this many weight elements (times n) a product runs on the calling thread alone. */
  static final long PARALLEL_MIN_ELEMENTS = 1L << 16;
  /** The least weight elements handed to a thread at once. */
  private static final long MIN_CHUNK_ELEMENTS = 1L << 14;
  /** Chunks per thread: dynamic scheduling over that many chunks evens out a noisy machine. */
  private static final int CHUNKS_PER_THREAD = 4;
  /**
   * Passes of at most this many input rows let the caller take over a stalled helper's chunk
   * ({@link KernelPool.StealableBody}): decode steps and small batches, whose chunks are short
   * and whose helpers' scratch rows are few. A prefill's helpers would write n times a chunk's
   * rows of scratch, which competes with the weight block for L2 (prefill 0.94x in a trial).
   */
  static final int TAKE_OVER_MAX_ROWS = 16;


  private final int threads;
  private final KernelPool pool; // null: one thread

  /** Kernels that spread products over {@code threads} threads (the caller being one of them). */
  public VectorKernels(int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be >= 1, got " + threads);
    }
    this.threads = threads;
    this.pool = threads == 1 ? null : new KernelPool(threads - 1);
  }

  @Override
  public int threads() {
    return threads;
  }

  @Override
  public void rest() {
    if (pool != null) {
      pool.rest();
    }
  }

  /** Stops the worker threads; later products run on the calling thread alone. */
  @Override
  public void close() {
    if (pool != null) {
      pool.close();
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
    // BF16 runs two FMAs per loaded vector on one chain: 8 rows keep enough loads in flight.
    int tile = bf16 && r1 - r0 >= 8 ? 8 : 4;
    if (r1 - r0 < tile) {
      for (int r = r0; r < r1; r++) {
        if (bf16) {
          DotTiles.bf16Rows1x1(seg, r * rowBytes, rowBytes, x, xOff, cols, out, outOff + r, 0);
        } else {
          DotTiles.f32Rows1x1(seg, r * rowBytes, rowBytes, x, xOff, cols, out, outOff + r, 0);
        }
      }
      return;
    }
    int gap = (r1 - r0) / tile;
    for (int r = r0; r < r0 + gap; r++) {
      vecTile(tile, bf16, seg, r, rowBytes, gap, x, xOff, cols, out, outOff);
    }
    if (r0 + tile * gap < r1) {
      vecTile(tile, bf16, seg, r1 - tile, rowBytes, 1, x, xOff, cols, out, outOff);
    }
  }

  /** Weight rows {@code at + k * gap} of a {@code tile}-row matrix-vector tile. */
  private static void vecTile(int tile, boolean bf16, MemorySegment seg, int at, long rowBytes, int gap,
      float[] x, int xOff, int cols, float[] out, int outOff) {
    if (tile == 8) {
      DotTiles.bf16Rows8x1(seg, at * rowBytes, rowBytes, gap, x, xOff, cols, out, outOff + at, 0);
    } else if (bf16) {
      DotTiles.bf16Rows4x1(seg, at * rowBytes, rowBytes, gap, x, xOff, cols, out, outOff + at, 0);
    } else {
      DotTiles.f32Rows4x1(seg, at * rowBytes, rowBytes, gap, x, xOff, cols, out, outOff + at, 0);
    }
  }

  @Override
  public void matMul(Matrix w, float[] x, int n, float[] out) {
    runAll(new Matrix[] {w}, null, new float[][] {x}, new int[] {n}, new float[][] {out});
  }

  @Override
  public void matMulAll(Matrix[] ws, float[][] xs, int[] ns, float[][] outs) {
    runAll(ws, null, xs, ns, outs);
  }

  @Override
  public void swiGluAll(Matrix[] gates, Matrix[] ups, float[][] xs, int[] ns, float[][] hs) {
    for (int j = 0; j < gates.length; j++) {
      if (ups[j].rows() != gates[j].rows() || ups[j].cols() != gates[j].cols()) {
        throw new IllegalArgumentException("up " + ups[j].rows() + "x" + ups[j].cols()
            + " does not match gate " + gates[j].rows() + "x" + gates[j].cols());
      }
    }
    runAll(gates, ups, xs, ns, hs);
  }

  @Override
  public void forEach(int tasks, java.util.function.IntConsumer task) {
    if (pool == null || tasks < 2) {
      for (int i = 0; i < tasks; i++) {
        task.accept(i);
      }
      return;
    }
    int per = Math.max(1, ceilDiv(tasks, threads * CHUNKS_PER_THREAD));
    parallelFor(ceilDiv(tasks, per), chunk -> {
      for (int i = chunk * per, end = Math.min(tasks, i + per); i < end; i++) {
        task.accept(i);
      }
    });
  }

  /** One product of {@link #runAll}: its row chunks, and for SwiGLU the up projection. */
  private static final class Job {
    final MemorySegment seg;
    final MemorySegment upSeg; // null: a plain product
    final boolean bf16;
    final boolean upBf16;
    final int rows;
    final int cols;
    final int n;
    final float[] in;
    final float[] upIn; // the input in the layout of the up projection's dtype
    final float[] out;
    final float[] up;
    final int blockRows;
    final int chunkRows;
    final int chunks;

    Job(Matrix w, Matrix u, float[] in, float[] upIn, int n, float[] out, int blockRows, int chunkRows) {
      this.seg = w.data();
      this.upSeg = u == null ? null : u.data();
      this.bf16 = w.dtype() == DType.BF16;
      this.upBf16 = u != null && u.dtype() == DType.BF16;
      this.upIn = upIn;
      this.rows = w.rows();
      this.cols = w.cols();
      this.n = n;
      this.in = in;
      this.out = out;
      this.up = u == null ? null : new float[Math.multiplyExact(n, rows)];
      this.blockRows = blockRows;
      this.chunkRows = chunkRows;
      this.chunks = n == 0 || rows == 0 ? 0 : ceilDiv(rows, chunkRows);
    }

    /** Rows of one chunk straight into {@code out}. */
    void run(int chunk) {
      int r0 = chunk * chunkRows;
      compute(r0, Math.min(rows, r0 + chunkRows), out, 0, rows, up);
    }

    /** Rows of one chunk into the scratch, row i of the input at {@code i * (r1 - r0)}. */
    void runInto(int chunk, KernelPool.Scratch scratch) {
      int r0 = chunk * chunkRows;
      int len = Math.min(rows, r0 + chunkRows) - r0;
      float[] gate = scratch.first(n * len);
      float[] upRows = upSeg == null ? null : scratch.second(n * len);
      compute(r0, r0 + len, gate, -r0, len, upRows);
    }

    void publish(int chunk, KernelPool.Scratch scratch) {
      int r0 = chunk * chunkRows;
      int len = Math.min(rows, r0 + chunkRows) - r0;
      float[] rowsOut = scratch.first(n * len);
      for (int i = 0; i < n; i++) {
        System.arraycopy(rowsOut, i * len, out, i * rows + r0, len);
      }
    }

    /** Rows [r0, r1): element (i, r) of the result goes to {@code dst[off + i * stride + r]}. */
    private void compute(int r0, int r1, float[] dst, int off, int stride, float[] upDst) {
      matMulRows(seg, bf16, cols, in, n, dst, off, stride, r0, r1, blockRows);
      if (upSeg == null) {
        return;
      }
      matMulRows(upSeg, upBf16, cols, upIn, n, upDst, off, stride, r0, r1, blockRows);
      for (int i = 0; i < n; i++) {
        int base = off + i * stride;
        SiluMul.apply(dst, upDst, base + r0, base + r1); // as siluMul
      }
    }
  }

  /** The chunks of all the jobs of one {@link #runAll} pass, numbered job after job. */
  private static final class Jobs implements KernelPool.StealableBody {
    private final Job[] jobs;
    private final int[] firstChunk;

    Jobs(Job[] jobs, int[] firstChunk) {
      this.jobs = jobs;
      this.firstChunk = firstChunk;
    }

    private int job(int chunk) {
      int j = 0;
      while (chunk >= firstChunk[j + 1]) {
        j++;
      }
      return j;
    }

    @Override
    public void run(int chunk) {
      int j = job(chunk);
      jobs[j].run(chunk - firstChunk[j]);
    }

    @Override
    public void runInto(int chunk, KernelPool.Scratch scratch) {
      int j = job(chunk);
      jobs[j].runInto(chunk - firstChunk[j], scratch);
    }

    @Override
    public void publish(int chunk, KernelPool.Scratch scratch) {
      int j = job(chunk);
      jobs[j].publish(chunk - firstChunk[j], scratch);
    }
  }

  /**
   * Products (or SwiGLU pairs when {@code ups != null}) in one parallel pass: the row chunks of
   * every job, each computed exactly as {@link #matMul} computes it.
   */
  private void runAll(Matrix[] ws, Matrix[] ups, float[][] xs, int[] ns, float[][] outs) {
    int jobsN = ws.length;
    if (xs.length != jobsN || ns.length != jobsN || outs.length != jobsN || (ups != null && ups.length != jobsN)) {
      throw new IllegalArgumentException("matrices, inputs, row counts and outputs differ in number");
    }
    Job[] jobs = new Job[jobsN];
    int[] firstChunk = new int[jobsN + 1];
    int maxN = 0;
    double work = 0;
    for (int j = 0; j < jobsN; j++) {
      Matrix w = ws[j];
      int n = ns[j];
      int rows = w.rows();
      int cols = w.cols();
      if (n < 0) {
        throw new IllegalArgumentException("n < 0: " + n);
      }
      Objects.checkFromIndexSize(0, Math.multiplyExact(n, cols), xs[j].length);
      Objects.checkFromIndexSize(0, Math.multiplyExact(n, rows), outs[j].length);
      boolean bf16 = w.dtype() == DType.BF16;
      float[] in = xs[j];
      if (bf16 && n > 0) {
        for (int k = 0; k < j; k++) { // q, k and v of the same rows: split the input once
          if (xs[k] == xs[j] && ns[k] == n && ws[k].cols() == cols && jobs[k].bf16) {
            in = jobs[k].in;
            break;
          }
        }
        if (in == xs[j]) {
          in = splitPairs(xs[j], 0, cols, n);
        }
      }
      long rowBytes = (long) cols * w.dtype().byteSize();
      int blockRows = blockRows(rows, rowBytes);
      int chunkRows = pool == null ? Math.max(1, rows) : chunkRows(Math.max(1, rows), cols, blockRows);
      float[] upIn = null;
      if (ups != null) {
        boolean upBf16 = ups[j].dtype() == DType.BF16;
        upIn = upBf16 == bf16 ? in : upBf16 ? splitPairs(xs[j], 0, cols, n) : xs[j];
      }
      jobs[j] = new Job(w, ups == null ? null : ups[j], in, upIn, n, outs[j], blockRows, chunkRows);
      firstChunk[j + 1] = firstChunk[j] + jobs[j].chunks;
      maxN = Math.max(maxN, n);
      work += (double) rows * cols * n * (ups == null ? 1 : 2);
    }
    int chunks = firstChunk[jobsN];
    if (pool == null || work < PARALLEL_MIN_ELEMENTS) {
      for (Job job : jobs) {
        for (int c = 0; c < job.chunks; c++) {
          job.run(c);
        }
      }
      return;
    }
    Jobs body = new Jobs(jobs, firstChunk);
    if (maxN <= TAKE_OVER_MAX_ROWS) {
      parallelFor(chunks, body);
    } else {
      parallelFor(chunks, body::run); // a plain body: the caller waits for every chunk
    }
  }

  /**
   * Weight rows [r0, r1) for every input row, the result for (input row i, weight row r) in
   * {@code out[outOff + i * outStride + r]}: L2-sized blocks of weight rows; within a block, tiles
   * of input rows ({@value #TILE} for F32, {@value #TILE_BF16} for BF16) against 4 weight rows at a
   * time (16 accumulators in registers), one from each quarter of the block; the rows past the
   * quarters in one more tile of adjacent rows, moved back to end at the block's end.
   */
  private static void matMulRows(MemorySegment seg, boolean bf16, int cols, float[] x,
      int n, float[] out, int outOff, int outStride, int r0, int r1, int blockRows) {
    long rowBytes = (long) cols * (bf16 ? 2 : 4);
    // BF16 takes the input rows 4 at a time, then 2 at a time; F32 TILE at a time.
    int leastTile = bf16 ? 2 : TILE;
    for (int b0 = r0, b1; b0 < r1; b0 = b1) {
      // A last block of fewer than 8 rows joins the one before, so its rows stay in whole tiles.
      b1 = r1 - b0 < blockRows + 8 ? r1 : b0 + blockRows;
      int i = 0;
      while (n - i >= leastTile) {
        int inputs = !bf16 ? TILE : n - i < TILE_BF16 ? 2 : TILE_BF16;
        int xo = i * cols;
        int oo = outOff + i * outStride;
        if (b1 - b0 < 4) {
          for (int r = b0; r < b1; r++) {
            tile(bf16, inputs, 1, seg, r, rowBytes, 1, x, xo, cols, out, oo, outStride);
          }
        } else {
          int gap = (b1 - b0) / 4;
          for (int r = b0; r < b0 + gap; r++) {
            tile(bf16, inputs, 4, seg, r, rowBytes, gap, x, xo, cols, out, oo, outStride);
          }
          if (b0 + 4 * gap < b1) {
            tile(bf16, inputs, 4, seg, b1 - 4, rowBytes, 1, x, xo, cols, out, oo, outStride);
          }
        }
        i += inputs;
      }
      for (; i < n; i++) {
        matVecRows(seg, bf16, cols, x, i * cols, out, outOff + i * outStride, b0, b1);
      }
    }
  }

  /**
   * The register tile of {@code weights} (4 or 1) weight rows, {@code at + k * gap}, x
   * {@code inputs} (4, or 2 for BF16) input rows.
   */
  private static void tile(boolean bf16, int inputs, int weights, MemorySegment seg, int at, long rowBytes, int gap,
      float[] x, int xo, int cols, float[] out, int oo, int outStride) {
    long row = at * rowBytes;
    int o = oo + at;
    if (!bf16) {
      if (weights == 4) {
        DotTiles.f32Rows4x4(seg, row, rowBytes, gap, x, xo, cols, out, o, outStride);
      } else {
        DotTiles.f32Rows1x4(seg, row, rowBytes, x, xo, cols, out, o, outStride);
      }
    } else if (inputs == 4) {
      if (weights == 4) {
        DotTiles.bf16Rows4x4(seg, row, rowBytes, gap, x, xo, cols, out, o, outStride);
      } else {
        DotTiles.bf16Rows1x4(seg, row, rowBytes, x, xo, cols, out, o, outStride);
      }
    } else if (weights == 4) {
      DotTiles.bf16Rows4x2(seg, row, rowBytes, gap, x, xo, cols, out, o, outStride);
    } else {
      DotTiles.bf16Rows1x2(seg, row, rowBytes, x, xo, cols, out, o, outStride);
    }
  }

  private int chunkRows(int rows, int cols, int maxRows) {
    int balanced = ceilDiv(rows, threads * CHUNKS_PER_THREAD);
    int minRows = (int) Math.max(1, ceilDiv(MIN_CHUNK_ELEMENTS, Math.max(1, cols)));
    return roundUp8(Math.max(1, Math.min(maxRows, Math.max(balanced, minRows))));
  }

  /** Weight rows per L2 block of {@link #matMulRows}: about {@value #BLOCK_BYTES} bytes, a multiple of 8. */
  static int blockRows(int rows, long rowBytes) {
    return roundUp8((int) Math.max(1, Math.min(Math.max(1, rows), BLOCK_BYTES / Math.max(1, rowBytes))));
  }

  /** Row counts in multiples of 8 keep every row in the 8- and 4-row kernels. */
  private static int roundUp8(int rows) {
    return (rows + 7) & ~7;
  }

  private static int ceilDiv(long a, long b) {
    return (int) ((a + b - 1) / b);
  }

  /** Runs chunks 0..chunks-1 on the pool and the calling thread (see {@link KernelPool} for who takes which). */
  private void parallelFor(int chunks, KernelPool.Body body) {
    pool.run(chunks, body);
  }

  /**
   * Copies {@code rowsN} input rows of {@code cols} floats into the layout the BF16 kernels read:
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

  // ---------------------------------------------------------------------------------------------
  // Element-wise kernels

  /** Dot product of two float ranges. */
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
      a0 = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, b, bOff + i), a0);
      a1 = FloatVector.fromArray(F, a, aOff + i + VL).fma(FloatVector.fromArray(F, b, bOff + i + VL), a1);
      a2 = FloatVector.fromArray(F, a, aOff + i + 2 * VL).fma(FloatVector.fromArray(F, b, bOff + i + 2 * VL), a2);
      a3 = FloatVector.fromArray(F, a, aOff + i + 3 * VL).fma(FloatVector.fromArray(F, b, bOff + i + 3 * VL), a3);
    }
    for (; i < bound1; i += VL) {
      a0 = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, b, bOff + i), a0);
    }
    float s = DotTiles.reduce(a0.add(a1).add(a2.add(a3)));
    for (; i < length; i++) {
      s = Math.fma(a[aOff + i], b[bOff + i], s);
    }
    return s;
  }

  @Override
  public void attendGroup(float[] q, int qOff, int group, int headDim, float[] keys, float[] values, int kvDim,
      int kvOff, int len, float scale, float[] scores, float[] out, int outOff) {
    int padded =
        Kernels.checkAttendGroup(q, qOff, group, headDim, keys, values, kvDim, kvOff, len, scores, out, outOff);
    for (int j = 0; j < group; j++) {
      int s0 = j * padded;
      blockScores(q, qOff + j * headDim, headDim, keys, kvDim, kvOff, padded, scale, scores, s0);
      softmax(scores, s0, len);
      weightedValues(scores, s0, len, values, kvDim, kvOff, headDim, out, outOff + j * headDim);
    }
  }

  /**
   * {@code scores[s0 + t] = scale * (q . k_t)} for every position of the blocks below {@code
   * padded}, four vectors of positions at a time (four independent FMA chains).
   */
  private static void blockScores(float[] q, int qh, int headDim, float[] keys, int kvDim, int kvOff,
      int padded, float scale, float[] scores, int s0) {
    int vectors = padded / KBL;
    int c = 0;
    for (; c + 4 <= vectors; c += 4) {
      int k0 = Kernels.keyIndex(c * KBL, kvOff, kvDim);
      int k1 = Kernels.keyIndex((c + 1) * KBL, kvOff, kvDim);
      int k2 = Kernels.keyIndex((c + 2) * KBL, kvOff, kvDim);
      int k3 = Kernels.keyIndex((c + 3) * KBL, kvOff, kvDim);
      FloatVector a0 = FloatVector.zero(KB);
      FloatVector a1 = a0;
      FloatVector a2 = a0;
      FloatVector a3 = a0;
      for (int d = 0; d < headDim; d++) {
        FloatVector qd = FloatVector.broadcast(KB, q[qh + d]);
        int dd = d * KV_BLOCK;
        a0 = qd.fma(FloatVector.fromArray(KB, keys, k0 + dd), a0);
        a1 = qd.fma(FloatVector.fromArray(KB, keys, k1 + dd), a1);
        a2 = qd.fma(FloatVector.fromArray(KB, keys, k2 + dd), a2);
        a3 = qd.fma(FloatVector.fromArray(KB, keys, k3 + dd), a3);
      }
      a0.mul(scale).intoArray(scores, s0 + c * KBL);
      a1.mul(scale).intoArray(scores, s0 + (c + 1) * KBL);
      a2.mul(scale).intoArray(scores, s0 + (c + 2) * KBL);
      a3.mul(scale).intoArray(scores, s0 + (c + 3) * KBL);
    }
    for (; c < vectors; c++) {
      int k0 = Kernels.keyIndex(c * KBL, kvOff, kvDim);
      FloatVector a0 = FloatVector.zero(KB);
      for (int d = 0; d < headDim; d++) {
        a0 = FloatVector.broadcast(KB, q[qh + d]).fma(FloatVector.fromArray(KB, keys, k0 + d * KV_BLOCK), a0);
      }
      a0.mul(scale).intoArray(scores, s0 + c * KBL);
    }
  }

  /** {@code out[o + d] = sum_t p_t * v_t[d]} in position order, four vectors of dimensions at a time. */
  private static void weightedValues(float[] p, int s0, int len, float[] values, int kvDim, int kvOff, int headDim,
      float[] out, int o) {
    int vecDims = headDim - headDim % VL;
    int d = 0;
    for (; d + 4 * VL <= vecDims; d += 4 * VL) {
      FloatVector a0 = FloatVector.zero(F);
      FloatVector a1 = a0;
      FloatVector a2 = a0;
      FloatVector a3 = a0;
      for (int t = 0; t < len; t++) {
        FloatVector pt = FloatVector.broadcast(F, p[s0 + t]);
        int v = t * kvDim + kvOff + d;
        a0 = pt.fma(FloatVector.fromArray(F, values, v), a0);
        a1 = pt.fma(FloatVector.fromArray(F, values, v + VL), a1);
        a2 = pt.fma(FloatVector.fromArray(F, values, v + 2 * VL), a2);
        a3 = pt.fma(FloatVector.fromArray(F, values, v + 3 * VL), a3);
      }
      a0.intoArray(out, o + d);
      a1.intoArray(out, o + d + VL);
      a2.intoArray(out, o + d + 2 * VL);
      a3.intoArray(out, o + d + 3 * VL);
    }
    for (; d < vecDims; d += VL) {
      FloatVector a0 = FloatVector.zero(F);
      for (int t = 0; t < len; t++) {
        a0 = FloatVector.broadcast(F, p[s0 + t]).fma(FloatVector.fromArray(F, values, t * kvDim + kvOff + d), a0);
      }
      a0.intoArray(out, o + d);
    }
    for (; d < headDim; d++) {
      float a = 0f;
      for (int t = 0; t < len; t++) {
        a = Math.fma(p[s0 + t], values[t * kvDim + kvOff + d], a);
      }
      out[o + d] = a;
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
      FloatVector.fromArray(F, x, xOff + i).mul(vinv).mul(FloatVector.fromArray(F, weight, i)).intoArray(out, outOff + i);
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
        vmax = vmax.max(FloatVector.fromArray(F, x, off + i));
      }
      max = vmax.reduceLanes(VectorOperators.MAX); // max is exact: order does not matter
    }
    for (; i < length; i++) {
      max = Math.max(max, x[off + i]);
    }
    // Exponents below exp's clamp give 0 (Math.exp's result there is under 4e-38), and the sum is
    // taken over lanes, then the tail: a fixed order, whatever the other rows of a batch.
    FloatVector shift = FloatVector.broadcast(F, max);
    FloatVector acc = FloatVector.zero(F);
    for (i = 0; i < bound; i += VL) {
      FloatVector d = FloatVector.fromArray(F, x, off + i).sub(shift);
      FloatVector e = FastExp.exp(d).blend(0f, d.lt(FastExp.X_MIN));
      e.intoArray(x, off + i);
      acc = acc.add(e);
    }
    float sum = DotTiles.reduce(acc);
    for (; i < length; i++) {
      float d = x[off + i] - max;
      float e = d < FastExp.X_MIN ? 0f : FastExp.exp(d);
      x[off + i] = e;
      sum += e;
    }
    FloatVector vs = FloatVector.broadcast(F, sum);
    for (i = 0; i < bound; i += VL) {
      FloatVector.fromArray(F, x, off + i).div(vs).intoArray(x, off + i);
    }
    for (; i < length; i++) {
      x[off + i] /= sum;
    }
  }

  @Override
  public void siluMul(float[] gate, float[] up, int length) {
    SiluMul.apply(gate, up, 0, length);
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
        FloatVector x1 = FloatVector.fromArray(F, x, b1 + i);
        FloatVector x2 = FloatVector.fromArray(F, x, b2 + i);
        FloatVector c = FloatVector.fromArray(F, cos, i);
        FloatVector s = FloatVector.fromArray(F, sin, i);
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
