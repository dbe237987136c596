package io.moecluster.expert.cuda;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.tensor.DType;
import java.util.ArrayList;
import java.util.List;

/**
 * How one product of the expert FFN is cut into kernel launches (host side, no GPU needed). It
 * mirrors the geometry of {@code expert_ffn.cu}:
 *
 * <ul>
 *   <li><b>BF16 weights</b> run on the tensor cores. Up to {@value #TC_DECODE_MAX_ROWS} rows take
 *       the decode kernels: one block per 16 output rows, one warp per K slice. More rows take
 *       the prefill kernels: activations split into BF16 hi/lo once ({@code moe_split_bf16}),
 *       then tiles of weight rows by tokens, K cut into groups of slices over {@code gridZ}.
 *   <li><b>F32 weights</b> run on the CUDA cores' FMAs: decode kernels one row per block, prefill
 *       kernels {@value #F32_PREFILL_ROWS_PER_BLOCK} rows a block.
 * </ul>
 *
 * <p>Every kernel of a dtype sums each output in one fixed order that depends on K alone (for
 * BF16: {@link #geometry}), so which kernel runs a row, and how rows are batched, never changes
 * its result.
 */
public final class LaunchPlan {
  private LaunchPlan() {}

  /** The two products: SwiGLU gate/up ({@code w1, w3}) and down ({@code w2}). */
  public enum Stage {
    GATE_UP("moe_gate_up_"),
    DOWN("moe_down_");

    final String prefix;

    Stage(String prefix) {
      this.prefix = prefix;
    }
  }

  /** Which kernel family a launch belongs to: each takes its own parameter list. */
  public enum Kind {
    /** F32 weights, CUDA-core FMAs: {@code (w[, w3], x, out, n, M, K, vec)}. */
    F32,
    /** {@code moe_split_bf16(x, xs, n, K, vec, geometry)}: activations to BF16 hi/lo. */
    SPLIT,
    /** BF16 decode: {@code (w[, w3], x, out, n, M, K, vec, geometry)}, F32 activations. */
    BF16_DECODE,
    /** BF16 prefill: {@code (w[, w3], split in, out, gpart, count, n, M, K, vec, geometry)}. */
    BF16_PREFILL
  }

  static final int F32_DECODE_THREADS = 4 * 32;
  static final int F32_DECODE_OUTPUTS_PER_BLOCK = 4;
  static final int F32_PREFILL_THREADS = 8 * 32;
  static final int F32_PREFILL_OUTPUTS_PER_BLOCK = 8 * 4;
  static final int F32_PREFILL_ROWS_PER_BLOCK = 8;
  /** Up to this many rows take the F32 decode kernels (their weights are re-read per row, from L2). */
  public static final int F32_DECODE_MAX_ROWS = 4;

  /** Up to this many rows take the BF16 decode kernels (one mma column tile of 8 tokens). */
  public static final int TC_DECODE_MAX_ROWS = 8;
  static final int TC_KB = 32;
  static final int TC_MAX_SLICES = 16;
  static final int TC_SLICE_BLOCKS = 4;
  static final int TC_GROUP_BLOCKS = 32;
  static final int SPLIT_THREADS = 256;
  static final int MAX_GRID_Y = 65_535;

  /**
   * A BF16 prefill kernel's tile: {@code warpsF x warpsT} warps, each two 16-row weight tiles by
   * {@code tokenTiles} groups of 8 tokens, through a {@code stages}-deep shared-memory ring.
   * Mirrors {@code TC_GU_*} and {@code TC_DN_*} in expert_ffn.cu.
   */
  record Tile(int warpsF, int warpsT, int tokenTiles, int stages) {
    int threads() {
      return warpsF * warpsT * 32;
    }

    int outputRows(Stage s) {
      return s == Stage.GATE_UP ? warpsF * 16 : warpsF * 32;
    }

    int tokens() {
      return warpsT * tokenTiles * 8;
    }

    int sharedBytes() {
      return stages * (warpsF * 32 * 4 + tokens() * 8) * 16;
    }
  }

