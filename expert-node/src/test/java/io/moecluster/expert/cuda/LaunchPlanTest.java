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
  void bf16DecodeRunsOneBlockPerSixteenRowsWithOneWarpPerSlice() {
    List<Launch> plan = LaunchPlan.plan(Stage.GATE_UP, DType.BF16, 1, 2816, 1024);
    assertEquals(1, plan.size());
    Launch l = plan.get(0);
    assertEquals("moe_gate_up_bf16_decode", l.kernel());
    assertEquals(LaunchPlan.Kind.BF16_DECODE, l.kind());
    assertEquals(2816 / 16, l.gridX());
    assertEquals(1, l.gridY());
    assertEquals(8 * 32, l.blockX(), "K = 1024: 32 blocks of 32 in 8 slices, a warp each");
    assertTrue(l.vectorized());

    Launch odd = LaunchPlan.plan(Stage.DOWN, DType.BF16, LaunchPlan.TC_DECODE_MAX_ROWS, 1023, 2817).get(0);
    assertEquals("moe_down_bf16_decode", odd.kernel());
    assertEquals(64, odd.gridX(), "ceil(1023 / 16) tiles: the last one covers the 15 remaining outputs");
    assertFalse(odd.vectorized(), "K = 2817 rows are not 16-byte aligned: scalar loads, same order");
  }

  @Test
  void theSummationStructureDependsOnKAlone() {
    assertEquals(new LaunchPlan.Geometry(32, 8, 4, 1, 8), LaunchPlan.geometry(1024));
    assertEquals(new LaunchPlan.Geometry(88, 15, 6, 3, 5), LaunchPlan.geometry(2816));
    assertEquals(new LaunchPlan.Geometry(1, 1, 1, 1, 1), LaunchPlan.geometry(7));
    assertEquals(new LaunchPlan.Geometry(448, 16, 28, 8, 2), LaunchPlan.geometry(14336));
    for (int k = 1; k < 20_000; k += 37) {
      LaunchPlan.Geometry g = LaunchPlan.geometry(k);
      assertTrue(g.slices() <= LaunchPlan.TC_MAX_SLICES, "K " + k);
      assertTrue((long) g.slices() * g.blocksPerSlice() >= g.blocks(), "slices cover K " + k);
      assertTrue((long) (g.slices() - 1) * g.blocksPerSlice() < g.blocks(), "no empty slice at K " + k);
      assertTrue((long) g.groups() * g.slicesPerGroup() >= g.slices(), "groups cover the slices at K " + k);
      assertTrue((long) (g.groups() - 1) * g.slicesPerGroup() < g.slices(), "no empty group at K " + k);
    }
  }

  @Test
  void bf16PrefillSplitsTheActivationsThenTilesRowsByTokensAndKByGroups() {
    List<Launch> gateUp = LaunchPlan.plan(Stage.GATE_UP, DType.BF16, 256, 2816, 1024);
    assertEquals(2, gateUp.size());
    Launch split = gateUp.get(0);
    assertEquals(LaunchPlan.Kind.SPLIT, split.kind());
    assertEquals(256 * 32 * 4 / 256, split.gridX(), "one thread per 8 activations");
    Launch gu = gateUp.get(1);
    assertEquals("moe_gate_up_bf16_prefill", gu.kernel());
    assertEquals(2816 / 64, gu.gridX());
    assertEquals(256 / 64, gu.gridY());
    assertEquals(1, gu.gridZ(), "K = 1024 is one group");
    assertEquals(LaunchPlan.GATE_UP_TILE.sharedBytes(), gu.sharedBytes());
    assertEquals(0, LaunchPlan.partialFloats(gu, 2816, 1024));

    Launch down = LaunchPlan.plan(Stage.DOWN, DType.BF16, 256, 1024, 2816).get(0);
    assertEquals("moe_down_bf16_prefill", down.kernel());
    assertEquals(1024 / 64, down.gridX());
    assertEquals(256 / 64, down.gridY());
    assertEquals(3, down.gridZ(), "K = 2816 is three groups of K");
    assertEquals(3L * 256 * 1024, LaunchPlan.partialFloats(down, 1024, 2816));
    assertEquals(16 * 4, LaunchPlan.counters(down));
    assertEquals(88 * 64 * 2, LaunchPlan.splitBytesPerRow(2816));
  }

  @Test
  void f32RowsRunOnTheFmaKernels() {
    Launch decode = LaunchPlan.plan(Stage.DOWN, DType.F32, LaunchPlan.F32_DECODE_MAX_ROWS, 1023, 2817).get(0);
    assertEquals("moe_down_f32_decode", decode.kernel());
    assertEquals(LaunchPlan.F32_DECODE_MAX_ROWS, decode.gridY());
    assertEquals(256, decode.gridX(), "ceil(1023 / 4) blocks");
    Launch prefill = LaunchPlan.plan(Stage.GATE_UP, DType.F32, LaunchPlan.F32_DECODE_MAX_ROWS + 1, 33, 8).get(0);
    assertEquals("moe_gate_up_f32_prefill", prefill.kernel());
    assertEquals(1, prefill.gridY());
    assertEquals(2, prefill.gridX());
  }

  @Test
  void hugeBatchesAreSplitUnderTheGridLimitAndCoverEveryRowOnce() {
    int n = LaunchPlan.MAX_GRID_Y * LaunchPlan.F32_PREFILL_ROWS_PER_BLOCK * 2 + 13;
    List<Launch> plan = LaunchPlan.plan(Stage.GATE_UP, DType.F32, n, 64, 64);
    assertEquals(3, plan.size());
    int next = 0;
    for (Launch l : plan) {
      assertEquals(next, l.rowStart());
      assertTrue(l.gridY() <= LaunchPlan.MAX_GRID_Y);
      assertTrue((long) l.gridY() * LaunchPlan.F32_PREFILL_ROWS_PER_BLOCK >= l.rows());
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
    assertEquals(9, names.size());
    for (Stage s : Stage.values()) {
      for (DType d : new DType[] {DType.F32, DType.BF16}) {
        for (int n : new int[] {1, 300}) {
          for (Launch l : LaunchPlan.plan(s, d, n, 16, 16)) {
            assertTrue(names.contains(l.kernel()), l.kernel());
          }
        }
      }
    }
  }
}
