package io.moecluster.expert.cuda;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.tensor.DType;
import java.util.ArrayList;
import java.util.List;

/**
 * How one product of the expert FFN is cut into kernel launches (host side, no GPU needed). The
 * geometry mirrors {@code expert_ffn.cu}: decode kernels take one row per block (a memory-bound
 * GEMV, {@value #DECODE_OUTPUTS_PER_BLOCK} outputs a block), prefill kernels
 * {@value #PREFILL_ROWS_PER_BLOCK} rows a block ({@value #PREFILL_OUTPUTS_PER_BLOCK} outputs).
 * Every kernel sums each dot product in the same fixed order, so which variant runs a row, and
 * how the rows are split, never changes its result.
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

  static final int DECODE_THREADS = 4 * 32;
  static final int DECODE_OUTPUTS_PER_BLOCK = 4 * 1;
  static final int PREFILL_THREADS = 8 * 32;
  static final int PREFILL_OUTPUTS_PER_BLOCK = 8 * 4;
  static final int PREFILL_ROWS_PER_BLOCK = 8;
  static final int MAX_GRID_Y = 65_535;

  /** Up to this many rows run on the decode kernels (their weights are re-read per row, from L2). */
  public static final int DECODE_MAX_ROWS = 4;

  /**
   * One kernel launch over rows {@code [rowStart, rowStart + rows)}.
   *
   * @param kernel the PTX entry point, e.g. {@code moe_gate_up_bf16_decode}
   * @param vectorized whether rows are 16-byte aligned (16-byte loads; same order either way)
   */
  public record Launch(String kernel, int rowStart, int rows, int gridX, int gridY, int blockX, boolean vectorized) {}

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

  /**
   * The launches of one product over {@code n} rows.
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
    if (n <= DECODE_MAX_ROWS) {
      launches.add(new Launch(base + "_decode", 0, n, ceilDiv(outputs, DECODE_OUTPUTS_PER_BLOCK), n,
          DECODE_THREADS, vec));
      return launches;
    }
    int maxRows = MAX_GRID_Y * PREFILL_ROWS_PER_BLOCK;
    for (int start = 0; start < n; start += maxRows) {
      int rows = Math.min(maxRows, n - start);
      launches.add(new Launch(base + "_prefill", start, rows, ceilDiv(outputs, PREFILL_OUTPUTS_PER_BLOCK),
          ceilDiv(rows, PREFILL_ROWS_PER_BLOCK), PREFILL_THREADS, vec));
    }
    return launches;
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
    return names;
  }

  private static int ceilDiv(int a, int b) {
    return (a + b - 1) / b;
  }
}
