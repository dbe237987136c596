package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Shards as columns of the model, and the per-layer balance that least-shard allocation gets from them. */
class ExpertShardsTest {

  @Test
  void everyShardHoldsTheSameExpertsOfEveryLayer() {
    int shards = 64;
    for (int experts : new int[] {4, 8, 60, 64, 128}) {
      Map<String, Set<Integer>> expertsOfShard = new HashMap<>();
      for (int layer = 0; layer < 48; layer++) {
        for (int expert = 0; expert < experts; expert++) {
          String shard = new ExpertShards.Extractor(shards, false).shardId(ExpertEntity.entityId(layer, expert));
          Set<Integer> seen = expertsOfShard.computeIfAbsent(shard, s -> new HashSet<>());
          if (layer == 0) {
            seen.add(expert);
          } else {
            assertTrue(seen.contains(expert), "layer " + layer + " expert " + expert + " left its column " + shard);
          }
        }
      }
      assertEquals(Math.min(experts, shards), expertsOfShard.size(), experts + " experts a layer");
    }
  }

  @Test
  void leastShardAllocationSpreadsEveryLayerEvenlyInAnyOrder() {
    Random random = new Random(7);
    for (int experts : new int[] {4, 8, 60, 128}) {
      for (int nodes = 1; nodes <= Math.min(experts, 5); nodes++) {
        List<String> order = new ArrayList<>();
        for (int layer = 0; layer < 6; layer++) {
          for (int expert = 0; expert < experts; expert++) {
            order.add(ExpertEntity.entityId(layer, expert));
          }
        }
        Collections.shuffle(order, random);
        // Least-shard allocation: a new shard goes to the node with the fewest shards.
        Map<String, Integer> nodeOfShard = new HashMap<>();
        int[] shardsOfNode = new int[nodes];
        Map<String, Integer> nodeOfEntity = new HashMap<>();
        for (String id : order) {
          String shard = new ExpertShards.Extractor(64, false).shardId(id);
          int node = nodeOfShard.computeIfAbsent(shard, s -> {
            int least = 0;
            for (int n = 1; n < shardsOfNode.length; n++) {
              least = shardsOfNode[n] < shardsOfNode[least] ? n : least;
            }
            shardsOfNode[least]++;
            return least;
          });
          nodeOfEntity.put(id, node);
        }
        for (int layer = 0; layer < 6; layer++) {
          int[] perNode = new int[nodes];
          for (int expert = 0; expert < experts; expert++) {
            perNode[nodeOfEntity.get(ExpertEntity.entityId(layer, expert))]++;
          }
          int min = Integer.MAX_VALUE;
          int max = 0;
          for (int count : perNode) {
            min = Math.min(min, count);
            max = Math.max(max, count);
          }
          // A shard of 128 experts over 64 shards holds two experts of each layer.
          int perShard = Math.max(1, experts / 64);
          assertTrue(max - min <= perShard, experts + " experts over " + nodes + " nodes, layer " + layer
              + ": " + java.util.Arrays.toString(perNode));
        }
      }
    }
  }

  @Test
  void theReplicasOfAnExpertShareItsColumn() {
    ExpertShards.Extractor replicated = new ExpertShards.Extractor(64, true);
    assertEquals("3#0", replicated.shardId(ExpertEntity.entityId(5, 3, 0, 2)));
    assertEquals("3#1", replicated.shardId(ExpertEntity.entityId(0, 3, 1, 2)));
    assertEquals("6#1", replicated.shardId(ExpertEntity.entityId(2, 70, 1, 2)));
  }

  @Test
  void anIdThatIsNotAnExpertsStillGetsAShard() {
    int base = ExpertShards.base("not-an-expert", 64);
    assertTrue(base >= 0 && base < 64, Integer.toString(base));
  }
}
