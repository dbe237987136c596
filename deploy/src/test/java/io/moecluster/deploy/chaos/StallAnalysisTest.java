package io.moecluster.deploy.chaos;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.sampling.SamplingParams;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The definitions of stall and recovery, on hand-made token timelines (times in ms). */
class StallAnalysisTest {
  private static final long MS = 1_000_000;
  private static final GenerationRequest REQUEST =
      new GenerationRequest(new int[] {1, 2}, SamplingParams.GREEDY, 8, List.of(), true);

  private static StreamRecord record(int stream, long startMs, long endMs, String error, long... arrivalsMs) {
    long[] at = new long[arrivalsMs.length];
    int[] ids = new int[arrivalsMs.length];
    for (int i = 0; i < at.length; i++) {
      at[i] = arrivalsMs[i] * MS;
      ids[i] = i;
    }
    return new StreamRecord(stream, 0, REQUEST, ids, at, startMs * MS, endMs * MS, error);
  }

  @Test
  void stallIsTheLargestGapAfterTheFaultMinusTheNormalItl() {
    // ITL 100 ms; fault at 350 ms; the gap spanning it is 300-800 (500 ms), a later one 200 ms.
    StreamRecord hit = record(0, 0, 1300, null, 0, 100, 200, 300, 800, 1000, 1100);
    // Normal ITL 50 ms; the fault costs it a 450 ms gap, 400 ms of stall.
    StreamRecord other = record(1, 0, 1000, null, 100, 150, 200, 250, 300, 750, 800);
    // Ended before the fault: not affected.
    StreamRecord before = record(2, 0, 340, null, 0, 100, 200, 300);
    StallAnalysis a = StallAnalysis.of(List.of(hit, other, before), 350 * MS, 350 * MS);
    assertEquals(2, a.affected());
    assertEquals(0, a.failed());
    assertArrayEquals(new long[] {400 * MS, 400 * MS}, new long[] {a.stallNanos()[0], a.stallNanos()[1]});
    assertEquals(400 * MS, a.maxStallNanos());
    // Recovery: the last affected stream to move again, 800 - 350 ms.
    assertEquals(450 * MS, a.recoveryNanos());
  }

  @Test
  void aFailedStreamNeverRecovers() {
    StreamRecord ok = record(0, 0, 900, null, 0, 100, 200, 300, 400, 500);
    StreamRecord lost = record(1, 0, 12_000, "UNAVAILABLE: no expert", 0, 100, 200, 300);
    StallAnalysis a = StallAnalysis.of(List.of(ok, lost), 350 * MS, 350 * MS);
    assertEquals(2, a.affected());
    assertEquals(1, a.failed());
    assertEquals(-1, a.recoveryNanos());
    assertEquals(1, a.stallNanos().length, "only completed streams have a stall");
  }

  @Test
  void aStreamWithoutTokensBeforeTheFaultCountsFromTheFault() {
    // Global ITL from the other stream: 100 ms. First token 700 ms after the fault at 300.
    StreamRecord warm = record(0, 0, 600, null, 0, 100, 200, 300, 400);
    StreamRecord cold = record(1, 250, 1200, null, 1000, 1100);
    StallAnalysis a = StallAnalysis.of(List.of(warm, cold), 300 * MS, 300 * MS);
    assertEquals(2, a.affected());
    assertEquals(600 * MS, a.maxStallNanos()); // 700 ms gap - 100 ms ITL
    assertEquals(700 * MS, a.recoveryNanos());
  }

  @Test
  void percentilesAreNearestRank() {
    long[] v = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assertEquals(5, StallAnalysis.percentile(v, 50));
    assertEquals(10, StallAnalysis.percentile(v, 100));
    assertEquals(-1, StallAnalysis.percentile(new long[0], 50));
  }

  @Test
  void differenceNamesMissingExtraAndWrongTokens() {
    StreamRecord r = record(0, 0, 10, null, 1, 2, 3);
    assertNull(r.difference(new int[] {0, 1, 2}));
    assertTrue(r.difference(new int[] {0, 1, 2, 3}).contains("1 token(s) missing"));
    assertTrue(r.difference(new int[] {0, 1}).contains("1 extra token(s)"));
    assertTrue(r.difference(new int[] {0, 9, 2}).startsWith("token 1 is 1, expected 9"));
  }

  @Test
  void scenariosAndTopologies() {
    assertEquals(List.of(Scenario.KILL_ROUTER), Scenario.parse("kill-router"));
    assertEquals(4, Scenario.parse("all").size());
    assertTrue(assertThrows(IllegalArgumentException.class, () -> Scenario.parse("kill-gateway")).getMessage()
        .contains("kill-expert, kill-router, restart-expert, pause-expert, all"));
    Topology experts = Topology.of(Topology.Target.EXPERT, 3);
    assertEquals("gateway(gateway,router) expert-1(expert) expert-2(expert) expert-3(expert)", experts.describe());
    assertEquals("expert-1", experts.victim());
    Topology routers = Topology.of(Topology.Target.ROUTER, 1);
    assertEquals(2, routers.routerNodes());
    assertEquals("router-1", routers.victim());
    assertFalse(routers.nodes().get(0).roles().contains("router"), "the gateway outlives the router it loses");
    assertThrows(IllegalArgumentException.class, () -> Topology.of(Topology.Target.EXPERT, 2));
    assertThrows(IllegalArgumentException.class, () -> new Fault(Fault.Kind.PAUSE, "expert-1", Duration.ZERO, Duration.ZERO));
  }

  @Test
  void theSeededRequestsArePureFunctionsOfSeedStreamAndRound() {
    SeededLoad.Settings s = new SeededLoad.Settings(4, Duration.ZERO, 8, 5, 1000, Duration.ofSeconds(10));
    GenerationRequest a = SeededLoad.request(s, 1, 2);
    GenerationRequest b = SeededLoad.request(s, 1, 2);
    assertArrayEquals(a.promptIds(), b.promptIds());
    assertEquals(a.sampling(), b.sampling());
    assertTrue(a.sampling().temperature() > 0, "odd streams sample");
    assertEquals(0f, SeededLoad.request(s, 2, 0).sampling().temperature(), "even streams are greedy");
    assertFalse(java.util.Arrays.equals(a.promptIds(), SeededLoad.request(s, 1, 3).promptIds()));
  }
}
