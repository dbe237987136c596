package io.moecluster.expert.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.core.tensor.DType;
import io.moecluster.core.tensor.Matrix;
import io.moecluster.expert.cuda.LaunchPlan.Launch;
import io.moecluster.expert.cuda.LaunchPlan.Stage;
import java.util.List;
import org.junit.jupiter.api.Test;

class LaunchPlanTest {

  @Test
  void decodeRowsRunOneRowPerBlockAndCoverEveryOutput() {
    List<Launch> plan = LaunchPlan.plan(Stage.GATE_UP, DType.BF16, 1, 2816, 1024);
    assertEquals(1, plan.size());
    Launch l = plan.get(0);
    assertEquals("moe_gate_up_bf16_decode", l.kernel());
    assertEquals(1, l.gridY());
    assertEquals(LaunchPlan.DECODE_THREADS, l.blockX());
    assertEquals(2816 / LaunchPlan.DECODE_OUTPUTS_PER_BLOCK, l.gridX());
    assertTrue(l.vectorized());

    Launch odd = LaunchPlan.plan(Stage.DOWN, DType.F32, LaunchPlan.DECODE_MAX_ROWS, 1023, 2817).get(0);
    assertEquals("moe_down_f32_decode", odd.kernel());
    assertEquals(LaunchPlan.DECODE_MAX_ROWS, odd.gridY());
    assertEquals(256, odd.gridX(), "ceil(1023 / 4) blocks: the last one covers the 3 remaining outputs");
    assertFalse(odd.vectorized(), "K = 2817 rows are not 16-byte aligned: scalar loads, same order");
  }

  @Test
  void prefillRowsRunEightRowsPerBlock() {
    List<Launch> plan = LaunchPlan.plan(Stage.DOWN, DType.BF16, 256, 1024, 2816);
    assertEquals(1, plan.size());
    Launch l = plan.get(0);
    assertEquals("moe_down_bf16_prefill", l.kernel());
    assertEquals(32, l.gridY());
    assertEquals(1024 / LaunchPlan.PREFILL_OUTPUTS_PER_BLOCK, l.gridX());
    assertEquals(LaunchPlan.PREFILL_THREADS, l.blockX());

    Launch five = LaunchPlan.plan(Stage.GATE_UP, DType.F32, LaunchPlan.DECODE_MAX_ROWS + 1, 33, 8).get(0);
    assertEquals("moe_gate_up_f32_prefill", five.kernel());
    assertEquals(1, five.gridY());
    assertEquals(2, five.gridX());
  }

  @Test
  void hugeBatchesAreSplitUnderTheGridLimitAndCoverEveryRowOnce() {
    int n = LaunchPlan.MAX_GRID_Y * LaunchPlan.PREFILL_ROWS_PER_BLOCK * 2 + 13;
    List<Launch> plan = LaunchPlan.plan(Stage.GATE_UP, DType.BF16, n, 64, 64);
    assertEquals(3, plan.size());
    int next = 0;
    for (Launch l : plan) {
      assertEquals(next, l.rowStart());
      assertTrue(l.gridY() <= LaunchPlan.MAX_GRID_Y);
      assertTrue((long) l.gridY() * LaunchPlan.PREFILL_ROWS_PER_BLOCK >= l.rows());
      next += l.rows();
    }
    assertEquals(n, next);
  }

  @Test
  void dtypes() {
    assertEquals("f32", LaunchPlan.dtypeName(DType.F32));
    assertEquals("bf16", LaunchPlan.dtypeName(DType.BF16));
    var e = assertThrows(IllegalArgumentException.class, () -> LaunchPlan.dtypeName(DType.F16));
    assertTrue(e.getMessage().contains("F32 or BF16"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> LaunchPlan.plan(Stage.DOWN, DType.F16, 1, 8, 8));

    assertTrue(LaunchPlan.supports(TestExperts.random(DType.BF16, 16, 24, 1)));
    assertTrue(LaunchPlan.supports(TestExperts.random(DType.F32, 16, 24, 1)));
    ExpertWeights bf = TestExperts.random(DType.BF16, 16, 24, 1);
    Matrix f32Down = Matrix.of("down", DType.F32, 16, 24, new float[16 * 24]);
    assertFalse(LaunchPlan.supports(new ExpertWeights(bf.gate(), bf.up(), f32Down)), "mixed dtypes run on the CPU");
  }

  @Test
  void badSizesAreRejected() {
    assertThrows(IllegalArgumentException.class, () -> LaunchPlan.plan(Stage.DOWN, DType.F32, 0, 8, 8));
    assertThrows(IllegalArgumentException.class, () -> LaunchPlan.plan(Stage.DOWN, DType.F32, 1, 0, 8));
  }

  @Test
  void everyKernelOfThePlanIsListed() {
    List<String> names = LaunchPlan.kernelNames();
    assertEquals(8, names.size());
    for (Stage s : Stage.values()) {
      for (DType d : new DType[] {DType.F32, DType.BF16}) {
        for (int n : new int[] {1, 300}) {
          assertTrue(names.contains(LaunchPlan.plan(s, d, n, 16, 16).get(0).kernel()));
        }
      }
    }
  }
}
