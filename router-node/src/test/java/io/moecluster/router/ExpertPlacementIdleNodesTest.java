package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The warning for expert nodes that no shard can reach. */
class ExpertPlacementIdleNodesTest {

  @Test
  void nodesBeyondTheColumnsOfTheModelAreNamed() {
    String idle = ExpertPlacement.idleNodes(10, 8, 64, 1);
    assertTrue(idle != null && idle.contains("only 8 shards") && idle.contains("2 node(s) will hold no experts"), idle);
    String fewShards = ExpertPlacement.idleNodes(3, 8, 2, 1);
    assertTrue(fewShards != null && fewShards.contains("only 2 shards") && fewShards.contains("1 node(s)"), fewShards);
  }

  @Test
  void noWarningWhileEveryNodeCanHoldAColumn() {
    assertNull(ExpertPlacement.idleNodes(2, 8, 64, 1));
    assertNull(ExpertPlacement.idleNodes(8, 8, 64, 1));
    // Replicas double the shards: 16 nodes can each hold one.
    assertNull(ExpertPlacement.idleNodes(16, 8, 64, 2));
    assertNull(ExpertPlacement.idleNodes(64, 128, 64, 1));
  }
}