  static final Tile GATE_UP_TILE = new Tile(4, 2, 4, 8);
  static final Tile DOWN_TILE = new Tile(2, 2, 4, 6);

  static Tile tile(Stage s) {
    return s == Stage.GATE_UP ? GATE_UP_TILE : DOWN_TILE;
  }

  /**
   * The fixed summation structure of a BF16 product over K (the {@code TcGeometry} the kernels
   * take): K in {@code blocks} blocks of 32, {@code slices} slices of {@code blocksPerSlice}
   * blocks, {@code groups} groups of {@code slicesPerGroup} slices. A function of K alone, so
   * that decode and prefill sum every output the same way.
   */
  public record Geometry(int blocks, int slices, int blocksPerSlice, int groups, int slicesPerGroup) {
    /** The kernel parameter: the struct's five ints. */
    public int[] asParameter() {
      return new int[] {blocks, slices, blocksPerSlice, groups, slicesPerGroup};
    }
  }

  /**
   * The summation structure of a BF16 product over {@code inner} (K) elements: slices of about
   * {@value #TC_SLICE_BLOCKS} blocks of 32 (the decode kernel's warps; a decode warp keeps a
   * slice's loads in flight at once), at most {@value #TC_MAX_SLICES}; groups of about
   * {@value #TC_GROUP_BLOCKS} blocks (the prefill kernel's split of K over blocks).
   */
  public static Geometry geometry(int inner) {
    if (inner < 1) {
      throw new IllegalArgumentException("K must be >= 1, got " + inner);
    }
    int blocks = ceilDiv(inner, TC_KB);
    int s = Math.min(ceilDiv(blocks, TC_SLICE_BLOCKS), TC_MAX_SLICES);
    int perSlice = ceilDiv(blocks, s);
    int slices = ceilDiv(blocks, perSlice);
    int g = Math.min(ceilDiv(blocks, TC_GROUP_BLOCKS), slices);
    int perGroup = ceilDiv(slices, g);
    return new Geometry(blocks, slices, perSlice, ceilDiv(slices, perGroup), perGroup);
  }

  /**
   * One kernel launch over rows {@code [rowStart, rowStart + rows)}.
   *
   * @param kernel the PTX entry point, e.g. {@code moe_gate_up_bf16_decode}
   * @param sharedBytes dynamic shared memory of the launch
   * @param vectorized whether rows are 16-byte aligned (16-byte loads; same order either way)
   */
  public record Launch(Kind kind, String kernel, int rowStart, int rows, int gridX, int gridY, int gridZ,
      int blockX, int sharedBytes, boolean vectorized) {}

  /** Whether the GPU kernels take these weights (F32 or BF16, one dtype for the three matrices). */
  public static boolean supports(ExpertWeights w) {
    DType d = w.gate().dtype();
    return (d == DType.F32 || d == DType.BF16) && w.up().dtype() == d && w.down().dtype() == d;
  }

  /** The kernel-name infix of a weight dtype; IllegalArgumentException for one without kernels. */
  public static String dtypeName(DType dtype) {
    return switch (dtype) {
      case F32 -> "f32";
      case BF16 -> "bf16";
      default -> throw new IllegalArgumentException("the CUDA kernels take F32 or BF16 weights, not " + dtype);
    };
  }

  /** Whether {@code n} BF16 rows take the prefill kernels, with split activations between the products. */
  public static boolean bf16Prefill(int n) {
    return n > TC_DECODE_MAX_ROWS;
  }

