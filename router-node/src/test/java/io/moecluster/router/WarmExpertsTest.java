package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.expert.ExpertEntity;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.cluster.v1.Located;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * What the nodes said stays warm decides which hints the router leaves out: per entity and per
 * node, and for a whole layer only in a ready placement where every one of its entities does.
 */
class WarmExpertsTest {
  private static final String A = "pekko://moe@10.0.0.1:25520";
  private static final String B = "pekko://moe@10.0.0.2:25520";

  private static ExpertReply reply(String node, boolean staysWarm) {
    return ExpertReply.newBuilder().setNode(node).setStaysWarm(staysWarm).build();
  }

  /** Layer 0's experts 0 and 1 (one replica each) on node A, layer 1's expert 0 on node B. */
  private static ExpertPlacement.Snapshot placement(boolean ready, String nodeOfLayer0Expert1, boolean loaded) {
    List<Located> located = new ArrayList<>();
    located.add(Located.newBuilder().setLayer(0).setExpert(0).setNode(A).setLoaded(true).build());
    located.add(Located.newBuilder().setLayer(0).setExpert(1).setNode(nodeOfLayer0Expert1).setLoaded(loaded).build());
    located.add(Located.newBuilder().setLayer(1).setExpert(0).setNode(B).setLoaded(true).build());
    return new ExpertPlacement.Snapshot(ready, located, "");
  }

  private static String id(int layer, int expert) {
    return ExpertEntity.entityId(layer, expert, 0, 1);
  }

  @Test
  void anEntityStaysWarmOnTheNodeThatSaidSoUntilItSaysOtherwise() {
    WarmExperts warm = new WarmExperts(1);
    assertFalse(warm.staysWarm(id(0, 0), A, true), "nothing said yet");
    warm.noteReply(id(0, 0), reply(A, true));
    assertTrue(warm.staysWarm(id(0, 0), A, true));
    assertFalse(warm.staysWarm(id(0, 0), B, true), "moved to another node: hinted again");
    assertFalse(warm.staysWarm(id(0, 0), null, true), "not located");
    assertFalse(warm.staysWarm(id(0, 1), A, false), "another entity, not loaded yet");
    warm.noteReply(id(0, 0), reply(A, false));
    assertFalse(warm.staysWarm(id(0, 0), A, true), "its node took it back");
    warm.noteReply(id(0, 0), reply("", true));
    assertFalse(warm.staysWarm(id(0, 0), A, true), "a reply that names no node says nothing");
  }

  @Test
  void aLayerStaysWarmOnlyWhenEveryEntityOfItDoesWhereThePlacementPutsIt() {
    WarmExperts warm = new WarmExperts(1);
    ExpertPlacement.Snapshot snap = placement(true, A, true);
    warm.noteReply(id(0, 1), reply(A, false));
    warm.noteReply(id(0, 0), reply(A, true));
    assertFalse(warm.layerStaysWarm(0, snap), "expert 1's last reply said it is not warm");
    warm.noteReply(id(0, 1), reply(A, true));
    assertTrue(warm.layerStaysWarm(0, snap));
    assertFalse(warm.layerStaysWarm(1, snap), "layer 1 is another layer");
    assertFalse(warm.layerStaysWarm(2, snap), "a layer the placement does not hold");
    assertFalse(warm.layerStaysWarm(0, null));
    assertFalse(warm.layerStaysWarm(0, placement(false, A, true)),
        "a placement not ready: a hint starts what is missing");
    assertFalse(warm.layerStaysWarm(0, placement(true, B, true)), "expert 1 moved to B, which said nothing");
    assertFalse(warm.layerStaysWarm(0, placement(true, A, false)), "expert 1 not loaded");
    warm.noteReply(id(0, 1), reply(A, false));
    assertFalse(warm.layerStaysWarm(0, snap), "a later reply takes it back, in the same placement");
    warm.noteReply(id(0, 1), reply(A, true));
    assertTrue(warm.layerStaysWarm(0, snap));
  }

