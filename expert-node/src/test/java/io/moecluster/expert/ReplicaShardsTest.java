package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.cluster.sharding.ShardCoordinator;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** Sibling shards of the two replicas of an expert, and the allocation that keeps them apart. */
class ReplicaShardsTest {
  static final ActorTestKit kit = ActorTestKit.create();

  @AfterAll
  static void stop() {
    kit.shutdownTestKit();
  }

  private static ActorRef region() {
    return Adapter.toClassic(kit.createTestProbe().getRef());
  }

  @Test
  void theReplicasOfAnExpertGetSiblingShards() {
    for (int layer = 0; layer < 8; layer++) {
      for (int expert = 0; expert < 16; expert++) {
        String s0 = ReplicaShards.shardId(ExpertEntity.entityId(layer, expert, 0, 2), 64);
        String s1 = ReplicaShards.shardId(ExpertEntity.entityId(layer, expert, 1, 2), 64);
        assertEquals(s1, ReplicaShards.sibling(s0));
        assertEquals(s0, ReplicaShards.sibling(s1));
        int base = Integer.parseInt(s0.substring(0, s0.indexOf('#')));
        assertEquals(true, base >= 0 && base < 64, s0);
      }
    }
    assertNull(ReplicaShards.sibling("17"));
  }

  @Test
  void aShardNeverJoinsItsSiblingWhileAnotherRegionCanTakeIt() {
    ReplicaShards.Allocation allocation = new ReplicaShards.Allocation(
        ShardCoordinator.ShardAllocationStrategy$.MODULE$.leastShardAllocationStrategy(8, 0.1));
    ActorRef a = region();
    ActorRef b = region();
    Map<ActorRef, List<String>> regions = new HashMap<>();
    regions.put(a, List.of("3#0"));
    regions.put(b, List.of("1#0", "2#0", "4#0"));
    // a has fewer shards but holds the sibling of 3#1: b it is.
    assertEquals(b, allocation.choose("3#1", regions, null));
    // No sibling anywhere: the least loaded.
    assertEquals(a, allocation.choose("5#1", regions, null));
    // One region only: the siblings share it (nowhere else to go).
    assertEquals(a, allocation.choose("3#1", Map.of(a, List.of("3#0")), null));
    // Rebalancing 3#0 off a: not counted where it is now, still the least loaded.
    assertEquals(a, allocation.choose("3#0", regions, "3#0"));
  }
}