  /**
   * The launches of one product over {@code n} rows. For BF16 prefill, the gate/up plan starts
   * with the split of the activations, and gate/up leaves the split input of down.
   *
   * @param outputs M, the rows of the weight matrix (outputs per input row)
   * @param inner K, the columns of the weight matrix (elements per input row)
   */
  public static List<Launch> plan(Stage stage, DType dtype, int n, int outputs, int inner) {
    if (n < 1 || outputs < 1 || inner < 1) {
      throw new IllegalArgumentException("a product needs n, M, K >= 1, got " + n + ", " + outputs + ", " + inner);
    }
    String base = stage.prefix + dtypeName(dtype);
    boolean vec = inner % 8 == 0;
    List<Launch> launches = new ArrayList<>();
    if (dtype == DType.F32) {
      if (n <= F32_DECODE_MAX_ROWS) {
        launches.add(new Launch(Kind.F32, base + "_decode", 0, n, ceilDiv(outputs, F32_DECODE_OUTPUTS_PER_BLOCK), n,
            1, F32_DECODE_THREADS, 0, vec));
        return launches;
      }
      forChunks(n, F32_PREFILL_ROWS_PER_BLOCK, (start, rows) -> launches.add(new Launch(Kind.F32, base + "_prefill",
          start, rows, ceilDiv(outputs, F32_PREFILL_OUTPUTS_PER_BLOCK), ceilDiv(rows, F32_PREFILL_ROWS_PER_BLOCK), 1,
          F32_PREFILL_THREADS, 0, vec)));
      return launches;
    }
    Geometry geo = geometry(inner);
    if (!bf16Prefill(n)) {
      launches.add(new Launch(Kind.BF16_DECODE, base + "_decode", 0, n, ceilDiv(outputs, 16), 1, 1,
          geo.slices() * 32, 0, vec));
      return launches;
    }
    Tile t = tile(stage);
    forChunks(n, t.tokens(), (start, rows) -> {
      if (stage == Stage.GATE_UP) {
        launches.add(new Launch(Kind.SPLIT, "moe_split_bf16", start, rows,
            (int) ceilDiv((long) rows * geo.blocks() * 4, SPLIT_THREADS), 1, 1, SPLIT_THREADS, 0, vec));
      }
      launches.add(new Launch(Kind.BF16_PREFILL, base + "_prefill", start, rows, ceilDiv(outputs, t.outputRows(stage)),
          ceilDiv(rows, t.tokens()), geo.groups(), t.threads(), t.sharedBytes(), vec));
    });
    return launches;
  }

  /** Floats of group partials a BF16 prefill launch needs (0 with one group). */
  public static long partialFloats(Launch l, int outputs, int inner) {
    if (l.kind() != Kind.BF16_PREFILL || l.gridZ() == 1) {
      return 0;
    }
    int mats = l.kernel().startsWith(Stage.GATE_UP.prefix) ? 2 : 1;
    return (long) l.gridZ() * mats * l.rows() * outputs;
  }

  /** Tile counters a BF16 prefill launch needs (zero between launches: the kernels reset them). */
  public static int counters(Launch l) {
    return l.kind() == Kind.BF16_PREFILL ? l.gridX() * l.gridY() : 0;
  }

  /** Bytes of one token's split activations over {@code inner} elements (hi and lo, zero-padded to 32). */
  public static long splitBytesPerRow(int inner) {
    return (long) geometry(inner).blocks() * TC_KB * 2 * Short.BYTES;
  }

  /** Every kernel entry point of the PTX module. */
  public static List<String> kernelNames() {
    List<String> names = new ArrayList<>();
    for (Stage s : Stage.values()) {
      for (String d : new String[] {"f32", "bf16"}) {
        names.add(s.prefix + d + "_decode");
        names.add(s.prefix + d + "_prefill");
      }
    }
    names.add("moe_split_bf16");
    return names;
  }

  private interface ChunkSink {
    void accept(int start, int rows);
  }

  /** Cuts n rows into launches under the grid's y limit. */
  private static void forChunks(int n, int rowsPerBlock, ChunkSink sink) {
    int maxRows = MAX_GRID_Y * rowsPerBlock;
    for (int start = 0; start < n; start += maxRows) {
      sink.accept(start, Math.min(maxRows, n - start));
    }
  }

  private static int ceilDiv(int a, int b) {
    return (a + b - 1) / b;
  }

  private static long ceilDiv(long a, long b) {
    return (a + b - 1) / b;
  }
}
