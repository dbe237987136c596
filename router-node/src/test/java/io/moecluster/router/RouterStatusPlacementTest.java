package io.moecluster.router;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.proto.cluster.v1.Located;
import io.moecluster.proto.cluster.v1.RouterStatus;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The placement a router reports to a gateway fits one Artery frame for the largest models. */
class RouterStatusPlacementTest {
  /** Artery's default maximum-frame-size. */
  private static final int FRAME = 256 * 1024;

  @Test
  void theStatusOfA24064EntityModelFitsOneFrameAndReadsBack() {
    // Qwen3-235B-A22B: 94 layers of 128 experts, two replicas, on 32 Kubernetes pods.
    List<Located> placement = new ArrayList<>();
    for (int layer = 0; layer < 94; layer++) {
      for (int expert = 0; expert < 128; expert++) {
        for (int replica = 0; replica < 2; replica++) {
          String node = "pekko://moe@moe-expert-" + ((expert + 16 * replica) % 32)
              + ".moe-expert.inference.svc.cluster.local:25520";
          placement.add(Located.newBuilder().setLayer(layer).setExpert(expert).setReplica(replica)
              .setNode(node).setLoaded(true)
              .setEntity(node + "/system/sharding/expert/" + expert + "/" + layer + "-" + expert + "#" + replica
                  + "#1234567890")
              .build());
        }
      }
    }
    RouterStatus.Builder b = RouterStatus.newBuilder().setExpertsReady(true);
    RouterActor.addPlacement(b, placement);
    RouterStatus status = b.build();
    assertTrue(status.getSerializedSize() < 0.7 * FRAME, status.getSerializedSize() + " bytes");
    assertEquals(32, status.getPlacementNodesCount());
    assertEquals(placement.size(), status.getPlacedLayerCount());
    for (int i = 0; i < placement.size(); i++) {
      Located l = placement.get(i);
      assertEquals(l.getNode(), status.getPlacementNodes(status.getPlacedNode(i)));
      assertEquals(List.of(l.getLayer(), l.getExpert(), l.getReplica()),
          List.of(status.getPlacedLayer(i), status.getPlacedExpert(i), status.getPlacedReplica(i)));
      assertTrue(status.getPlacedLoaded(i));
    }
    // The Located form it replaces: far past the frame.
    int located = placement.stream().mapToInt(l -> l.getSerializedSize() + 3).sum();
    assertTrue(located > FRAME, located + " bytes");
  }
}
