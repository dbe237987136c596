package io.moecluster.deploy.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Map;
import org.junit.jupiter.api.Test;

/** The expert JVMs of a local cluster share the machine's cores instead of each taking them all. */
class LocalClusterDefaultsTest {

  @Test
  void eachExpertNodeSpreadsItsProductsOverItsShareOfTheCores() {
    assertEquals(Map.of("moe.expert.kernel-threads", "1"), LocalCluster.expertDefaults(2, 2));
    assertEquals(Map.of("moe.expert.kernel-threads", "8"), LocalCluster.expertDefaults(2, 16));
    assertEquals(Map.of("moe.expert.kernel-threads", "5"), LocalCluster.expertDefaults(3, 16));
    assertEquals(Map.of("moe.expert.kernel-threads", "16"), LocalCluster.expertDefaults(1, 16));
    assertEquals(Map.of("moe.expert.kernel-threads", "1"), LocalCluster.expertDefaults(8, 2), "never below one");
  }
}