  @Test
  void aLostNodesWordNoLongerHolds() {
    WarmExperts warm = new WarmExperts(2);
    String a0 = ExpertEntity.entityId(0, 0, 0, 2);
    String b1 = ExpertEntity.entityId(0, 0, 1, 2);
    warm.noteReply(a0, reply(A, true));
    warm.noteReply(b1, reply(B, true));
    warm.forgetNode(A); // lost: restarted at the same address, its cache is empty
    assertFalse(warm.staysWarm(a0, A, true), "hinted again until A says so again");
    assertFalse(warm.staysWarm(ExpertEntity.entityId(0, 1, 1, 2), A, true), "nor does A speak for the others");
    assertTrue(warm.staysWarm(b1, B, true), "the other node's word still holds");
    warm.noteReply(a0, reply(A, true));
    assertTrue(warm.staysWarm(a0, A, true));
  }

  @Test
  void aLayerOfReplicasStaysWarmOnlyWhenEveryReplicaDoes() {
    WarmExperts warm = new WarmExperts(2);
    List<Located> located = List.of(
        Located.newBuilder().setLayer(0).setExpert(0).setReplica(0).setNode(A).setLoaded(true).build(),
        Located.newBuilder().setLayer(0).setExpert(0).setReplica(1).setNode(B).setLoaded(true).build());
    ExpertPlacement.Snapshot snap = new ExpertPlacement.Snapshot(true, located, "");
    warm.noteReply(ExpertEntity.entityId(0, 0, 0, 2), reply(A, true));
    assertFalse(warm.layerStaysWarm(0, snap), "the standby replica's node B has said nothing");
    warm.noteReply(ExpertEntity.entityId(0, 0, 1, 2), reply(B, true));
    assertTrue(warm.layerStaysWarm(0, snap));
  }

  /**
   * A standby replica never computes, so it never says it stays warm; its node says so of the
   * entities it serves, and that holds for every entity it shows loaded, which the router then
   * stops hinting, and for whole layers of replicas.
   */
  @Test
  void aNodesWordSpeaksForItsLoadedEntitiesThatNeverAnswer() {
    WarmExperts warm = new WarmExperts(2);
    String primaryOnA = ExpertEntity.entityId(0, 0, 0, 2);
    String standbyOnA = ExpertEntity.entityId(0, 1, 1, 2);
    assertFalse(warm.staysWarm(standbyOnA, A, true), "A has said nothing yet");
    warm.noteReply(primaryOnA, reply(A, true));
    assertTrue(warm.staysWarm(standbyOnA, A, true), "loaded on A, which holds every expert warm");
    assertFalse(warm.staysWarm(standbyOnA, A, false), "its warm-up is not done");
    assertFalse(warm.staysWarm(standbyOnA, B, true), "on B, which has said nothing");

    List<Located> located = List.of(
        Located.newBuilder().setLayer(0).setExpert(0).setReplica(0).setNode(A).setLoaded(true).build(),
        Located.newBuilder().setLayer(0).setExpert(0).setReplica(1).setNode(B).setLoaded(true).build(),
        Located.newBuilder().setLayer(0).setExpert(1).setReplica(0).setNode(B).setLoaded(true).build(),
        Located.newBuilder().setLayer(0).setExpert(1).setReplica(1).setNode(A).setLoaded(true).build());
    ExpertPlacement.Snapshot snap = new ExpertPlacement.Snapshot(true, located, "");
    assertFalse(warm.layerStaysWarm(0, snap), "B has said nothing");
    warm.noteReply(ExpertEntity.entityId(0, 1, 0, 2), reply(B, true));
    assertTrue(warm.layerStaysWarm(0, snap), "both standbys speak through their nodes");

    warm.noteReply(standbyOnA, reply(A, false)); // it served once, before its weights were warm
    assertFalse(warm.staysWarm(standbyOnA, A, true), "its own last reply wins");
    assertFalse(warm.layerStaysWarm(0, snap));
    warm.forgetNode(B);
    assertFalse(warm.staysWarm(ExpertEntity.entityId(0, 0, 1, 2), B, true), "a lost node's word no longer holds");
  }
}
